package enforce

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// The TCP traffic object (bpf/traffic.c) is attached and pinned with the backend's programs: its build takes
// part in the pinned set's hash, so a helper with other traffic programs replaces the whole set.
func withTraffic(backend [32]byte) [32]byte {
	t := bpf.TrafficObjectHash()
	return sha256.Sum256(append(backend[:], t[:]...))
}

// trafficMapName is the socket records' map (bpf/traffic.h). The decision core makes the records, so the
// backend's object pins it; the traffic objects take it from the pin.
const trafficMapName = "traffic_socks"

var trafficPrograms = []string{bpf.TrafficProgTattleTrafficSockops}

// udpQuiet is how long a UDP socket's record must have been quiet, with the socket gone from sock_diag's
// list, before it is folded into its flow's totals and removed.
const udpQuiet = 5 * time.Second

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
	tc     *tcCounters // UDP counters on the interfaces; nil when not attached by this handle
}

// tcCounters are the UDP counting programs (bpf/traffic_tc.c) and their attachments, one pair per interface
// but loopback. They belong to the running helper (not pinned): interfaces come and go, and the helper
// attaches to new ones when it reads the counters (syncTC).
type tcCounters struct {
	egress, ingress *ebpf.Program
	peers           *ebpf.Map
	links           map[int]tcLinks // by ifindex
	unsupported     bool            // the kernel has no tcx (before Linux 6.6): UDP is not counted
}

type tcLinks struct {
	name            string
	egress, ingress link.Link
}

func (c *tcCounters) close() {
	for _, l := range c.links {
		l.egress.Close()
		l.ingress.Close()
	}
	c.egress.Close()
	c.ingress.Close()
	c.peers.Close()
}

func (e *Enforcer) installTraffic(cgroupRoot, mapDir, linkDir string) error {
	spec, err := bpf.LoadTraffic()
	if err != nil {
		return fmt.Errorf("parse embedded traffic object: %w", err)
	}
	spec.Maps[trafficMapName].Pinning = ebpf.PinByName
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}})
	if err != nil {
		e.logVerifier(err)
		return fmt.Errorf("load traffic programs: %w", err)
	}
	defer coll.Close()
	m, err := coll.Maps[trafficMapName].Clone()
	if err != nil {
		return fmt.Errorf("take traffic map: %w", err)
	}
	e.traffic.socks = m
	for _, name := range trafficPrograms {
		prog, ps := coll.Programs[name], spec.Programs[name]
		if prog == nil || ps == nil {
			return fmt.Errorf("program %s missing from the embedded traffic object", name)
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupRoot, Attach: ps.AttachType, Program: prog})
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		if err := l.Pin(filepath.Join(linkDir, name)); err != nil {
			l.Close()
			return fmt.Errorf("pin link %s: %w", name, err)
		}
		e.links[name] = l
	}
	return nil
}

// dropTraffic undoes what a failed installTraffic left: attached links and their pins. (The records' map
// belongs to the backend's object.)
func (e *Enforcer) dropTraffic(linkDir string) {
	for _, name := range trafficPrograms {
		if l, ok := e.links[name]; ok {
			l.Unpin()
			l.Close()
			delete(e.links, name)
		}
		os.Remove(filepath.Join(linkDir, name))
	}
	if e.traffic.socks != nil {
		e.traffic.socks.Close()
		e.traffic.socks = nil
	}
}

// reattachTraffic takes the pinned traffic link and map of an earlier run; when that run pinned no link (its
// kernel refused the program), traffic stays uncounted.
func (e *Enforcer) reattachTraffic() error {
	for i, name := range trafficPrograms {
		l, err := link.LoadPinnedLink(filepath.Join(e.pinDir, "links", name), nil)
		if i == 0 && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load pinned link %s: %w", name, err)
		}
		e.links[name] = l
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, "maps", trafficMapName), nil)
	if err != nil {
		return fmt.Errorf("load pinned map %s: %w", trafficMapName, err)
	}
	e.traffic.socks = m
	return nil
}

