package enforce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// trafficMapName is the socket records' map (bpf/traffic.h). The decision core makes the records, so the
// backend's object pins it; the traffic counters take it from the pin.
const trafficMapName = "traffic_socks"

// closedQuiet is how long a record must have been quiet, with its socket gone from sock_diag's list, before
// it is folded into its flow's totals and removed.
const closedQuiet = 5 * time.Second

// FlowID names a flow: an application run by one user to one destination.
type FlowID struct {
	App   identity.Executable
	UID   uint32
	Dest  netip.AddrPort // IPv4 as plain IPv4
	Proto Protocol
}

// Traffic counts layer-4 payload bytes and packets (segments).
type Traffic struct {
	TxBytes, TxPackets, RxBytes, RxPackets uint64
}

func (t *Traffic) add(o Traffic) {
	t.TxBytes += o.TxBytes
	t.TxPackets += o.TxPackets
	t.RxBytes += o.RxBytes
	t.RxPackets += o.RxPackets
}

// trafficState holds what the helper folded from closed sockets' records: the kernel keeps one record per
// live socket, the totals of the ones gone live here.
type trafficState struct {
	socks  *ebpf.Map
	mu     sync.Mutex
	folded map[FlowID]Traffic
	tc     *tcCounters // the counters on the interfaces; nil when not attached by this handle
}

// tcCounters are the counting programs (bpf/traffic.c) and their attachments, one pair per interface but
// loopback. They belong to the running helper (not pinned): interfaces come and go, and the helper
// attaches to new ones when it reads the counters (syncTC).
type tcCounters struct {
	egress, ingress *ebpf.Program
	peers           *ebpf.Map
	links           map[int]tcLinks // by ifindex
	watch           *os.File        // rtnetlink link notifications; closing it stops the watcher
	watched         chan struct{}   // closed when the watcher has stopped
	unsupported     bool            // the kernel has no tcx (before Linux 6.6): traffic is not counted
}

type tcLinks struct {
	name            string
	egress, ingress link.Link
}

func (c *tcCounters) close() {
	if c.watch != nil {
		c.watch.Close()
		<-c.watched
	}
	for _, l := range c.links {
		l.egress.Close()
		l.ingress.Close()
	}
	c.egress.Close()
	c.ingress.Close()
	c.peers.Close()
}

// openTC loads the traffic counters and attaches them to the interfaces there are now. Counting is no part of
// enforcement: failing here only leaves traffic uncounted.
func (e *Enforcer) openTC() {
	if e.traffic.socks == nil {
		return
	}
	spec, err := bpf.LoadTraffic()
	if err != nil {
		e.log.Warn("traffic is not counted", "error", fmt.Errorf("parse embedded TC object: %w", err))
		return
	}
	spec.Maps[trafficMapName].Pinning = ebpf.PinByName
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: filepath.Join(e.pinDir, "maps")}})
	if err != nil {
		e.logVerifier(err)
		e.log.Warn("traffic is not counted: the kernel refused the TC programs", "error", err)
		return
	}
	defer coll.Close()
	c := &tcCounters{links: map[int]tcLinks{}}
	var errs []error
	for dst, name := range map[**ebpf.Program]string{&c.egress: bpf.TrafficProgTattleTrafficEgress, &c.ingress: bpf.TrafficProgTattleTrafficIngress} {
		p, err := coll.Programs[name].Clone()
		errs = append(errs, err)
		*dst = p
	}
	p, err := coll.Maps[bpf.TrafficMapPeers].Clone()
	c.peers = p
	if err := errors.Join(append(errs, err)...); err != nil {
		e.log.Warn("traffic is not counted", "error", fmt.Errorf("take TC programs: %w", err))
		for _, x := range []interface{ Close() error }{c.egress, c.ingress, c.peers} {
			if x != nil {
				x.Close()
			}
		}
		return
	}
	e.traffic.mu.Lock()
	e.traffic.tc = c
	e.syncTCLocked()
	e.traffic.mu.Unlock()
	if err := e.watchLinks(c); err != nil {
		e.log.Warn("interfaces that appear are counted only from the helper's next read of the counters", "error", err)
	}
}

// watchLinks attaches the counters to each interface as it appears, not only when the counters are next
// read: a VPN or a container's veth that comes up starts carrying traffic at once. The watcher goroutine
// belongs to c and stops when c is closed.
func (e *Enforcer) watchLinks(c *tcCounters) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("subscribe to link notifications: %w", err)
	}
	// A non-blocking descriptor in an os.File is served by the runtime's poller, so Close wakes a Read.
	c.watch = os.NewFile(uintptr(fd), "rtnetlink")
	c.watched = make(chan struct{})
	go func() {
		defer close(c.watched)
		buf := make([]byte, 1<<16)
		for {
			if _, err := c.watch.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
				return
			}
			e.traffic.mu.Lock()
			e.syncTCLocked()
			e.traffic.mu.Unlock()
		}
	}()
	return nil
}

