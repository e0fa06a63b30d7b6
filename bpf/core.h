/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Tattle's decision core, shared by the lsm and cgroup backends.
 *
 * Every outbound attempt (connect, or a UDP datagram to an explicit address) is reduced to a flow:
 * (executable dev+inode, uid, protocol, destination address, destination port). The verdict for a flow is
 * cached in the flows map together with its counters, stamped with the rules generation it was computed
 * under; a known flow therefore costs one hash lookup and a few atomic adds. A miss walks the rule scopes
 * from most to least specific application:
 *
 *     (app, uid)  (app, any uid)  (any app, uid)  (any app, any uid)
 *
 * A scope takes part only if the helper created an entry for it in scope_rules. Within a scope the
 * destination trie is consulted (longest address prefix wins; on equal prefixes an exact port beats any
 * port), then the scope's default verdict. The first scope that yields a verdict decides; an ASK entry
 * (installed where a rule only the helper can evaluate applies) ends the walk as undecided. No verdict means
 * UNDECIDED: the attempt goes through, its socket is marked so netfilter can hold its packets, and one event
 * goes to the helper.
 *
 * The mark on an undecided socket has three parts, all inside the bits the helper configured as Tattle's:
 *   held    always: netfilter queues the socket's new packets to the helper
 *   strict  the application has a deny rule somewhere: its undecided packets are dropped, never passed, while
 *           no helper is reading the queue
 *   token   a hash of the identity (executable, uid), so the helper ties a queued packet to the application
 *           that sent it even when two applications of one user reach one destination at the same moment
 * The application's own bits under that mask are saved in the socket's storage and put back once decided.
 */
#ifndef TATTLE_CORE_H
#define TATTLE_CORE_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"
#include "traffic.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOL_SOCKET 1
#define SO_MARK 36
#define EPERM 1
#define TCP_CLOSE 7

enum verdict {
	VERDICT_NONE = 0, /* undecided */
	VERDICT_ALLOW = 1,
	VERDICT_DENY = 2,
	VERDICT_ASK = 3, /* in rule maps only: stop here, the helper decides (a rule it evaluates covers this) */
};

enum hook {
	HOOK_CONNECT = 1,
	HOOK_SENDMSG = 2,
};

enum event_kind {
	EVENT_UNDECIDED = 1, /* every undecided attempt */
	EVENT_NEW_FLOW = 2,  /* first attempt of a flow that a rule decided */
};

enum stat_index {
	STAT_EVENTS_LOST = 0,  /* ring buffer full: an event could not be delivered */
	STAT_FLOWS_FULL = 1,   /* a new flow could not be recorded */
	STAT_MARK_FAILED = 2,  /* SO_MARK could not be set on an undecided socket */
	STAT_NO_IDENTITY = 3,  /* attempt without a user executable (kernel threads) */
	STAT_EXEC_LOST = 4,    /* an interpreter's exec could not be reported: it stays unidentified */
	STAT_MAX = 5,
};

#define ANY_UID 0xffffffffu
/* Bits of dest_key before the address: dev, ino, uid, proto, pad, port. */
#define DEST_FIXED_BITS 160
#define DEST_MAX_BITS (DEST_FIXED_BITS + 128)

/* A rule scope: an application (0/0 for any application) seen by one uid (or ANY_UID). */
struct scope_key {
	__u64 ino;
	__u32 dev;
	__u32 uid;
};

struct scope_rule {
	__u32 rule_id;
	__u8 verdict;  /* default verdict of the scope, VERDICT_NONE if it only has destination rules */
	__u8 has_dest; /* destination rules exist for this scope */
	__u8 has_deny; /* a verdict of this scope denies something: its undecided packets are held strictly */
	__u8 _pad;
};

/* LPM key: the scope and port are matched exactly (they are always inside the prefix), the address by prefix.
 * IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) so one trie serves both families. */
struct dest_key {
	__u32 prefixlen;
	__u32 dev;
	__u64 ino;
	__u32 uid;
	__u8 proto;
	__u8 _pad;
	__u16 port; /* host order; 0 = any port */
	__u8 addr[16];
};

struct dest_rule {
	__u32 rule_id;
	__u8 verdict;
	__u8 addr_prefix; /* prefix length of the address part, to compare an exact-port and an any-port match */
	__u16 _pad;
};

struct flow_key {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 _pad[5];
};

struct flow {
	__u64 attempts;
	__u64 allowed;
	__u64 denied;
	__u64 undecided;
	__u64 first_seen_ns; /* CLOCK_MONOTONIC (coarse, tick resolution, where the program type allows it) */
	__u64 last_seen_ns;
	__u64 generation; /* rules generation the cached verdict was computed under */
	__u32 rule_id;
	__u32 last_tgid;
	__u8 verdict;
	__u8 strict; /* computed with the verdict: the application has a deny rule (see the mark above) */
	__u8 _pad[6];
};

