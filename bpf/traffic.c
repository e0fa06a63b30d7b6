//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP traffic accounting: the final byte and segment counts of each counted TCP socket, taken from the
 * kernel's own counters (bytes_acked, bytes_received, segs_out, segs_in) when the socket reaches TCP_CLOSE.
 *
 * The socket's record (traffic.h) is made by the decision core when it lets a connect() to a non-loopback
 * destination through, in the connecting process's context, for the flow it decided (a held connection's
 * record too: its connect() was let through, undecided). No program runs per packet: while a socket lives
 * the helper reads its counters from the kernel through sock_diag (helper/enforce/sockdiag.go); this
 * sock_ops program only fills in what the socket counted when it closes, so nothing is lost between the
 * helper's last read and the socket's end.
 *
 * sock_ops runs for every TCP socket on a few events of its life (connect, established, initial window and
 * timeout), not per packet: every event other than these two returns at once. At connect, one lookup by
 * cookie tells whether the socket has a record (loopback sockets have none), and only those ask for the
 * state callback.
 *
 * Bytes are TCP payload: bytes_acked less the SYN (a FIN, when acked, adds one), retransmissions not counted
 * again; bytes_received (a received FIN adds one). Segments count every segment, pure ACKs included.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "traffic.h"

SEC("sockops")
int tattle_traffic_sockops(struct bpf_sock_ops *skops)
{
	struct sock_traffic *t;
	__u64 cookie, acked;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_map_lookup_elem(&traffic_socks, &cookie))
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		t = bpf_map_lookup_elem(&traffic_socks, &cookie);
		if (!t)
			return 1;
		acked = skops->bytes_acked;
		t->tx_bytes = acked ? acked - 1 : 0;
		t->rx_bytes = skops->bytes_received;
		t->tx_packets = skops->segs_out;
		t->rx_packets = skops->segs_in;
		t->last_ns = bpf_ktime_get_ns();
		t->closed = 1;
		return 1;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
