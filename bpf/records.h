/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What an attempt that is let through leaves for the other objects: the owner of a socket that queries DNS
 * (dns_socks, for the answers dns.c captures) and the traffic record of a connected socket (traffic_socks,
 * which traffic.c counts into).
 */
#ifndef TATTLE_RECORDS_H
#define TATTLE_RECORDS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/kernel.h"
#include "maps.h"
#include "identity.h"
#include "traffic.h"

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

#endif