struct config {
	__u64 generation;  /* bumped by the helper after every rule change */
	__u32 mark;        /* SO_MARK bit set on every undecided socket ("held") */
	__u32 flags;
	__u32 strict_mark; /* SO_MARK bit added for applications with a deny rule */
	__u32 token_mask;  /* contiguous SO_MARK bits carrying the identity token */
	__u32 token_shift; /* position of the lowest token bit */
	__u32 _pad;
};

#define EXE_PATH_SIZE 512 /* power of two: offsets are masked with EXE_PATH_SIZE - 1 */
#define EXE_NAME_READ 256 /* NAME_MAX + 1 */
#define EXE_PATH_DEPTH 32

struct event {
	__u64 time_ns; /* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u64 ino;
	__u32 dev;
	__u32 tgid;
	__u32 pid;
	__u32 uid;
	__u32 gid;
	__u32 rule_id;
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 family; /* family of the socket: AF_INET or AF_INET6 */
	__u8 verdict;
	__u8 kind;
	__u8 hook;
	__u8 path_truncated; /* the path did not fit in path[] or was deeper than EXE_PATH_DEPTH */
	char comm[16];
	__u16 path_len;      /* bytes of path[] used, no NUL */
	__u8 _pad2[6];
	char path[EXE_PATH_SIZE]; /* executable path read from the kernel's dentries at the time of the call */
};

/* Per-socket state, only for sockets that were ever undecided. */
struct sock_state {
	__u32 want_bits; /* Tattle's bits the socket should carry: 0 once decided */
	__u32 has_bits;  /* Tattle's bits it carries now */
	__u32 saved;     /* the application's own bits under Tattle's mask, put back when the mark is cleared */
	__u8 has_mark;   /* has_bits is set on the socket (and saved holds the application's bits) */
	__u8 _pad[3];
};

struct identity {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u32 gid;
	__u32 tgid;
	__u32 pid;
	struct task_struct *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct scope_key);
	__type(value, struct scope_rule);
} scope_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dest_key);
	__type(value, struct dest_rule);
} dest_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
	__type(value, struct event); /* documents the record type for bpf2go; the kernel ignores it */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* Who owns each socket that sent a DNS query (to port 53): the DNS capture program (dns.c) sees answers with
 * the receiving socket's cookie only, and the helper finds the application through this map. */
struct dns_sock {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u32 tgid;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* socket cookie */
	__type(value, struct dns_sock);
} dns_socks SEC(".maps");

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

/* The time stamp for flow counters, read on every attempt. cgroup programs use the coarse clock (a plain
 * memory read); LSM programs may not (bpf_ktime_get_coarse_ns is refused for tracing types), so they read the
 * precise one. Both count CLOCK_MONOTONIC. */
static __always_inline __u64 monotonic_ns(void)
{
#ifdef TATTLE_LSM
	return bpf_ktime_get_ns();
#else
	return bpf_ktime_get_coarse_ns();
#endif
}

static __always_inline void count(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &index);
	if (v)
		*v += 1;
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

static __always_inline void set_v4_mapped(__u8 *addr, __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &ip4_be, 4);
}

static __always_inline struct dest_rule *best_dest(struct dest_key *k, __u16 port)
{
	struct dest_rule *exact, *any;

	k->port = port;
	exact = bpf_map_lookup_elem(&dest_rules, k);
	if (!port)
		return exact;
	k->port = 0;
	any = bpf_map_lookup_elem(&dest_rules, k);
	if (!exact)
		return any;
	if (any && any->addr_prefix > exact->addr_prefix)
		return any;
	return exact;
}

/* Evaluates one scope. Returns the verdict (VERDICT_NONE if the scope has nothing to say). Sets *strict when
 * the scope belongs to one application and denies something. */
static __always_inline __u8 eval_scope(__u64 ino, __u32 dev, __u32 uid, const struct flow_key *fk,
				       __u32 *rule_id, __u8 *strict)
{
	struct scope_key sk = {.ino = ino, .dev = dev, .uid = uid};
	struct scope_rule *scope = bpf_map_lookup_elem(&scope_rules, &sk);

	if (!scope)
		return VERDICT_NONE;
	if (ino && scope->has_deny)
		*strict = 1;
	if (scope->has_dest) {
		struct dest_key dk = {
			.prefixlen = DEST_MAX_BITS,
			.dev = dev,
			.ino = ino,
			.uid = uid,
			.proto = fk->proto,
		};
		struct dest_rule *d;

		__builtin_memcpy(dk.addr, fk->addr, 16);
		d = best_dest(&dk, fk->port);
		if (d && d->verdict != VERDICT_NONE) {
			*rule_id = d->rule_id;
			return d->verdict;
		}
	}
	*rule_id = scope->rule_id;
	return scope->verdict;
}

