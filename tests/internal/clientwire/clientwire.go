// Package clientwire is what the test client (tests/client) and the tests that run it share: the report it
// prints, and how an address in its arguments becomes a socket address.
package clientwire

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what one action of the client did, the JSON line it prints.
type Result struct {
	PID       int     `json:"pid"`
	OK        bool    `json:"ok"`
	Errno     string  `json:"errno,omitempty"`
	Error     string  `json:"error,omitempty"`
	ElapsedUS int64   `json:"elapsed_us"`
	Mark      uint32  `json:"mark"`
	Echoed    bool    `json:"echoed,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
	Sent      int64   `json:"sent,omitempty"`     // with -send: bytes written after connecting
	Received  int64   `json:"received,omitempty"` // with -send: bytes read until the peer closed
	// With -send: the kernel's own account of the socket (TCP_INFO), read after the peer closed.
	TCP *TCPStats `json:"tcp,omitempty"`
}

// TCPStats are a socket's TCP_INFO counts: what the kernel handed down for it, the tests' reference for a
// sent count.
type TCPStats struct {
	BytesSent    uint64 `json:"bytes_sent"`    // payload handed to IP, what it sent again included
	BytesRetrans uint64 `json:"bytes_retrans"` // payload sent again (RTO, fast retransmit, loss probes)
	BytesAcked   uint64 `json:"bytes_acked"`
	SegsOut      uint32 `json:"segs_out"`
	DataSegsOut  uint32 `json:"data_segs_out"`
	TotalRetrans uint32 `json:"total_retrans"` // segments sent again
}

// Elapsed is how long the attempted system call took.
func (r Result) Elapsed() time.Duration { return time.Duration(r.ElapsedUS) * time.Microsecond }

// Sockaddr is the socket address of "ADDR:PORT" and its address family.
func Sockaddr(s string) (unix.Sockaddr, int, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, 0, err
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, unix.AF_INET, nil
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}, unix.AF_INET6, nil
}
