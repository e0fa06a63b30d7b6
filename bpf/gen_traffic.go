package bpf

import "crypto/sha256"

// The traffic counters (traffic.c, tcx) are their own object: the running helper attaches them to each
// interface but loopback. They share traffic_socks (traffic.h) with the decision core, which makes the
// records.
//go:generate go tool bpf2go -cc clang-16 -target bpfel -type sock_traffic -type peer Traffic traffic.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror

// TrafficObjectHash identifies the build of the traffic counters' object.
func TrafficObjectHash() [32]byte { return sha256.Sum256(_TrafficBytes) }