static __always_inline __u8 evaluate(const struct identity *id, const struct flow_key *fk, __u32 *rule_id,
				     __u8 *strict)
{
	__u8 v;

	/* The first scope with something to say decides; VERDICT_ASK says "the helper decides". */
	v = eval_scope(id->ino, id->dev, id->uid, fk, rule_id, strict);
	if (!v)
		v = eval_scope(id->ino, id->dev, ANY_UID, fk, rule_id, strict);
	if (!v)
		v = eval_scope(0, 0, id->uid, fk, rule_id, strict);
	if (!v)
		v = eval_scope(0, 0, ANY_UID, fk, rule_id, strict);
	if (!v)
		*rule_id = 0;
	return v == VERDICT_ASK ? VERDICT_NONE : v;
}

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

static __always_inline void emit_event(const struct identity *id, const struct flow_key *fk, __u8 family,
				       __u8 hook, __u8 verdict, __u8 kind, __u32 rule_id)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(STAT_EVENTS_LOST);
		return;
	}
	e->time_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = id->task->cgroups->dfl_cgrp->kn->id;
	e->ino = id->ino;
	e->dev = id->dev;
	e->tgid = id->tgid;
	e->pid = id->pid;
	e->uid = id->uid;
	e->gid = id->gid;
	e->rule_id = rule_id;
	__builtin_memcpy(e->addr, fk->addr, 16);
	e->port = fk->port;
	e->proto = fk->proto;
	e->family = family;
	e->verdict = verdict;
	e->kind = kind;
	e->hook = hook;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), id->task->comm);
	read_exe_path(id->task, e);
	bpf_ringbuf_submit(e, 0);
}

/* Decides one attempt and accounts for it. Returns a verdict; *strict tells whether the application has a deny
 * rule (for the mark of an undecided socket). */
static __always_inline __u8 decide(const struct identity *id, struct flow_key *fk, __u8 family, __u8 hook,
				   __u8 *strict)
{
	__u32 zero = 0, rule_id = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct flow *f;
	__u64 now = monotonic_ns();
	__u8 verdict, is_new = 0;

	*strict = 0;

	if (!cfg)
		return VERDICT_ALLOW;

	fk->ino = id->ino;
	fk->dev = id->dev;
	fk->uid = id->uid;

	f = bpf_map_lookup_elem(&flows, fk);
	if (f && f->generation == cfg->generation) {
		verdict = f->verdict;
		rule_id = f->rule_id;
		*strict = f->strict;
	} else {
		__u64 generation = cfg->generation;

		verdict = evaluate(id, fk, &rule_id, strict);
		if (f) {
			f->verdict = verdict;
			f->rule_id = rule_id;
			f->strict = *strict;
			f->generation = generation;
		} else {
			struct flow init = {
				.first_seen_ns = now,
				.generation = generation,
				.rule_id = rule_id,
				.verdict = verdict,
				.strict = *strict,
			};
			if (bpf_map_update_elem(&flows, fk, &init, BPF_NOEXIST) == 0)
				is_new = 1;
			f = bpf_map_lookup_elem(&flows, fk);
			if (!f)
				count(STAT_FLOWS_FULL);
		}
	}

	if (f) {
		__sync_fetch_and_add(&f->attempts, 1);
		if (verdict == VERDICT_ALLOW)
			__sync_fetch_and_add(&f->allowed, 1);
		else if (verdict == VERDICT_DENY)
			__sync_fetch_and_add(&f->denied, 1);
		else
			__sync_fetch_and_add(&f->undecided, 1);
		f->last_seen_ns = now;
		f->last_tgid = id->tgid;
	}

	if (verdict == VERDICT_NONE || is_new)
		emit_event(id, fk, family, hook, verdict, verdict == VERDICT_NONE ? EVENT_UNDECIDED : EVENT_NEW_FLOW,
			   rule_id);
	return verdict;
}

/* The identity token: a 64-bit multiplicative hash of (executable, uid), its top bits placed under the token
 * mask. helper/enforce.Token computes the same. */
static __always_inline __u32 identity_token(const struct identity *id, const struct config *cfg)
{
	__u64 h = id->ino * 0x9E3779B97F4A7C15ull;

	h ^= ((__u64)id->dev << 32 | id->uid) * 0xC2B2AE3D27D4EB4Full;
	h *= 0x165667B19E3779F9ull;
	return ((__u32)(h >> 32) << (cfg->token_shift & 31)) & cfg->token_mask;
}

