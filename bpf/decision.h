/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The decision: every attempt's verdict, shared by the lsm and cgroup backends.
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
 * goes to the helper (mark.h says how the socket is marked).
 */
#ifndef TATTLE_DECISION_H
#define TATTLE_DECISION_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/kernel.h"
#include "maps.h"
#include "identity.h"
#include "path.h"

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

#endif
