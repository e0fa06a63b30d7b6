/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Process lifecycle hooks, part of both backends' objects (raw tracepoints: they load where LSM and fentry
 * programs cannot): they keep the vias map (identity.h) true for every process, so the connect hooks identify an
 * interpreter's process by its script.
 *
 *   sched_process_exec  a process with an AppImage's identity exec'd a file of its own FUSE mount: it stays the
 *                       AppImage (identity.h, "AppImages"); an AppImage file was exec'd: the process is that
 *                       AppImage, reported to the helper with the file's path, unless it is traced or its
 *                       environment is refused; an interpreter was exec'd: record the process (resolved at
 *                       once when its first argument says there is no script, else pending and reported to
 *                       the helper with the exec's path, arguments and working directory); any other program:
 *                       drop the process's entry
 *   sched_process_fork  a new process inherits its parent's entry (threads share their process's)
 */
#ifndef TATTLE_PROCESS_H
#define TATTLE_PROCESS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"
#include "maps.h"
#include "identity.h"
#include "path.h"

#define EXEC_ARGS_SIZE 1024 /* power of two: sizes are masked with EXEC_ARGS_SIZE - 1 */
#define EXEC_FILENAME_SIZE 256
#define ENV_SCAN_SIZE 16384 /* power of two: an AppImage exec'd with a larger environment is refused its identity */
#define ENV_NAME_SIZE 32
#define APPIMAGE_EXEC_KIND 0xa1 /* exec_event.kind of an AppImage's exec (interpreter kinds are small numbers) */

/* What the helper needs to find a pending interpreter's script, read at exec time in the process's own
 * context: later, the process could have changed its arguments (they are its own memory) or directory. */
struct exec_event {
	__u64 cookie; /* the vias entry's cookie */
	__u64 exe_ino;
	__u32 exe_dev;
	__u32 tgid;
	__u32 uid;
	__u32 kind;          /* interpreter kind */
	__u16 args_len;      /* bytes of args[] used: argv, NUL-separated */
	__u16 cwd_len;       /* bytes of cwd[] used, no NUL; 0 when cut short */
	__u16 filename_len;  /* bytes of filename[] used, no NUL */
	__u8 shebang;        /* the kernel ran the interpreter for a script named by filename (#!) */
	__u8 args_truncated; /* the arguments were longer than args[] */
	__u8 cwd_truncated;
	__u8 _pad[7];
	char filename[EXEC_FILENAME_SIZE]; /* the path exec was called with */
	char args[EXEC_ARGS_SIZE];
	char cwd[EXE_PATH_SIZE]; /* the working directory; for an AppImage (APPIMAGE_EXEC_KIND), the file's path */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__type(value, struct exec_event); /* documents the record type for bpf2go; the kernel ignores it */
} exec_events SEC(".maps");

/* An environment variable name: the variables that refuse an AppImage its identity (helper/peer's injection
 * variables, which make the loader or a library load other code, and TARGET_APPIMAGE, with which the runtime
 * mounts another file's payload), filled by the helper. A name of exactly 3 bytes ("LD_") stands for every
 * name it begins. The empty name says the list is installed: until it is, no AppImage gets its identity. */
struct env_name {
	char name[ENV_NAME_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct env_name);
	__type(value, __u8);
} appimage_env SEC(".maps");

struct env_scratch {
	char buf[ENV_SCAN_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct env_scratch);
} env_scratch SEC(".maps");

struct env_scan {
	__u32 len; /* bytes of the environment in env_scratch */
	__u8 refused;
};

