/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The traffic record of an outbound socket, shared by the decision core (which makes it when it lets a
 * connect() to a non-loopback destination through) and the traffic counters (traffic.c), keyed by the
 * socket's cookie.
 */
#ifndef TATTLE_TRAFFIC_H
#define TATTLE_TRAFFIC_H

/* One socket's account. The flow fields are those of struct flow_key in maps.h. */
struct sock_traffic {
	__u64 ino;
	__u32 dev;
	__u32 uid;
	__u8 addr[16]; /* destination, IPv4-mapped for IPv4 */
	__u16 port;    /* destination port, host order */
	__u8 proto;
	__u8 peered; /* its addresses and ports are in peers (traffic.c), so packets received find the record */
	__u8 _pad[4];
	__u64 tx_bytes;
	__u64 tx_packets;
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 made_ns; /* CLOCK_MONOTONIC of the record's making (the helper tells quiet records by their counts:
			* a clock read per packet was a quarter of the counters' cost) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, struct sock_traffic);
} traffic_socks SEC(".maps");

#endif