// openTC loads the UDP counters and attaches them to the interfaces there are now. Counting is no part of
// enforcement: failing here only leaves UDP uncounted.
func (e *Enforcer) openTC() {
	if e.traffic.socks == nil {
		return
	}
	spec, err := bpf.LoadTrafficTc()
	if err != nil {
		e.log.Warn("UDP traffic is not counted", "error", fmt.Errorf("parse embedded TC object: %w", err))
		return
	}
	spec.Maps[trafficMapName].Pinning = ebpf.PinByName
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: filepath.Join(e.pinDir, "maps")}})
	if err != nil {
		e.logVerifier(err)
		e.log.Warn("UDP traffic is not counted: the kernel refused the TC programs", "error", err)
		return
	}
	defer coll.Close()
	c := &tcCounters{links: map[int]tcLinks{}}
	var errs []error
	for dst, name := range map[**ebpf.Program]string{&c.egress: bpf.TrafficTcProgTattleTrafficTcEgress, &c.ingress: bpf.TrafficTcProgTattleTrafficTcIngress} {
		p, err := coll.Programs[name].Clone()
		errs = append(errs, err)
		*dst = p
	}
	p, err := coll.Maps[bpf.TrafficTcMapUdpPeers].Clone()
	c.peers = p
	if err := errors.Join(append(errs, err)...); err != nil {
		e.log.Warn("UDP traffic is not counted", "error", fmt.Errorf("take TC programs: %w", err))
		for _, x := range []interface{ Close() error }{c.egress, c.ingress, c.peers} {
			if x != nil {
				x.Close()
			}
		}
		return
	}
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	e.traffic.tc = c
	e.syncTCLocked()
}

// syncTCLocked attaches the UDP counters to interfaces that appeared since the last call and lets go of the
// ones gone. Loopback gets none. Callers hold traffic.mu.
func (e *Enforcer) syncTCLocked() {
	c := e.traffic.tc
	if c == nil || c.unsupported {
		return
	}
	ifs, err := net.Interfaces()
	if err != nil {
		e.log.Debug("list interfaces for the UDP counters", "error", err)
		return
	}
	seen := map[int]bool{}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
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
			e.log.Warn("UDP traffic is not counted: the kernel has no tcx (Linux 6.6 or later); TCP is", "error", err)
			return
		}
		if err != nil {
			e.log.Debug("attach the UDP counters", "interface", ifc.Name, "error", err)
			continue
		}
		in, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: c.ingress, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			eg.Close()
			e.log.Debug("attach the UDP counters", "interface", ifc.Name, "error", err)
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

// tcProgramIDs names the UDP counters (attached per interface, so not among the pinned links).
func (e *Enforcer) tcProgramIDs() []NamedProgram {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	c := e.traffic.tc
	if c == nil {
		return nil
	}
	var out []NamedProgram
	for name, p := range map[string]*ebpf.Program{bpf.TrafficTcProgTattleTrafficTcEgress: c.egress, bpf.TrafficTcProgTattleTrafficTcIngress: c.ingress} {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				out = append(out, NamedProgram{Name: name, ID: id})
			}
		}
	}
	return out
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

// FlowTraffic returns the bytes and packets of every flow that has any: the live sockets' counters plus
// what closed ones left. A live TCP socket's counters are the kernel's own, read through sock_diag; a closed
// one's were written into its record when it closed; a UDP socket's are its record's. Records of closed
// sockets are folded into the totals and removed from the kernel, so only one reader (the helper) should
// call it.
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
	// Read the kernel's list before the records: a socket that closes in between has its final counts in its
	// record by the time the record is read.
	live := map[uint64]Traffic{}
	if err := dumpSockets(unix.IPPROTO_TCP, func(s diagSocket) {
		if s.hasInfo {
			live[s.cookie] = s.traffic
		}
	}); err != nil {
		e.log.Debug("live TCP counters unavailable", "error", err)
	}
	var (
		cookie  uint64
		v       bpf.TrafficSockTraffic
		done    []uint64
		udpIdle []uint64
	)
	it := e.traffic.socks.Iterate()
	for it.Next(&cookie, &v) {
		t := Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets}
		switch {
		case Protocol(v.Proto) == TCP && v.Closed != 0:
			done = append(done, cookie)
		case Protocol(v.Proto) == TCP:
			// A socket not in the list is in another network namespace (counted when it closes) or never
			// got connected (nothing to count; the LRU drops its record in time).
			if l, ok := live[cookie]; ok {
				t = l
			}
		case now > v.LastNs && time.Duration(now-v.LastNs) > udpQuiet:
			udpIdle = append(udpIdle, cookie)
		}
		id := recordFlow(&v)
		sum := out[id]
		sum.add(t)
		out[id] = sum
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read traffic counters: %w", err)
	}
	if len(udpIdle) > 0 {
		open := map[uint64]bool{}
		if err := dumpSockets(unix.IPPROTO_UDP, func(s diagSocket) { open[s.cookie] = true }); err != nil {
			e.log.Debug("list UDP sockets", "error", err)
		} else {
			for _, c := range udpIdle {
				if !open[c] {
					done = append(done, c)
				}
			}
		}
	}
	// Fold before deleting: a record read above and removed below is counted exactly once. A UDP record that
	// changed in between (a late datagram of a closed socket) loses at most that datagram.
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
