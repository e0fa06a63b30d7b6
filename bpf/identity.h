/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Who makes an attempt: the caller's executable (dev+inode from mm->exe_file) and uid, with the scripts of an
 * interpreter and the processes of an AppImage told apart by the vias map that process.h keeps.
 */
#ifndef TATTLE_IDENTITY_H
#define TATTLE_IDENTITY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "include/kernel.h"

/* The caller of one attempt, as read_identity finds it. */
struct identity {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u32 gid;
	__u32 tgid;
	__u32 pid;
	struct task_struct *task;
};

/*
 * Scripts ("via"). A process that runs an interpreter (helper-filled interpreters map: python, node, perl, sh …)
 * is identified by the script it was started on rather than by the interpreter, so two scripts of one
 * interpreter are two applications. The exec hook (process.h) records every such process in vias, by tgid:
 *
 *   no script (python3 -c, a REPL)  resolved at once: the identity is the interpreter's own
 *   a script                        pending: the identity is VIA_UNIDENTIFIED until the helper, told through
 *                                   exec_events, resolves the script in the process's own mount namespace and
 *                                   writes the identity it derives from (interpreter, script): device 0, which no
 *                                   file system has, and a hash of both as the inode
 *
 * Children inherit their parent's entry at fork; exec replaces it. An interpreter process without an entry
 * (started before Tattle, or its entry evicted) is VIA_UNIDENTIFIED too, never the bare interpreter: no rule
 * matches it and the helper resolves it, so losing track of a script can only ask, never borrow the
 * interpreter's rules.
 */
#define VIA_UNIDENTIFIED_INO 1 /* with dev 0 */

/*
 * AppImages. An AppImage is one file: an ELF runtime tagged 'A','I',type at offset 8 of its header, with a
 * squashfs appended. Run, it mounts its payload with FUSE at a fresh /tmp/.mount_XXXXXX and execs AppRun from
 * there, so its processes run files whose identity is new at every launch. The exec hook (process.h) gives a
 * process that execs an AppImage file the AppImage's own identity in vias (resolved at once): the file's
 * device with APPIMAGE_DEV_FLAG (a major number no device has: no file's identity, and no rule for a file,
 * can equal it) and its inode. Children inherit it; it survives execs of files on the first FUSE file system
 * the process runs a file from (its own mount, bound in mount_dev) and ends at any other exec, so a host
 * program the app runs is that program. The tag is refused when the AppImage is exec'd traced or with an
 * environment that loads other code or names another payload (the helper-filled appimage_env list): the
 * process is then its plain executable, which no AppImage rule names.
 */
#define APPIMAGE_DEV_FLAG 0x80000000u
#define FUSE_SUPER_MAGIC 0x65735546

enum via_state {
	VIA_PENDING = 1,  /* waiting for the helper */
	VIA_RESOLVED = 2, /* ino/dev hold the identity */
};

struct interp_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

struct interp {
	__u32 kind; /* shared/identity's interpreter kind */
	__u32 _pad;
};

/* An option of one interpreter kind that means "no script" when it comes first (python3 -c, node -e). */
struct interp_opt_key {
	__u32 kind;
	char opt[12];
};

struct via {
	__u64 ino; /* identity the connect hooks use for the process */
	__u32 dev;
	__u32 state;
	__u64 cookie; /* the exec this entry comes from (boot time ns), shared by the children it forks */
	__u32 mount_dev; /* an AppImage's: the FUSE file system its processes run files from (0 until the first) */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct interp_key);
	__type(value, struct interp);
} interpreters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct interp_opt_key);
	__type(value, __u8);
} interp_opts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tgid */
	__type(value, struct via);
} vias SEC(".maps");

/* Looks the caller's process up among scripts: replaces the identity by the script's (or the unidentified
 * one). Costs one hash lookup for every process, two for an interpreter without an entry. */
static __always_inline void apply_via(__u64 *ino, __u32 *dev, __u32 tgid)
{
	struct via *v = bpf_map_lookup_elem(&vias, &tgid);
	struct interp_key k;

	if (v) {
		if (v->state == VIA_RESOLVED) {
			*ino = v->ino;
			*dev = v->dev;
		} else {
			*ino = VIA_UNIDENTIFIED_INO;
			*dev = 0;
		}
		return;
	}
	k.ino = *ino;
	k.dev = *dev;
	k._pad = 0;
	if (bpf_map_lookup_elem(&interpreters, &k)) {
		*ino = VIA_UNIDENTIFIED_INO;
		*dev = 0;
	}
}

/* Reads the caller's identity. Returns 0 when the caller has no user executable (kernel threads). */
static __always_inline int read_identity(struct identity *id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *inode = task->mm->exe_file->f_inode;
	__u64 ugid;

	id->ino = inode->i_ino;
	if (!id->ino)
		return 0;
	id->dev = inode->i_sb->s_dev;
	ugid = bpf_get_current_uid_gid();
	id->uid = (__u32)ugid;
	id->gid = (__u32)(ugid >> 32);
	id->tgid = task->tgid;
	id->pid = task->pid;
	id->task = task;
	apply_via(&id->ino, &id->dev, id->tgid);
	return 1;
}

#endif
