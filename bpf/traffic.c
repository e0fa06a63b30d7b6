//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Traffic accounting: bytes and packets each outbound socket sends and receives, for the flow (executable,
 * uid, destination) that opened it. cgroup_skb/egress and cgroup_skb/ingress at the cgroup v2 root count
 * into one record per socket, keyed by the socket's cookie; cgroup/sock_release marks the record closed so
 * the helper can fold it into the flow's totals and remove it (helper/enforce.Flows).
 *
 * Nothing runs on the connect path. A socket's record is made on its first outgoing packet: a TCP socket's
 * SYN sent by connect() (state SYN_SENT), or a UDP datagram, both sent in the sending process's own context,
 * so the executable is the current task's. A socket whose first packet is sent from elsewhere (an accepted
 * connection's answers from softirq) gets no record: the uid of the current task must be the socket's, and
 * TCP must be in SYN_SENT. A held connection's SYN is let go by the helper, from its own context: before it
 * does, the helper puts the flow under the connection's addresses and ports in traffic_expected, and that
 * packet, sent from the helper's own context (traffic_helper names its process), makes the record from there.
 * Per packet the cost is one hash lookup by cookie and two atomic adds; packets of sockets without a record
 * stop after the lookup.
 *
 * Loopback traffic is not counted: it never leaves the machine (what a firewall shows is what goes out), and
 * local IPC (databases, desktop services over TCP) would pay for every packet, at both ends. Its
 * connections are still decided and shown.
 *
 * Bytes are layer-4 payload (what the application wrote or read; TCP and UDP headers and retransmitted
 * headers are not counted, retransmitted payload is); packets count segments of a GSO/GRO packet.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define TCP_SYN_SENT 2
#define LOOPBACK_IFINDEX 1 /* lo is ifindex 1 in every network namespace */

/* One socket's account. The flow fields are those of struct flow_key in core.h. */
struct sock_traffic {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u8 addr[16]; /* destination, IPv4-mapped for IPv4 */
	__u16 port;    /* destination port, host order */
	__u8 proto;
	__u8 closed; /* the socket was released: fold and remove once it is quiet */
	__u32 _pad;
	__u64 tx_bytes;
	__u64 tx_packets;
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 last_ns; /* CLOCK_MONOTONIC (coarse) of the last packet */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, struct sock_traffic);
} traffic_socks SEC(".maps");

/* A connection the helper let go (its SYN was held): its flow, by its own addresses and ports. Entries are
 * taken by the socket's next packet; one never taken (the packet was lost) ages out of the LRU. */
struct expected_key {
	__u8 src[16]; /* IPv4-mapped for IPv4 */
	__u8 dst[16];
	__u16 sport; /* host order */
	__u16 dport;
	__u8 proto;
	__u8 _pad[3];
};

struct expected_flow {
	__u64 ino;
	__u32 dev;
	__u32 uid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct expected_key);
	__type(value, struct expected_flow);
} traffic_expected SEC(".maps");

/* The helper's process (tgid), which the helper writes when it opens the programs: only packets sent from
 * its context look for an expected connection. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} traffic_helper SEC(".maps");

struct ip4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
};

/* Payload bytes of an IP packet of proto (TCP or UDP): its length less the IP and transport headers. A
 * packet whose headers cannot be read counts whole. */
static __always_inline __u64 payload(struct __sk_buff *skb, __u8 proto)
{
	__u32 hl, l4 = 8;
	__u8 b;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1))
			return skb->len;
		hl = (b & 0x0f) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		hl = 40;
	} else {
		return skb->len;
	}
	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, (hl + 12) & 0xff, &b, 1))
			return skb->len;
		l4 = (b >> 4) * 4;
	}
	hl += l4;
	return skb->len > hl ? skb->len - hl : 0;
}

static __always_inline __u64 segments(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

static __always_inline void sock_dst(struct bpf_sock *sk, __u8 addr[16])
{
	if (sk->family == AF_INET) {
		__u32 a = sk->dst_ip4;

		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(&addr[12], &a, 4);
	} else {
		__u32 a[4] = {sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3]};

		__builtin_memcpy(addr, a, 16);
	}
}

/* The flow the helper expects this socket to be (it let the connection's SYN go), or 0 when none. */
static __always_inline int expected(struct bpf_sock *sk, struct sock_traffic *t)
{
	struct expected_key k = {};
	struct expected_flow *f;

	sock_dst(sk, k.dst);
	if (sk->family == AF_INET) {
		__u32 a = sk->src_ip4;

		k.src[10] = 0xff;
		k.src[11] = 0xff;
		__builtin_memcpy(&k.src[12], &a, 4);
	} else {
		__u32 a[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};

		__builtin_memcpy(k.src, a, 16);
	}
	k.sport = (__u16)sk->src_port; /* src_port is in host order */
	k.dport = bpf_ntohs((__u16)sk->dst_port);
	k.proto = sk->protocol;
	f = bpf_map_lookup_elem(&traffic_expected, &k);
	if (!f)
		return 0;
	t->ino = f->ino;
	t->dev = f->dev;
	t->uid = f->uid;
	bpf_map_delete_elem(&traffic_expected, &k);
	return 1;
}

