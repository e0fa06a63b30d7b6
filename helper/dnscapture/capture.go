// Package dnscapture loads the DNS capture program (bpf/dns.c) at the cgroup v2 root and reads the DNS answers
// it copies: every UDP datagram from port 53 delivered to a local socket, with the receiving socket's cookie,
// uid and cgroup, and the addresses of the querying socket and the server.
package dnscapture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
)

// ErrClosed is returned by Read once the capture is closed.
var ErrClosed = errors.New("dns capture closed")

// Packet is one DNS answer delivered to a local socket.
type Packet struct {
	Payload      []byte         // the DNS message as received (possibly cut short, see Truncated)
	Truncated    bool           // Payload is shorter than the datagram (WireLen bytes)
	WireLen      int            // the UDP payload's real length
	SocketCookie uint64         // receiving socket (SO_COOKIE); 0 if the kernel did not give one
	UID          uint32         // receiving socket's owner
	CgroupID     uint64         // receiving socket's cgroup v2 id
	LocalAddr    netip.AddrPort // the querying socket (the answer's destination)
	Server       netip.AddrPort // the server that answered
	Time         time.Time      // when the kernel saw the answer (wall clock, converted from CLOCK_BOOTTIME)
}

// Stats are the capture program's counters, summed over CPUs.
type Stats struct {
	Seen      uint64 // UDP datagrams from port 53 delivered to local sockets
	Captured  uint64 // sent to the helper
	Lost      uint64 // ring buffer full: not delivered
	Truncated uint64 // delivered cut short
	Malformed uint64 // unreadable UDP length or payload
}

// Capture is the loaded and attached capture program and its ring buffer reader.
type Capture struct {
	objs   bpf.DnsObjects
	link   link.Link
	reader *ringbuf.Reader
	// bootOffset converts CLOCK_BOOTTIME to wall time: wall = boot + bootOffset.
	bootOffset time.Duration
}

// hdrLen is the size of the record header before the payload (DNS_EVENT_HDR in bpf/dns.h).
const hdrLen = int(unsafe.Offsetof(bpf.DnsDnsEvent{}.Payload))

// Open loads the capture program and attaches it (BPF_F_ALLOW_MULTI, through a BPF link) at the cgroup v2
// root cgroupRoot, so it sees answers to sockets of every cgroup. Close detaches it.
func Open(ctx context.Context, cgroupRoot string) (*Capture, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(cgroupRoot); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cgroup v2 root %s is not a directory: give the mount point of the cgroup2 file system", cgroupRoot)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the memlock limit for BPF maps: %w", err)
	}
	c := &Capture{}
	if err := bpf.LoadDnsObjects(&c.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load DNS capture program (verifier rejected it; kernel too old?): %+v", ve)
		}
		return nil, fmt.Errorf("load DNS capture program (needs root or CAP_BPF+CAP_NET_ADMIN): %w", err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{
		Path:    cgroupRoot,
		Attach:  ebpf.AttachCGroupInetIngress,
		Program: c.objs.TattleDnsIngress,
	})
	if err != nil {
		c.objs.Close()
		return nil, fmt.Errorf("attach DNS capture at %s: %w", cgroupRoot, err)
	}
	c.link = l
	c.reader, err = ringbuf.NewReader(c.objs.DnsEvents)
	if err != nil {
		c.link.Close()
		c.objs.Close()
		return nil, fmt.Errorf("open DNS capture ring buffer: %w", err)
	}
	c.bootOffset = bootOffset()
	return c, nil
}

// ProgramID is the kernel's ID of the attached capture program (for its run statistics).
func (c *Capture) ProgramID() (ebpf.ProgramID, error) {
	info, err := c.link.Info()
	if err != nil {
		return 0, fmt.Errorf("inspect DNS capture link: %w", err)
	}
	return info.Program, nil
}