// syncTCLocked attaches the traffic counters to interfaces that appeared since the last call and lets go of the
// ones gone. Loopback gets none. Callers hold traffic.mu.
func (e *Enforcer) syncTCLocked() {
	c := e.traffic.tc
	if c == nil || c.unsupported {
		return
	}
	ifs, err := net.Interfaces()
	if err != nil {
		e.log.Debug("list interfaces for the traffic counters", "error", err)
		return
	}
	seen := map[int]bool{}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || stacked(ifc.Name) {
			continue // gets none, and lets go of one it had before it got a lower interface
		}
		seen[ifc.Index] = true
		if l, ok := c.links[ifc.Index]; ok && l.name == ifc.Name {
			continue
		} else if ok {
			l.egress.Close()
			l.ingress.Close()
			delete(c.links, ifc.Index)
		}
		eg, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: c.egress, Attach: ebpf.AttachTCXEgress})
		if errors.Is(err, ebpf.ErrNotSupported) {
			c.unsupported = true
			e.log.Warn("traffic is not counted: the kernel has no tcx (Linux 6.6 or later)", "error", err)
			return
		}
		if err != nil {
			e.log.Debug("attach the traffic counters", "interface", ifc.Name, "error", err)
			continue
		}
		in, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: c.ingress, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			eg.Close()
			e.log.Debug("attach the traffic counters", "interface", ifc.Name, "error", err)
			continue
		}
		c.links[ifc.Index] = tcLinks{name: ifc.Name, egress: eg, ingress: in}
	}
	for idx, l := range c.links {
		if !seen[idx] {
			l.egress.Close()
			l.ingress.Close()
			delete(c.links, idx)
		}
	}
}

// tcProgramIDs names the traffic counters (attached per interface, so not among the pinned links).
func (e *Enforcer) tcProgramIDs() []NamedProgram {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	c := e.traffic.tc
	if c == nil {
		return nil
	}
	var out []NamedProgram
	for name, p := range map[string]*ebpf.Program{bpf.TrafficProgTattleTrafficEgress: c.egress, bpf.TrafficProgTattleTrafficIngress: c.ingress} {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				out = append(out, NamedProgram{Name: name, ID: id})
			}
		}
	}
	return out
}

// stacked tells whether an interface sends through others (a bridge, a bond, a VLAN): a packet leaving
// through it passes its lower interface too, with the same socket, and is counted there, once.
func stacked(name string) bool {
	ents, err := os.ReadDir(filepath.Join("/sys/class/net", name))
	if err != nil {
		return false
	}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), "lower_") {
			return true
		}
	}
	return false
}

func (e *Enforcer) closeTraffic() {
	if e.traffic.socks != nil {
		e.traffic.socks.Close()
	}
	if e.traffic.tc != nil {
		e.traffic.tc.close()
		e.traffic.tc = nil
	}
}

// FlowTraffic returns the bytes and packets of every flow that has any: the live sockets' records plus what
// closed ones left. Records of sockets gone from the kernel's list and quiet for a while are folded into the
// totals and removed, so only one reader (the helper) should call it. It also attaches the counters to
// interfaces that appeared since the last call.
func (e *Enforcer) FlowTraffic() (map[FlowID]Traffic, error) {
	if e.traffic.socks == nil {
		return nil, nil
	}
	now := monotonicNow()
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	e.syncTCLocked()
	if e.traffic.folded == nil {
		e.traffic.folded = map[FlowID]Traffic{}
	}
	out := make(map[FlowID]Traffic, len(e.traffic.folded))
	for id, t := range e.traffic.folded {
		out[id] = t
	}
	var (
		cookie uint64
		v      bpf.TrafficSockTraffic
		quiet  = map[uint8][]uint64{}
	)
	it := e.traffic.socks.Iterate()
	for it.Next(&cookie, &v) {
		id := recordFlow(&v)
		sum := out[id]
		sum.add(Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets})
		out[id] = sum
		if now > v.LastNs && time.Duration(now-v.LastNs) > closedQuiet {
			quiet[v.Proto] = append(quiet[v.Proto], cookie)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read traffic counters: %w", err)
	}
	// A quiet record whose socket the kernel no longer lists is done. (A socket of another network namespace
	// is not listed either; its packets do not pass the interfaces counted here.)
	var done []uint64
	for proto, cookies := range quiet {
		open := map[uint64]bool{}
		if err := dumpSockets(proto, func(c uint64) { open[c] = true }); err != nil {
			e.log.Debug("list sockets", "proto", proto, "error", err)
			continue
		}
		for _, c := range cookies {
			if !open[c] {
				done = append(done, c)
			}
		}
	}
	// Fold before deleting: a record read above and removed below is counted exactly once. A record that
	// changed in between (a late packet of a closed socket) loses at most that packet.
	for _, c := range done {
		if err := e.traffic.socks.Lookup(c, &v); err != nil {
			continue
		}
		if err := e.traffic.socks.Delete(c); err != nil {
			continue
		}
		id := recordFlow(&v)
		f := e.traffic.folded[id]
		f.add(Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets})
		e.traffic.folded[id] = f
	}
	return out, nil
}

func recordFlow(v *bpf.TrafficSockTraffic) FlowID {
	return FlowID{App: identity.FromKernel(v.Dev, v.Ino), UID: v.Uid,
		Dest: netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), v.Port), Proto: Protocol(v.Proto)}
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of the records' time stamps.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
