/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel structures Tattle reads, declared with preserve_access_index so that clang emits CO-RE
 * relocations: the loader fixes every field offset against the running kernel's BTF, so one object works on
 * every kernel with BTF. Only the fields used are declared; order and padding do not matter.
 */
#ifndef TATTLE_KERNEL_H
#define TATTLE_KERNEL_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	__u32 s_dev; /* kernel dev_t: major << 20 | minor */
	unsigned long s_magic; /* the file system type's magic number (FUSE_SUPER_MAGIC for FUSE) */
};

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct qstr d_name;
	struct dentry *d_parent;
};

struct vfsmount {
	struct dentry *mnt_root;
};

/* The kernel's private mount structure that embeds struct vfsmount; needed to cross mount points. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
};

struct mm_struct {
	struct file *exe_file;
	unsigned long arg_start;
	unsigned long arg_end;
	unsigned long env_start;
	unsigned long env_end;
};

/* The new program of an exec: the file the kernel runs last (the interpreter of a script), the path exec was
 * called with, and the interpreter's path (the same pointer as filename unless a binfmt handler such as
 * binfmt_script changed it). */
struct linux_binprm {
	struct file *file;
	const char *filename;
	const char *interp;
	char buf[256]; /* BINPRM_BUF_SIZE: the first bytes of file */
};

struct fs_struct {
	struct path root;
	struct path pwd;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

typedef struct {
	unsigned int val;
} kuid_t;

struct cred {
	kuid_t uid;
};

struct task_struct {
	int pid;
	int tgid;
	struct mm_struct *mm;
	const struct cred *cred;
	struct css_set *cgroups;
	struct fs_struct *fs;
	char comm[16];
	unsigned int ptrace; /* PT_PTRACED … while a tracer is attached */
};

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
	__u16 sk_protocol;
};

struct socket {
	short type;
	struct sock *sk;
};

struct msghdr {
	void *msg_name;
	int msg_namelen;
};

#pragma clang attribute pop

/* Constants of the kernel's interface that libc headers would give; BPF programs include none. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOL_SOCKET 1
#define SO_MARK 36
#define EPERM 1
#define TCP_CLOSE 7

#endif
