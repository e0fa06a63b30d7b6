//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Traffic accounting: TC programs (tcx, or clsact filters before Linux 6.6) on every interface but loopback add each TCP segment's and UDP
 * datagram's payload to the record of its socket (traffic.h), which the decision core made when it let the
 * socket's connect() to a non-loopback destination through. Loopback runs nothing of this, and no cgroup
 * program runs per packet: a cgroup_skb program makes the kernel run the cgroup-BPF framework on every packet
 * of every socket, loopback included.
 *
 * Egress: the packet's socket (skb->sk) gives the cookie; a socket's first packet (a TCP SYN, a UDP
 * datagram) also files its addresses and ports in peers, since a packet arriving at ingress has no socket
 * yet: there its addresses and ports, reversed, find the cookie. A held connection's SYN, let go by the
 * helper from its own context, still carries its socket, so it is counted like any other.
 *
 * Bytes are layer-4 payload from the IP length field less the IP and TCP/UDP headers (a GSO/GRO packet's
 * length field covers the whole packet); retransmitted TCP payload is counted again; packets count
 * segments of a GSO/GRO packet. IPv6 extension headers and IPv4 fragments are not followed: such packets
 * are not counted. The helper folds a record into its flow's totals once its socket is gone from the
 * kernel's socket list (sock_diag) and the record is quiet (helper/enforce.FlowTraffic).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "traffic.h"

/* Both tcx (TCX_NEXT) and a legacy clsact filter (TC_ACT_UNSPEC) read -1 as "go on": the programs only count,
 * so the programs and filters after them still run and decide. */
#define TC_ACT_UNSPEC (-1)
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct peer {
	__u8 local[16]; /* IPv4-mapped for IPv4 */
	__u8 remote[16];
	__u16 lport; /* network order */
	__u16 rport;
	__u8 proto;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct peer);
	__type(value, __u64); /* socket cookie */
} peers SEC(".maps");

/* Reads a TCP or UDP packet's addresses and ports into p (source as local: callers swap for ingress) and
 * returns its payload length, or -1 when it is neither (or cannot be read). */
static __always_inline long parse(struct __sk_buff *skb, __u8 src[16], __u8 dst[16], __u16 *sport, __u16 *dport,
				  __u8 *proto)
{
	__u32 off, len;
	__u8 b[20];
	__be16 ports[2];
	__u8 doff;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes_relative(skb, 0, b, 20, BPF_HDR_START_NET))
			return -1;
		if ((b[6] & 0x3f) || b[7]) /* a fragment */
			return -1;
		*proto = b[9];
		off = (b[0] & 0x0f) * 4;
		len = (__u32)b[2] << 8 | b[3];
		src[10] = src[11] = dst[10] = dst[11] = 0xff;
		__builtin_memcpy(src + 12, b + 12, 4);
		__builtin_memcpy(dst + 12, b + 16, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(skb, 4, b, 4, BPF_HDR_START_NET))
			return -1;
		*proto = b[2];
		off = 40;
		len = 40 + ((__u32)b[0] << 8 | b[1]);
		if (bpf_skb_load_bytes_relative(skb, 8, src, 16, BPF_HDR_START_NET) ||
		    bpf_skb_load_bytes_relative(skb, 24, dst, 16, BPF_HDR_START_NET))
			return -1;
	} else {
		return -1;
	}
	if (*proto != IPPROTO_TCP && *proto != IPPROTO_UDP)
		return -1;
	off &= 0x3f;
	if (bpf_skb_load_bytes_relative(skb, off, ports, sizeof(ports), BPF_HDR_START_NET))
		return -1;
	*sport = ports[0];
	*dport = ports[1];
	if (*proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes_relative(skb, off + 12, &doff, 1, BPF_HDR_START_NET))
			return -1;
		off += (doff >> 4) * 4;
	} else {
		off += 8;
	}
	return len > off ? len - off : 0;
}

static __always_inline __u64 segments(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

SEC("tc")
int tattle_traffic_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct sock_traffic *t;
	struct peer p = {};
	__u64 cookie;
	long n;

	if (!sk)
		return TC_ACT_UNSPEC;
	cookie = bpf_get_socket_cookie(skb);
	t = bpf_map_lookup_elem(&traffic_socks, &cookie);
	if (!t)
		return TC_ACT_UNSPEC;
	n = parse(skb, p.local, p.remote, &p.lport, &p.rport, &p.proto);
	if (n < 0 || p.proto != t->proto)
		return TC_ACT_UNSPEC;
	if (!t->peered && !bpf_map_update_elem(&peers, &p, &cookie, BPF_ANY))
		t->peered = 1;
	__sync_fetch_and_add(&t->tx_bytes, n);
	__sync_fetch_and_add(&t->tx_packets, segments(skb));
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tattle_traffic_ingress(struct __sk_buff *skb)
{
	struct sock_traffic *t;
	struct peer p = {};
	__u64 *cookie;
	long n;

	n = parse(skb, p.remote, p.local, &p.rport, &p.lport, &p.proto);
	if (n < 0)
		return TC_ACT_UNSPEC;
	cookie = bpf_map_lookup_elem(&peers, &p);
	if (!cookie)
		return TC_ACT_UNSPEC;
	t = bpf_map_lookup_elem(&traffic_socks, cookie);
	if (!t)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(&t->rx_bytes, n);
	__sync_fetch_and_add(&t->rx_packets, segments(skb));
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