/* One byte of the environment (a bpf_loop callback): where a NAME=value string begins, looks its name up. */
static long env_step(__u32 i, void *ctx)
{
	struct env_scan *w = ctx;
	struct env_name k = {}, prefix = {};
	struct env_scratch *s;
	__u32 zero = 0, j;

	if (i >= w->len)
		return 1;
	s = bpf_map_lookup_elem(&env_scratch, &zero);
	if (!s) {
		w->refused = 1;
		return 1;
	}
	if (i > 0 && s->buf[(i - 1) & (ENV_SCAN_SIZE - 1)] != 0)
		return 0;
	for (j = 0; j < ENV_NAME_SIZE - 1; j++) {
		char c = s->buf[(i + j) & (ENV_SCAN_SIZE - 1)];
		if (c == '=' || c == 0)
			break;
		k.name[j] = c;
	}
	if (j == 0)
		return 0;
	/* A name of ENV_NAME_SIZE - 1 bytes or more is none of the list's (the helper installs shorter ones). */
	if (bpf_map_lookup_elem(&appimage_env, &k)) {
		w->refused = 1;
		return 1;
	}
	if (j > 3) {
		prefix.name[0] = k.name[0];
		prefix.name[1] = k.name[1];
		prefix.name[2] = k.name[2];
		if (bpf_map_lookup_elem(&appimage_env, &prefix)) {
			w->refused = 1;
			return 1;
		}
	}
	return 0;
}

/* Reports whether an AppImage exec'd by task must not get its identity: the process is traced, or its new
 * environment (read in the new image, before any of its code ran) holds a refused variable, or cannot be read
 * whole. */
static __always_inline int appimage_refused(struct task_struct *task)
{
	unsigned long start = BPF_CORE_READ(task, mm, env_start), end = BPF_CORE_READ(task, mm, env_end), len;
	struct env_name installed = {};
	struct env_scan w = {};
	struct env_scratch *s;
	__u32 zero = 0;

	if (BPF_CORE_READ(task, ptrace))
		return 1;
	if (!bpf_map_lookup_elem(&appimage_env, &installed))
		return 1;
	s = bpf_map_lookup_elem(&env_scratch, &zero);
	if (!s || end < start)
		return 1;
	len = end - start;
	if (len >= ENV_SCAN_SIZE)
		return 1;
	if (len && bpf_probe_read_user(s->buf, len & (ENV_SCAN_SIZE - 1), (const void *)start))
		return 1;
	w.len = len;
	bpf_loop(ENV_SCAN_SIZE, env_step, &w, 0);
	return w.refused;
}

/* Reports whether the exec'd file is an AppImage: an ELF file with 'A', 'I' and the type (1 or 2) at offset 8. */
static __always_inline int is_appimage(struct linux_binprm *bprm)
{
	unsigned char h[12];

	if (bpf_core_read(h, sizeof(h), &bprm->buf))
		return 0;
	return h[0] == 0x7f && h[1] == 'E' && h[2] == 'L' && h[3] == 'F' && h[8] == 'A' && h[9] == 'I' &&
	       (h[10] == 1 || h[10] == 2);
}

/* Reports whether the process's first argument (after argv[0]) says there is no script: none at all (a REPL,
 * or a script on standard input), or an option of the interpreter that takes a program text or module
 * instead (interp_opts). Anything else leaves the decision to the helper. */
static __always_inline int no_script(__u32 kind, struct task_struct *task)
{
	unsigned long start = BPF_CORE_READ(task, mm, arg_start), end = BPF_CORE_READ(task, mm, arg_end);
	struct interp_opt_key ok = {.kind = kind};
	struct path_scratch *s;
	__u32 zero = 0;
	long n, m;

	s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s || !start || end <= start)
		return 0;
	n = bpf_probe_read_user_str(s->name, sizeof(s->name), (const void *)start);
	if (n <= 0 || n >= (long)sizeof(s->name))
		return 0;
	if (start + n >= end)
		return 1;
	m = bpf_probe_read_user_str(ok.opt, sizeof(ok.opt), (const void *)(start + n));
	if (m <= 1 || m >= (long)sizeof(ok.opt))
		return 0;
	return bpf_map_lookup_elem(&interp_opts, &ok) != NULL;
}

