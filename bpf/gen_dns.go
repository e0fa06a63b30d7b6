package bpf

import "crypto/sha256"

// The DNS capture program (dns.c) is its own object: it shares no maps with the decision core and is loaded
// by helper/dnscapture.
//go:generate go tool bpf2go -cc clang-16 -target bpfel -type dns_event -type dns_stat_index Dns dns.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror

// DnsObjectHash identifies the build of the DNS capture object.
func DnsObjectHash() [32]byte { return sha256.Sum256(_DnsBytes) }

// DnsPayloadMax is the largest DNS payload the capture program copies (DNS_PAYLOAD_MAX in dns.h).
const DnsPayloadMax = 4096
