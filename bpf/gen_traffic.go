package bpf

import "crypto/sha256"

// The traffic accounting programs (traffic.c) are their own object, one file per hook kind: they share no map
// with the decision core, and are loaded and pinned with it by helper/enforce.
//go:generate go tool bpf2go -cc clang-16 -target bpfel -type sock_traffic Traffic traffic.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror

// TrafficObjectHash identifies the build of the traffic accounting object.
func TrafficObjectHash() [32]byte { return sha256.Sum256(_TrafficBytes) }