/* Remembers on the socket which of Tattle's mark bits it should carry, so the marking step can set or clear
 * them. Sockets never undecided get no storage at all. */
static __always_inline void note_decision(void *sk, __u8 verdict, const struct identity *id, __u8 strict)
{
	struct sock_state *st;
	__u32 zero = 0;
	struct config *cfg;

	if (verdict == VERDICT_NONE) {
		cfg = bpf_map_lookup_elem(&config, &zero);
		if (!cfg || !cfg->mark)
			return;
		st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			st->want_bits = cfg->mark | (strict ? cfg->strict_mark : 0) | identity_token(id, cfg);
		return;
	}
	st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (st)
		st->want_bits = 0;
}

/* Applies the socket's wanted mark from a cgroup sock_addr program (the only kind that may set SO_MARK).
 * Tattle's bits replace whatever the application had under Tattle's mask (saved, and put back once decided);
 * its other bits stay. sk is ctx->sk read once by the caller: re-deriving it from ctx makes clang emit a pointer
 * the verifier refuses. */
static __always_inline void apply_mark(struct bpf_sock_addr *ctx, struct bpf_sock *sk)
{
	struct sock_state *st;
	__u32 zero = 0, cur = 0, next, ours;
	struct config *cfg;

	if (!sk)
		return;
	st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || (st->want_bits == st->has_bits && (st->want_bits != 0) == (st->has_mark != 0)))
		return;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->mark)
		return;
	ours = cfg->mark | cfg->strict_mark | cfg->token_mask;
	if (bpf_getsockopt(ctx, SOL_SOCKET, SO_MARK, &cur, sizeof(cur)))
		cur = 0;
	if (!st->has_mark)
		st->saved = cur & ours;
	next = (cur & ~ours) | (st->want_bits ? st->want_bits : st->saved);
	if (bpf_setsockopt(ctx, SOL_SOCKET, SO_MARK, &next, sizeof(next))) {
		count(STAT_MARK_FAILED);
		return;
	}
	st->has_bits = st->want_bits;
	st->has_mark = st->want_bits != 0;
}

/* Records the owner of a socket that sends to port 53, for attributing its DNS answers. */
static __always_inline void note_dns_socket(struct bpf_sock_addr *ctx, const struct identity *id)
{
	struct dns_sock ds = {.ino = id->ino, .dev = id->dev, .uid = id->uid, .tgid = id->tgid};
	__u64 cookie;

	if (ctx->user_port != bpf_htons(53))
		return;
	cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&dns_socks, &cookie, &ds, BPF_ANY);
}

/* Makes the traffic record of a socket whose connect() is let through (allowed, or undecided and held):
 * the one map update the connect path pays for counting, and only for destinations off the machine.
 * Loopback traffic is not counted (DESIGN.md, Traffic accounting). A socket connected again keeps its first
 * destination's record. */
static __always_inline void note_traffic(__u64 cookie, const struct flow_key *fk)
{
	struct sock_traffic t = {};
	__u32 w[4];

	if (!fk->port)
		return;
	__builtin_memcpy(w, fk->addr, 16);
	if (!w[0] && !w[1]) {
		if (w[2] == bpf_htonl(0xffff) && (fk->addr[12] == 127 || !w[3]))
			return; /* 127.0.0.0/8, 0.0.0.0 */
		if (!w[2] && (!w[3] || w[3] == bpf_htonl(1)))
			return; /* ::1, :: */
	}
	t.ino = fk->ino;
	t.dev = fk->dev;
	t.uid = fk->uid;
	__builtin_memcpy(t.addr, fk->addr, 16);
	t.port = fk->port;
	t.proto = fk->proto;
	t.made_ns = monotonic_ns();
	bpf_map_update_elem(&traffic_socks, &cookie, &t, BPF_NOEXIST);
}

/* Fills the destination of a flow from a cgroup sock_addr context. */
static __always_inline void flow_from_sock_addr(struct flow_key *fk, const struct bpf_sock_addr *ctx, __u8 family)
{
	/* family is a constant per program: the verifier refuses user_ip4 in *6 programs and vice versa. */
	if (family == AF_INET) {
		set_v4_mapped(fk->addr, ctx->user_ip4);
	} else {
		__u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
		__builtin_memcpy(fk->addr, a, 16);
	}
	fk->port = bpf_ntohs((__u16)ctx->user_port);
	fk->proto = ctx->protocol;
}

char LICENSE[] SEC("license") = "GPL";

#endif
