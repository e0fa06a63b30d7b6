/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The record the DNS capture program (dns.c) sends to the helper. It is written to the ring buffer with only
 * cap_len bytes of payload, so a short answer costs a short record.
 */
#ifndef TATTLE_DNS_H
#define TATTLE_DNS_H

#include <linux/types.h>

/* Largest DNS payload copied; longer datagrams are cut and flagged. A power of two (the program masks with
 * DNS_PAYLOAD_MAX - 1). 4096 covers the EDNS buffer sizes resolvers advertise in practice (1232 .. 4096). */
#define DNS_PAYLOAD_MAX 4096

enum dns_stat_index {
	DNS_STAT_SEEN = 0,	/* UDP datagrams from port 53 delivered to a local socket */
	DNS_STAT_CAPTURED = 1,	/* of those, sent to the helper */
	DNS_STAT_LOST = 2,	/* ring buffer full: the answer was not delivered */
	DNS_STAT_TRUNCATED = 3, /* delivered cut short (bigger than DNS_PAYLOAD_MAX, or the packet was short) */
	DNS_STAT_MALFORMED = 4, /* UDP length or payload could not be read */
	DNS_STAT_MAX = 5,
};

struct dns_event {
	__u64 time_ns;	 /* CLOCK_BOOTTIME */
	__u64 cookie;	 /* receiving socket's cookie (SO_COOKIE) */
	__u64 cgroup_id; /* receiving socket's cgroup v2 id */
	__u32 uid;	 /* receiving socket's owner */
	__u32 wire_len;	 /* the UDP payload's real length */
	__u32 cap_len;	 /* bytes of payload that follow */
	__u16 local_port;  /* the querying socket's port (host order) */
	__u16 server_port; /* host order */
	__u8 local_addr[16];  /* the querying socket's address; IPv4 as ::ffff:a.b.c.d */
	__u8 server_addr[16]; /* the answering server; IPv4 as ::ffff:a.b.c.d */
	__u8 family;	      /* 4 or 6 */
	__u8 truncated;	      /* payload cut short: cap_len < wire_len */
	__u8 _pad[6];
	__u8 payload[DNS_PAYLOAD_MAX];
};

#define DNS_EVENT_HDR __builtin_offsetof(struct dns_event, payload)

#endif
