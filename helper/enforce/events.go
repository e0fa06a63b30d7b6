package enforce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// EventKind says why the kernel reported an attempt.
type EventKind uint8

const (
	EventUndecided EventKind = 1 // no verdict: the attempt went through marked and waits for the helper
	EventNewFlow   EventKind = 2 // the first attempt of a flow that a verdict decided
)

func (k EventKind) String() string {
	return enumString(k, "kind", []string{EventUndecided: "undecided", EventNewFlow: "new-flow"})
}

// Hook names the system call path an attempt came through.
type Hook uint8

const (
	HookConnect Hook = 1
	HookSendmsg Hook = 2
)

func (h Hook) String() string {
	return enumString(h, "hook", []string{HookConnect: "connect", HookSendmsg: "sendmsg"})
}

// Event is one attempt the kernel reported, with the identity read in the caller's own context.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Verdict Verdict
	Hook    Hook
	App     identity.Executable
	Exe     string // executable path: read by the kernel at the time of the call (see ExeFromKernel)
	// ExeFromKernel is false when the kernel's path was cut short (deeper than 32 levels or longer than 512
	// bytes) and Exe was resolved in userspace instead (empty if the process was gone by then).
	ExeFromKernel bool
	TGID          uint32 // process ID
	PID           uint32 // thread ID
	UID           uint32
	GID           uint32
	CgroupID      uint64
	Comm          string
	Dest          netip.AddrPort // IPv4 destinations are plain IPv4 addresses
	Proto         Protocol
	Family        uint8 // socket family: unix.AF_INET or unix.AF_INET6
	RuleID        uint32
	// Via is the script an interpreter's process runs, when App is a script identity: not read by the kernel
	// but filled in by the helper (helper/scripts), which resolved it.
	Via string
}

// PathResolver turns an executable identity into a path for display, for the rare events whose kernel path
// was cut short. Learn tells it a path the kernel reported, so later lookups need no /proc access.
type PathResolver interface {
	Path(tgid uint32, app identity.Executable) string
	Learn(app identity.Executable, path string)
}

// EventReader delivers the kernel's events. One reader per system: events are consumed by whoever reads them.
type EventReader struct {
	rd       *ringbuf.Reader
	resolver PathResolver
	clock    kernelClock
}

// Events opens the event stream. resolver may be nil (Exe stays empty).
func (e *Enforcer) Events(resolver PathResolver) (*EventReader, error) {
	rd, err := ringbuf.NewReader(e.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	return &EventReader{rd: rd, resolver: resolver, clock: newBootClock()}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("event reader closed")

// readRecord blocks for the next record of rd and decodes it as the program's struct T (what names it in the
// error); ErrClosed once rd is closed.
func readRecord[T any](rd *ringbuf.Reader, what string) (*T, error) {
	rec, err := rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, err
	}
	var raw T
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.LittleEndian, &raw); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return &raw, nil
}

// Read blocks for the next event. It returns ErrClosed once Close was called, and os.ErrDeadlineExceeded
// when a deadline set with SetDeadline passes.
func (r *EventReader) Read() (Event, error) {
	raw, err := readRecord[bpf.CgroupEvent](r.rd, "event")
	if err != nil {
		return Event{}, err
	}
	ev := decodeEvent(raw, r.clock)
	if r.resolver != nil && !ev.App.IsAppImage() { // an AppImage is named by its file, not the one it runs now
		if ev.ExeFromKernel {
			r.resolver.Learn(ev.App, ev.Exe)
		} else {
			ev.Exe = r.resolver.Path(ev.TGID, ev.App)
		}
	}
	return ev, nil
}

// SetDeadline makes a blocked or later Read return os.ErrDeadlineExceeded after t (zero: no deadline).
func (r *EventReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close unblocks Read.
func (r *EventReader) Close() error { return r.rd.Close() }

func decodeEvent(raw *bpf.CgroupEvent, clock kernelClock) Event {
	ev := Event{
		Time:     clock.wall(raw.TimeNs),
		Kind:     EventKind(raw.Kind),
		Verdict:  Verdict(raw.Verdict),
		Hook:     Hook(raw.Hook),
		App:      identity.FromKernel(raw.Dev, raw.Ino),
		TGID:     raw.Tgid,
		PID:      raw.Pid,
		UID:      raw.Uid,
		GID:      raw.Gid,
		CgroupID: raw.CgroupId,
		Comm:     cString(raw.Comm[:]),
		Dest:     netip.AddrPortFrom(netip.AddrFrom16(raw.Addr).Unmap(), raw.Port),
		Proto:    Protocol(raw.Proto),
		Family:   raw.Family,
		RuleID:   raw.RuleId,
	}
	if n := int(raw.PathLen); n > 0 && n <= len(raw.Path) && raw.PathTruncated == 0 {
		ev.Exe = cString(raw.Path[:n])
		ev.ExeFromKernel = true
	}
	return ev
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// kernelClock converts a kernel clock's nanoseconds to wall-clock time. Events carry CLOCK_BOOTTIME; flow
// counters carry CLOCK_MONOTONIC (coarse), which is cheaper to read on every attempt.
type kernelClock struct{ offset time.Duration }

func newKernelClock(id int32) kernelClock {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return kernelClock{}
	}
	return kernelClock{offset: time.Duration(time.Now().UnixNano() - ts.Nano())}
}

func newBootClock() kernelClock { return newKernelClock(unix.CLOCK_BOOTTIME) }

func (c kernelClock) wall(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)+int64(c.offset))
}