static __always_inline void report_exec(struct task_struct *task, struct linux_binprm *bprm,
					const struct interp_key *k, __u32 kind, __u32 tgid, __u64 cookie,
					__u8 shebang, struct dentry *dir, struct vfsmount *dir_mnt)
{
	struct exec_event *e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
	unsigned long start, end, len;
	long n;
	__u16 cwd_len = 0;
	__u8 cwd_truncated = 0;

	if (!e) {
		count(STAT_EXEC_LOST);
		return;
	}
	e->cookie = cookie;
	e->exe_ino = k->ino;
	e->exe_dev = k->dev;
	e->tgid = tgid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->kind = kind;
	e->shebang = shebang;

	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 1 ? n - 1 : 0;

	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	len = end > start ? end - start : 0;
	e->args_truncated = 0;
	if (len >= EXEC_ARGS_SIZE) {
		len = EXEC_ARGS_SIZE - 1;
		e->args_truncated = 1;
	}
	len &= EXEC_ARGS_SIZE - 1;
	if (bpf_probe_read_user(e->args, len, (const void *)start))
		len = 0;
	e->args_len = len;

	read_path(dir, dir_mnt, e->cwd, &cwd_len, &cwd_truncated);
	e->cwd_len = cwd_len;
	e->cwd_truncated = cwd_truncated;
	bpf_ringbuf_submit(e, 0);
}

SEC("raw_tracepoint/sched_process_exec")
int tattle_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct inode *inode = BPF_CORE_READ(bprm, file, f_inode);
	struct interp_key k = {};
	struct via v = {}, *cur;
	struct interp *in;
	__u32 tgid = BPF_CORE_READ(task, tgid), kind;
	__u8 shebang;

	k.ino = BPF_CORE_READ(inode, i_ino);
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	cur = bpf_map_lookup_elem(&vias, &tgid);
	if (cur && cur->state == VIA_RESOLVED && (cur->dev & APPIMAGE_DEV_FLAG) &&
	    BPF_CORE_READ(inode, i_sb, s_magic) == FUSE_SUPER_MAGIC && (!cur->mount_dev || cur->mount_dev == k.dev)) {
		/* The AppImage's AppRun or another file of its own mount: still the AppImage. */
		cur->mount_dev = k.dev;
		return 0;
	}
	if (is_appimage(bprm)) {
		if (appimage_refused(task)) {
			bpf_map_delete_elem(&vias, &tgid);
			return 0;
		}
		v.ino = k.ino;
		v.dev = k.dev | APPIMAGE_DEV_FLAG;
		v.state = VIA_RESOLVED;
		v.cookie = bpf_ktime_get_boot_ns();
		bpf_map_update_elem(&vias, &tgid, &v, BPF_ANY);
		report_exec(task, bprm, &k, APPIMAGE_EXEC_KIND, tgid, v.cookie, 0, BPF_CORE_READ(bprm, file, f_path.dentry),
			    BPF_CORE_READ(bprm, file, f_path.mnt));
		return 0;
	}
	in = bpf_map_lookup_elem(&interpreters, &k);
	if (!in) {
		bpf_map_delete_elem(&vias, &tgid);
		return 0;
	}
	kind = in->kind;
	/* binfmt_script replaces interp by the #! line's interpreter; a direct exec leaves it == filename. */
	shebang = BPF_CORE_READ(bprm, filename) != BPF_CORE_READ(bprm, interp);
	v.cookie = bpf_ktime_get_boot_ns();
	if (!shebang && no_script(kind, task)) {
		v.ino = k.ino;
		v.dev = k.dev;
		v.state = VIA_RESOLVED;
		bpf_map_update_elem(&vias, &tgid, &v, BPF_ANY);
		return 0;
	}
	v.ino = VIA_UNIDENTIFIED_INO;
	v.state = VIA_PENDING;
	bpf_map_update_elem(&vias, &tgid, &v, BPF_ANY);
	report_exec(task, bprm, &k, kind, tgid, v.cookie, shebang, BPF_CORE_READ(task, fs, pwd.dentry),
		    BPF_CORE_READ(task, fs, pwd.mnt));
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int tattle_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid), ctgid = BPF_CORE_READ(child, tgid);
	struct via *v, copy;

	if (ctgid != (__u32)BPF_CORE_READ(child, pid))
		return 0; /* a thread: its process's entry covers it */
	v = bpf_map_lookup_elem(&vias, &ptgid);
	if (!v) {
		/* The tgid may be a dead process's, reused. */
		bpf_map_delete_elem(&vias, &ctgid);
		return 0;
	}
	copy = *v;
	bpf_map_update_elem(&vias, &ctgid, &copy, BPF_ANY);
	return 0;
}

#endif
