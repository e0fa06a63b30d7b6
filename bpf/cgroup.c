//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * The cgroup backend: cgroup/connect4, connect6, sendmsg4, sendmsg6 attached at the cgroup v2 root decide
 * every attempt themselves. Used where BPF LSM is not enabled. A denied attempt gets EPERM from the kernel.
 */
#include "core.h"
#include "process.h"

static __always_inline int handle(struct bpf_sock_addr *ctx, __u8 family, __u8 hook)
{
	struct bpf_sock *sk = ctx->sk;
	struct identity id;
	struct flow_key fk = {};
	__u8 verdict, strict;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	if (!read_identity(&id)) {
		count(STAT_NO_IDENTITY);
		return 1;
	}
	flow_from_sock_addr(&fk, ctx, family);
	note_dns_socket(ctx, &id);
	verdict = decide(&id, &fk, family, hook, &strict);
	if (verdict == VERDICT_DENY)
		return 0;
	if (sk) {
		note_decision(sk, verdict, &id, strict);
		apply_mark(ctx, sk);
	}
	if (hook == HOOK_CONNECT)
		note_traffic(bpf_get_socket_cookie(ctx), &fk);
	return 1;
}

SEC("cgroup/connect4")
int tattle_connect4(struct bpf_sock_addr *ctx)
{
	return handle(ctx, AF_INET, HOOK_CONNECT);
}

SEC("cgroup/connect6")
int tattle_connect6(struct bpf_sock_addr *ctx)
{
	return handle(ctx, AF_INET6, HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int tattle_sendmsg4(struct bpf_sock_addr *ctx)
{
	return handle(ctx, AF_INET, HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int tattle_sendmsg6(struct bpf_sock_addr *ctx)
{
	return handle(ctx, AF_INET6, HOOK_SENDMSG);
}

char LICENSE[] SEC("license") = "GPL";
