package bpf

import "crypto/sha256"

// The traffic accounting programs are their own objects, one file per hook kind: traffic.c (sock_ops, TCP's
// final counts) is attached and pinned with the backend's programs; traffic_tc.c (TC, UDP) is attached by the
// running helper to each interface but loopback. Both share traffic_socks (traffic.h) with the decision core,
// which makes the records.
//go:generate go tool bpf2go -cc clang-16 -target bpfel -type sock_traffic Traffic traffic.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -cc clang-16 -target bpfel -type udp_peer TrafficTc traffic_tc.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror

// TrafficObjectHash identifies the build of the TCP traffic accounting object.
func TrafficObjectHash() [32]byte { return sha256.Sum256(_TrafficBytes) }
