/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The mark of an undecided socket, set by cgroup sock_addr programs from the decision left in the socket's
 * storage.
 *
 * The mark on an undecided socket has three parts, all inside the bits the helper configured as Tattle's:
 *   held    always: netfilter queues the socket's new packets to the helper
 *   strict  the application has a deny rule somewhere: its undecided packets are dropped, never passed, while
 *           no helper is reading the queue
 *   token   a hash of the identity (executable, uid), so the helper ties a queued packet to the application
 *           that sent it even when two applications of one user reach one destination at the same moment
 * The application's own bits under that mask are saved in the socket's storage and put back once decided.
 */
#ifndef TATTLE_MARK_H
#define TATTLE_MARK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "include/kernel.h"
#include "maps.h"
#include "identity.h"

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

#endif
