//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * The lsm backend: BPF LSM programs on socket_connect and socket_sendmsg decide every attempt before the
 * protocol sees it. LSM programs may not set socket options, so the undecided mark is applied by small
 * cgroup sock_addr programs that run right after the LSM hook on the same socket (the hook leaves its
 * decision in socket-local storage).
 */
#define TATTLE_LSM
#include "core.h"
#include "process.h"
#include <bpf/bpf_tracing.h>

/* Fills the destination of a flow from a kernel copy of the caller's sockaddr. Returns 0 for addresses that
 * are not AF_INET/AF_INET6 (AF_UNSPEC disconnects a UDP socket, for example). */
static __always_inline int flow_from_sockaddr(struct flow_key *fk, const void *address, int addrlen)
{
	__u16 family = 0;

	if (addrlen < (int)sizeof(family) || bpf_probe_read_kernel(&family, sizeof(family), address))
		return 0;
	if (family == AF_INET) {
		struct sockaddr_in sin;

		if (addrlen < (int)sizeof(sin) || bpf_probe_read_kernel(&sin, sizeof(sin), address))
			return 0;
		set_v4_mapped(fk->addr, sin.sin_addr.s_addr);
		fk->port = bpf_ntohs(sin.sin_port);
		return 1;
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 sin6;

		/* Without the scope id (24 bytes, RFC 2133) is still a valid IPv6 sockaddr. */
		if (addrlen < 24 || bpf_probe_read_kernel(&sin6, 24, address))
			return 0;
		__builtin_memcpy(fk->addr, &sin6.sin6_addr, 16);
		fk->port = bpf_ntohs(sin6.sin6_port);
		return 1;
	}
	return 0;
}

static __always_inline int handle(struct socket *sock, const void *address, int addrlen, __u8 hook)
{
	struct sock *sk = sock->sk;
	struct identity id;
	struct flow_key fk = {};
	__u16 family, proto;
	__u8 verdict, strict;

	if (!sk)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	proto = sk->sk_protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	if (!flow_from_sockaddr(&fk, address, addrlen))
		return 0;
	fk.proto = proto;
	if (!read_identity(&id)) {
		count(STAT_NO_IDENTITY);
		return 0;
	}
	verdict = decide(&id, &fk, family, hook, &strict);
	if (verdict == VERDICT_DENY)
		return -EPERM;
	note_decision(sk, verdict, &id, strict);
	if (hook == HOOK_CONNECT)
		note_traffic(bpf_get_socket_cookie(sk), &fk);
	return 0;
}

SEC("lsm/socket_connect")
int BPF_PROG(tattle_lsm_connect, struct socket *sock, void *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return handle(sock, address, addrlen, HOOK_CONNECT);
}

/* Runs on every send of every socket, so everything that is not an addressed datagram (or a TCP Fast Open
 * connect, which carries its destination in sendmsg) leaves within the first few instructions. */
SEC("lsm/socket_sendmsg")
int BPF_PROG(tattle_lsm_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	struct sock *sk;
	short type;
	void *name;

	if (ret)
		return ret;
	type = sock->type;
	if (type != SOCK_DGRAM && type != SOCK_STREAM)
		return 0;
	name = msg->msg_name;
	if (!name)
		return 0;
	sk = sock->sk;
	if (!sk) /* newer verifiers insist: sock->sk may be NULL */
		return 0;
	if (type == SOCK_STREAM && sk->__sk_common.skc_state != TCP_CLOSE)
		return 0;
	return handle(sock, name, msg->msg_namelen, HOOK_SENDMSG);
}

/* The marking half: sets or clears the undecided mark the LSM hook asked for, and notes DNS queries' sockets.
 * Never denies. */
static __always_inline void mark_and_note(struct bpf_sock_addr *ctx)
{
	struct identity id;

	apply_mark(ctx, ctx->sk);
	if (ctx->user_port == bpf_htons(53) && read_identity(&id))
		note_dns_socket(ctx, &id);
}

SEC("cgroup/connect4")
int tattle_mark_connect4(struct bpf_sock_addr *ctx)
{
	mark_and_note(ctx);
	return 1;
}

SEC("cgroup/connect6")
int tattle_mark_connect6(struct bpf_sock_addr *ctx)
{
	mark_and_note(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int tattle_mark_sendmsg4(struct bpf_sock_addr *ctx)
{
	mark_and_note(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int tattle_mark_sendmsg6(struct bpf_sock_addr *ctx)
{
	mark_and_note(ctx);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