/* Makes the record of a socket at its first outgoing packet (or, for a connection the helper let go, at its
 * first packet after that), or returns NULL when this packet cannot tell whose it is. */
static __always_inline struct sock_traffic *open_record(struct __sk_buff *skb, struct bpf_sock *sk, __u64 cookie)
{
	struct task_struct *task;
	struct inode *inode;
	struct sock_traffic t = {};
	__u32 uid, zero = 0, *helper;

	if (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP)
		return NULL;
	if (sk->protocol == IPPROTO_TCP && sk->state != TCP_SYN_SENT)
		return NULL;
	task = bpf_get_current_task_btf();
	helper = bpf_map_lookup_elem(&traffic_helper, &zero);
	if (helper && *helper && task->tgid == *helper) {
		/* A held packet the helper lets go: sent from its context, so only the helper can say whose. */
		if (!expected(sk, &t))
			return NULL;
	} else {
		/* The current task's real uid, read from its credentials: bpf_get_current_uid_gid is not offered to
		 * cgroup_skb programs before Linux 6.5 (Debian 12 runs 6.1). */
		uid = task->cred->uid.val;
		if (uid != bpf_get_socket_uid(skb))
			return NULL;
		inode = task->mm->exe_file->f_inode;
		t.ino = inode->i_ino;
		if (!t.ino)
			return NULL;
		t.dev = inode->i_sb->s_dev;
		t.uid = uid;
	}
	t.proto = sk->protocol;
	sock_dst(sk, t.addr);
	/* dst_port is in network order in its low 16 bits. */
	t.port = bpf_ntohs((__u16)sk->dst_port);
	if (!t.port)
		return NULL; /* an unconnected UDP socket: its datagrams have no one destination */
	bpf_map_update_elem(&traffic_socks, &cookie, &t, BPF_NOEXIST);
	return bpf_map_lookup_elem(&traffic_socks, &cookie);
}

SEC("cgroup_skb/egress")
int tattle_traffic_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct sock_traffic *t;
	__u64 cookie;

	if (!sk || skb->ifindex == LOOPBACK_IFINDEX)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	cookie = bpf_get_socket_cookie(skb);
	t = bpf_map_lookup_elem(&traffic_socks, &cookie);
	if (!t) {
		t = open_record(skb, sk, cookie);
		if (!t)
			return 1;
	}
	__sync_fetch_and_add(&t->tx_bytes, payload(skb, t->proto));
	__sync_fetch_and_add(&t->tx_packets, segments(skb));
	t->last_ns = bpf_ktime_get_coarse_ns();
	return 1;
}

SEC("cgroup_skb/ingress")
int tattle_traffic_ingress(struct __sk_buff *skb)
{
	struct sock_traffic *t;
	__u64 cookie;

	if (!skb->sk || skb->ifindex == LOOPBACK_IFINDEX)
		return 1;
	cookie = bpf_get_socket_cookie(skb);
	t = bpf_map_lookup_elem(&traffic_socks, &cookie);
	if (!t)
		return 1;
	__sync_fetch_and_add(&t->rx_bytes, payload(skb, t->proto));
	__sync_fetch_and_add(&t->rx_packets, segments(skb));
	t->last_ns = bpf_ktime_get_coarse_ns();
	return 1;
}

/* A closed TCP socket may still send what was left in its buffer, so the record stays until the helper
 * finds it quiet. */
SEC("cgroup/sock_release")
int tattle_traffic_release(struct bpf_sock *sk)
{
	__u64 cookie;
	struct sock_traffic *t;

	/* Sockets that never had a destination, or had a loopback one, have no record: no lookup for them. */
	if (!sk->dst_port)
		return 1;
	if (sk->family == AF_INET) {
		if ((bpf_ntohl(sk->dst_ip4) >> 24) == 127)
			return 1;
	} else if (!sk->dst_ip6[0] && !sk->dst_ip6[1] && !sk->dst_ip6[2] && sk->dst_ip6[3] == bpf_htonl(1)) {
		return 1;
	}
	cookie = bpf_get_socket_cookie(sk);
	t = bpf_map_lookup_elem(&traffic_socks, &cookie);

	if (t) {
		t->closed = 1;
		t->last_ns = bpf_ktime_get_coarse_ns();
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
