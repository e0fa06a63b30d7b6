//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * DNS capture: a cgroup_skb/ingress program at the cgroup v2 root copies every UDP datagram from source port 53
 * that is delivered to a local socket (IPv4 and IPv6) into a ring buffer, with the receiving socket's cookie
 * and owner uid, so the helper can learn name -> address mappings and tie them to the application that asked.
 *
 * It never drops anything (always returns 1). It is a separate object from the decision core so it can be
 * loaded, replaced and failed independently of enforcement.
 *
 * What cgroup_skb can tell about the receiver: the socket cookie (bpf_get_socket_cookie), the socket owner's
 * uid (bpf_get_socket_uid) and the socket's cgroup v2 id (bpf_skb_cgroup_id). It cannot tell the executable:
 * ingress runs in softirq context, not in the receiving process. The helper ties the answer to the application
 * through the cookie or the (local address, port) of the querying socket, which its connect/sendmsg hook saw.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dns.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define DNS_PORT 53
#define UDP_HLEN 8

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct udp_hdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
	__type(value, struct dns_event); /* documents the record type for bpf2go; the kernel ignores it */
} dns_events SEC(".maps");

/* One record being assembled per CPU: too big for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_event);
} dns_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_STAT_MAX);
	__type(key, enum dns_stat_index); /* a 4-byte key; naming the enum puts its values in BTF for bpf2go */
	__type(value, __u64);
} dns_stats SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&dns_stats, &index);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

/* Fills the addresses of e from the IP header and returns the offset of the UDP header, or 0 when the
 * packet is not a UDP datagram this program looks at. IPv4 addresses are stored IPv4-mapped. */
static __always_inline __u32 parse_ip(struct __sk_buff *skb, struct dns_event *e)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ipv4_hdr ip;
		__u32 hlen;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if ((ip.ver_ihl >> 4) != 4 || ip.protocol != IPPROTO_UDP)
			return 0;
		/* Ingress sees reassembled datagrams; a fragment here would not hold the UDP header. */
		if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return 0;
		hlen = (ip.ver_ihl & 0x0f) * 4;
		if (hlen < sizeof(ip))
			return 0;
		__builtin_memset(e->server_addr, 0, 16);
		__builtin_memset(e->local_addr, 0, 16);
		e->server_addr[10] = e->server_addr[11] = 0xff;
		e->local_addr[10] = e->local_addr[11] = 0xff;
		__builtin_memcpy(&e->server_addr[12], ip.saddr, 4);
		__builtin_memcpy(&e->local_addr[12], ip.daddr, 4);
		e->family = 4;
		return hlen;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		/* Only UDP directly after the fixed header: DNS answers do not carry extension headers in
		 * practice, and walking them is not worth the verifier complexity. */
		if (ip6.nexthdr != IPPROTO_UDP)
			return 0;
		__builtin_memcpy(e->server_addr, ip6.saddr, 16);
		__builtin_memcpy(e->local_addr, ip6.daddr, 16);
		e->family = 6;
		return sizeof(ip6);
	}
	return 0;
}

/* Whether an ingress packet may be a DNS answer: UDP from port 53. It reads the headers in place (no helper
 * call, no map), because it runs for every packet delivered to a local socket; only a yes (or headers it
 * cannot see in the linear part, then the full parse decides) goes on to the copying path. */
static __always_inline int maybe_dns(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct udp_hdr *udp;
	__u32 hl;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ipv4_hdr *ip = data;

		if ((void *)(ip + 1) > end)
			return 1;
		if (ip->protocol != IPPROTO_UDP)
			return 0;
		hl = (ip->ver_ihl & 0x0f) * 4;
		udp = data + hl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end)
			return 1;
		if (ip6->nexthdr != IPPROTO_UDP)
			return 0;
		udp = data + sizeof(*ip6);
	} else {
		return 0;
	}
	if ((void *)(udp + 1) > end)
		return 1;
	return udp->source == bpf_htons(DNS_PORT);
}

SEC("cgroup_skb/ingress")
int tattle_dns_ingress(struct __sk_buff *skb)
{
	__u32 zero = 0, off, wire, avail, len;
	struct dns_event *e;
	struct udp_hdr udp;

	if (!maybe_dns(skb))
		return 1;
	e = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!e)
		return 1;
	off = parse_ip(skb, e);
	if (!off || off > 60)
		return 1;
	if (bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)))
		return 1;
	if (udp.source != bpf_htons(DNS_PORT))
		return 1;
	count(DNS_STAT_SEEN);
	off += UDP_HLEN;

	/* The UDP length says how long the DNS message is; the skb may be shorter if it was cut. */
	wire = bpf_ntohs(udp.len);
	if (wire < UDP_HLEN) {
		count(DNS_STAT_MALFORMED);
		return 1;
	}
	wire -= UDP_HLEN;
	avail = skb->len > off ? skb->len - off : 0;
	len = wire < avail ? wire : avail;
	e->truncated = 0;
	if (len > DNS_PAYLOAD_MAX) {
		len = DNS_PAYLOAD_MAX;
		e->truncated = 1;
	} else if (len < wire) {
		e->truncated = 1;
	}
	if (len == 0) {
		count(DNS_STAT_MALFORMED);
		return 1;
	}
	/* Same value, but the verifier now sees 1 <= len <= DNS_PAYLOAD_MAX on the register it checks. */
	len = ((len - 1) & (DNS_PAYLOAD_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, e->payload, len)) {
		count(DNS_STAT_MALFORMED);
		return 1;
	}
	e->time_ns = bpf_ktime_get_boot_ns();
	e->cookie = bpf_get_socket_cookie(skb);
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->uid = bpf_get_socket_uid(skb);
	e->wire_len = wire;
	e->cap_len = len;
	e->server_port = DNS_PORT;
	e->local_port = bpf_ntohs(udp.dest);
	if (e->truncated)
		count(DNS_STAT_TRUNCATED);
	if (bpf_ringbuf_output(&dns_events, e, DNS_EVENT_HDR + len, 0)) {
		count(DNS_STAT_LOST);
		return 1;
	}
	count(DNS_STAT_CAPTURED);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