// bootOffset is wall time minus CLOCK_BOOTTIME, sampled now.
func bootOffset() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// Read blocks until the next captured answer and returns it. It returns ErrClosed after Close. It is meant
// for one reading goroutine.
func (c *Capture) Read() (Packet, error) {
	for {
		rec, err := c.reader.Read()
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return Packet{}, ErrClosed
			}
			return Packet{}, fmt.Errorf("read DNS capture ring buffer: %w", err)
		}
		p, err := decode(rec.RawSample, c.bootOffset)
		if err != nil {
			// A record the program wrote but this code cannot read means a build mismatch; say so and skip it.
			slog.Warn("skipping an unreadable DNS capture record", "err", err)
			continue
		}
		return p, nil
	}
}

// decode turns one ring buffer record (header + cap_len payload bytes) into a Packet.
func decode(raw []byte, bootOffset time.Duration) (Packet, error) {
	if len(raw) < hdrLen {
		return Packet{}, fmt.Errorf("DNS capture record of %d bytes is shorter than its header (%d)", len(raw), hdrLen)
	}
	var h bpf.DnsDnsEvent
	le := binary.LittleEndian
	h.TimeNs = le.Uint64(raw[0:])
	h.Cookie = le.Uint64(raw[8:])
	h.CgroupId = le.Uint64(raw[16:])
	h.Uid = le.Uint32(raw[24:])
	h.WireLen = le.Uint32(raw[28:])
	h.CapLen = le.Uint32(raw[32:])
	h.LocalPort = le.Uint16(raw[36:])
	h.ServerPort = le.Uint16(raw[38:])
	copy(h.LocalAddr[:], raw[40:56])
	copy(h.ServerAddr[:], raw[56:72])
	h.Family = raw[72]
	h.Truncated = raw[73]
	if int(h.CapLen) > len(raw)-hdrLen || h.CapLen > bpf.DnsPayloadMax {
		return Packet{}, fmt.Errorf("DNS capture record claims %d payload bytes but holds %d", h.CapLen, len(raw)-hdrLen)
	}
	addr := func(b [16]byte) netip.Addr {
		a := netip.AddrFrom16(b)
		if h.Family == 4 {
			return a.Unmap()
		}
		return a
	}
	return Packet{
		Payload:      append([]byte(nil), raw[hdrLen:hdrLen+int(h.CapLen)]...),
		Truncated:    h.Truncated != 0,
		WireLen:      int(h.WireLen),
		SocketCookie: h.Cookie,
		UID:          h.Uid,
		CgroupID:     h.CgroupId,
		LocalAddr:    netip.AddrPortFrom(addr(h.LocalAddr), h.LocalPort),
		Server:       netip.AddrPortFrom(addr(h.ServerAddr), h.ServerPort),
		Time:         time.Unix(0, int64(h.TimeNs)).Add(bootOffset),
	}, nil
}

// Unread is how many bytes of captured answers wait in the ring buffer. It takes no lock, so it can be
// asked while another goroutine is blocked in Read.
//
// Ordering: the program submits an answer before the kernel queues it to the receiving socket, so an
// application cannot have read its answer (and connected) before the answer is in the ring buffer. A
// decision about a connection that may depend on a fresh answer should therefore wait while Unread is not
// zero (and until the reader has applied the last record it took) before looking up names.
func (c *Capture) Unread() int { return c.reader.AvailableBytes() }

// Stats reads the program's counters.
func (c *Capture) Stats() (Stats, error) {
	var s Stats
	fields := []*uint64{&s.Seen, &s.Captured, &s.Lost, &s.Truncated, &s.Malformed}
	for i, f := range fields {
		var perCPU []uint64
		if err := c.objs.DnsStats.Lookup(uint32(i), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read DNS capture counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	return s, nil
}

// Close detaches the program, unblocks Read and frees the maps.
func (c *Capture) Close() error {
	errs := []error{c.reader.Close(), c.link.Close(), c.objs.Close()}
	return errors.Join(errs...)
}
