//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * UDP traffic accounting: TC (tcx) programs on every interface but loopback add each datagram's payload to
 * the record of its connected UDP socket (traffic.h; made by the decision core at connect()). Loopback runs
 * nothing, and a TCP packet leaves after its protocol is read: TCP is counted from the kernel's own counters
 * (traffic.c).
 *
 * Egress: the datagram's socket (skb->sk) gives the cookie. The first datagram also files the socket's
 * addresses and ports in udp_peers, since an answer arriving at ingress has no socket yet: there the
 * datagram's addresses and ports, reversed, find the cookie.
 *
 * Bytes are UDP payload (the UDP length field less its header, which covers a whole GSO/GRO packet); packets
 * count segments of a GSO/GRO packet. IPv6 extension headers and IPv4 fragments are not followed: such
 * datagrams are not counted.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "traffic.h"

#define TC_ACT_OK 0
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct udp_peer {
	__u8 local[16]; /* IPv4-mapped for IPv4 */
	__u8 remote[16];
	__u16 lport; /* network order */
	__u16 rport;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct udp_peer);
	__type(value, __u64); /* socket cookie */
} udp_peers SEC(".maps");

struct udp_hdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
};

/* Reads a UDP datagram's addresses, ports and payload length, or returns 0 when skb is none (or cannot be
 * read). src/dst are IPv4-mapped for IPv4. */
static __always_inline int parse_udp(struct __sk_buff *skb, __u8 src[16], __u8 dst[16], struct udp_hdr *uh)
{
	__u32 off;
	__u8 b[20];

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes_relative(skb, 0, b, 20, BPF_HDR_START_NET))
			return 0;
		if (b[9] != IPPROTO_UDP || (b[6] & 0x3f) || b[7]) /* not UDP, or a fragment */
			return 0;
		off = (b[0] & 0x0f) * 4;
		src[10] = src[11] = dst[10] = dst[11] = 0xff;
		__builtin_memcpy(src + 12, b + 12, 4);
		__builtin_memcpy(dst + 12, b + 16, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 nh;

		if (bpf_skb_load_bytes_relative(skb, 6, &nh, 1, BPF_HDR_START_NET) || nh != IPPROTO_UDP)
			return 0;
		if (bpf_skb_load_bytes_relative(skb, 8, src, 16, BPF_HDR_START_NET) ||
		    bpf_skb_load_bytes_relative(skb, 24, dst, 16, BPF_HDR_START_NET))
			return 0;
		off = 40;
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes_relative(skb, off & 0x3f, uh, sizeof(*uh), BPF_HDR_START_NET))
		return 0;
	return 1;
}

static __always_inline void add(__u64 *bytes, __u64 *packets, struct __sk_buff *skb, struct udp_hdr *uh)
{
	__u16 len = bpf_ntohs(uh->len);

	__sync_fetch_and_add(bytes, len > 8 ? len - 8 : 0);
	__sync_fetch_and_add(packets, skb->gso_segs > 1 ? skb->gso_segs : 1);
}

SEC("tc")
int tattle_traffic_tc_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct udp_peer p = {};
	struct sock_traffic *t;
	struct udp_hdr uh;
	__u64 cookie;

	if (!sk)
		return TC_ACT_OK;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	cookie = bpf_get_socket_cookie(skb);
	t = bpf_map_lookup_elem(&traffic_socks, &cookie);
	if (!t || !parse_udp(skb, p.local, p.remote, &uh))
		return TC_ACT_OK;
	if (!t->peered) {
		p.lport = uh.source;
		p.rport = uh.dest;
		if (!bpf_map_update_elem(&udp_peers, &p, &cookie, BPF_ANY))
			t->peered = 1;
	}
	add(&t->tx_bytes, &t->tx_packets, skb, &uh);
	t->last_ns = bpf_ktime_get_ns();
	return TC_ACT_OK;
}

SEC("tc")
int tattle_traffic_tc_ingress(struct __sk_buff *skb)
{
	struct udp_peer p = {};
	struct sock_traffic *t;
	struct udp_hdr uh;
	__u64 *cookie;

	if (!parse_udp(skb, p.remote, p.local, &uh))
		return TC_ACT_OK;
	p.lport = uh.dest;
	p.rport = uh.source;
	cookie = bpf_map_lookup_elem(&udp_peers, &p);
	if (!cookie)
		return TC_ACT_OK;
	t = bpf_map_lookup_elem(&traffic_socks, cookie);
	if (!t)
		return TC_ACT_OK;
	add(&t->rx_bytes, &t->rx_packets, skb, &uh);
	t->last_ns = bpf_ktime_get_ns();
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
