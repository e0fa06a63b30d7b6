/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The decision core's maps and the records they hold, the same in both backends' objects: the helper's
 * configuration, the rule maps (walked as decision.h says), the flow cache, the events ring buffer, the
 * counters of what went wrong, the socket state behind the undecided mark (mark.h) and the owners of DNS
 * sockets. The scripts' maps are in identity.h, the exec hooks' in process.h, the traffic records' in traffic.h.
 */
#ifndef TATTLE_MAPS_H
#define TATTLE_MAPS_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"
#include "traffic.h"

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
	__u8 strict; /* computed with the verdict: the application has a deny rule (see mark.h) */
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

#endif
