/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The dentry walk: the path of the caller's executable (for events) or of a directory (for exec reports,
 * process.h), read from the kernel's dentries and mounts in the caller's own context.
 */
#ifndef TATTLE_PATH_H
#define TATTLE_PATH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"
#include "maps.h"

/* Scratch space for building an executable path backwards, one per CPU. */
struct path_scratch {
	char buf[EXE_PATH_SIZE + EXE_NAME_READ];
	char name[EXE_NAME_READ];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

/* State of a walk from the executable's dentry up to the root of the caller's mount namespace. */
struct path_walk {
	struct dentry *d;
	struct vfsmount *vmnt;
	struct mount *mnt;
	__u32 off; /* the path so far is scratch buf[off, EXE_PATH_SIZE) */
	__u8 truncated;
	__u8 done;
};

/* One step of the walk (a bpf_loop callback, so the verifier checks it once, not once per level): prepend one
 * name, or cross to the mount the current one hangs from. Returns 1 to stop. */
static long path_step(__u32 i, void *ctx)
{
	struct path_walk *w = ctx;
	/* Locals, not w->…, inside BPF_CORE_READ: it would try to relocate path_walk against the kernel's BTF. */
	struct dentry *d = w->d, *root, *parent;
	struct vfsmount *vmnt = w->vmnt;
	struct mount *mnt = w->mnt, *mnt_parent;
	__u32 zero = 0, off = w->off;
	struct path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	long n;

	if (!s)
		return 1;
	root = BPF_CORE_READ(vmnt, mnt_root);
	parent = BPF_CORE_READ(d, d_parent);
	if (d == root || d == parent) {
		/* Top of this mount: continue where it is mounted, unless it is the namespace's root. */
		mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (d != root || mnt_parent == mnt) {
			w->done = 1;
			return 1;
		}
		w->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vmnt = (struct vfsmount *)((void *)mnt_parent + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}
	n = bpf_probe_read_kernel_str(s->name, sizeof(s->name), BPF_CORE_READ(d, d_name.name));
	if (n <= 1) {
		w->done = 1;
		return 1;
	}
	n -= 1; /* without the NUL */
	if ((__u32)n + 1 > off) {
		w->truncated = 1;
		return 1;
	}
	off -= n;
	bpf_probe_read_kernel(&s->buf[off & (EXE_PATH_SIZE - 1)], n & (EXE_NAME_READ - 1), s->name);
	off -= 1;
	s->buf[off & (EXE_PATH_SIZE - 1)] = '/';
	w->off = off;
	w->d = parent;
	return 0;
}

/* Writes the path of a dentry on a mount into out (EXE_PATH_SIZE bytes, no NUL) by walking dentries and mounts
 * up to the root of the caller's mount namespace, in the caller's own context. Sets *len (0 when cut short)
 * and *truncated. */
static __always_inline void read_path(struct dentry *dentry, struct vfsmount *vfsmnt, char *out, __u16 *out_len,
				      __u8 *truncated)
{
	__u32 zero = 0, len;
	struct path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	struct path_walk w = {.off = EXE_PATH_SIZE};

	*out_len = 0;
	*truncated = 0;
	if (!s || !dentry || !vfsmnt)
		return;
	w.d = dentry;
	w.vmnt = vfsmnt;
	w.mnt = (struct mount *)((void *)w.vmnt - bpf_core_field_offset(struct mount, mnt));
	bpf_loop(EXE_PATH_DEPTH, path_step, &w, 0);
	if (!w.done || w.truncated) {
		*truncated = 1;
		return;
	}
	/* Masked so the verifier sees the bound on the very register passed as the size (a compare gets applied
	 * to a copy by clang). A path of exactly EXE_PATH_SIZE bytes counts as cut short. */
	len = (EXE_PATH_SIZE - w.off) & (EXE_PATH_SIZE - 1);
	if (!len) {
		*truncated = 1;
		return;
	}
	bpf_probe_read_kernel(out, len, &s->buf[w.off & (EXE_PATH_SIZE - 1)]);
	*out_len = len;
}

/* Writes the path of the caller's executable into e->path: unlike /proc/PID/exe read later, it cannot miss a
 * process that exits at once. Paths are relative to the caller's mount namespace (a Flatpak app's /app/bin/x
 * reads as such). Only events pay for this, never the decision path. */
static __always_inline void read_exe_path(struct task_struct *task, struct event *e)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	__u16 len = 0;
	__u8 truncated = 0;

	if (!exe) {
		e->path_len = 0;
		e->path_truncated = 0;
		return;
	}
	read_path(BPF_CORE_READ(exe, f_path.dentry), BPF_CORE_READ(exe, f_path.mnt), e->path, &len, &truncated);
	e->path_len = len;
	e->path_truncated = truncated;
}

#endif
