package enforce

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// The traffic counters (bpf/traffic.c) are pinned with the backend's programs (their links, one pair per
// interface): their build takes part in the pinned set's hash, so a helper with other counters replaces the
// whole set.
func withTraffic(backend [32]byte) [32]byte {
	t := bpf.TrafficObjectHash()
	return sha256.Sum256(append(backend[:], t[:]...))
}

// trafficMapName is the socket records' map (bpf/traffic.h), in all three objects. The decision core makes
// the records, so the backend's object pins it; the traffic counters take it from the pin.
const trafficMapName = bpf.TrafficMapTrafficSocks

// closedQuiet is how long a record must have been quiet, with its socket gone from sock_diag's list, before
// it is folded into its flow's totals and removed.
const closedQuiet = 5 * time.Second

type seenRecord struct {
	counts Traffic
	since  uint64
}

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
	// seen is each live record's counts when they last changed, and when (CLOCK_MONOTONIC): the kernel
	// stamps a record only when it makes it, since a clock read on every packet cost a quarter of the
	// counters' time per packet.
	seen map[uint64]seenRecord
	tc   *tcCounters // the counters on the interfaces; nil when not attached by this handle
	off  error       // why tc is nil, when loading the counters failed
}

// tcCounters are the counting programs (bpf/traffic.c) and their attachments, one pair per interface but
// loopback, pinned tcx links (or clsact filters before Linux 6.6: clsact.go) so they count on while the helper
// restarts. Interfaces come and go: the running helper attaches to new ones as they appear (watchLinks) and
// lets go of those gone.
type tcCounters struct {
	egress, ingress *ebpf.Program
	links           map[int]tcLinks // by ifindex, pinned as program@ifindex under linkDir (tcx)
	linkDir         string
	clsact          bool          // the kernel has no tcx, or the helper was told to use clsact: legacy TC filters
	handle          uint32        // the clsact filters' handle (clsactHandle)
	lastErr         error         // the last attachment that failed, for the status while none works
	watch           *os.File      // rtnetlink link notifications; closing it stops the watcher
	watched         chan struct{} // closed when the watcher has stopped
}

type tcLinks struct {
	name            string
	egress, ingress link.Link // nil for clsact filters
}

func (c *tcCounters) close() {
	if c.watch != nil {
		c.watch.Close()
		<-c.watched
	}
	// clsact filters stay in the kernel (counting while the helper restarts); tcx links stay pinned.
	for _, l := range c.links {
		for _, x := range []link.Link{l.egress, l.ingress} {
			if x != nil {
				x.Close()
			}
		}
	}
	c.egress.Close()
	c.ingress.Close()
}

// attach attaches (and pins, for tcx) both programs on one interface.
func (c *tcCounters) attach(ifc net.Interface) (tcLinks, error) {
	l := tcLinks{name: ifc.Name}
	if c.clsact {
		if err := attachClsact(c.linkDir, c.handle, ifc.Index, c.egress, c.ingress); err != nil {
			detachClsact(c.linkDir, c.handle, ifc.Index)
			return tcLinks{}, err
		}
		return l, nil
	}
	var err error
	for _, a := range []struct {
		dst  *link.Link
		prog *ebpf.Program
		name string
		at   ebpf.AttachType
	}{
		{&l.egress, c.egress, bpf.TrafficProgTattleTrafficEgress, ebpf.AttachTCXEgress},
		{&l.ingress, c.ingress, bpf.TrafficProgTattleTrafficIngress, ebpf.AttachTCXIngress},
	} {
		if *a.dst, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: a.prog, Attach: a.at}); err == nil {
			err = (*a.dst).Pin(filepath.Join(c.linkDir, fmt.Sprintf("%s@%d", a.name, ifc.Index)))
		}
		if err != nil {
			l.detach()
			return tcLinks{}, err
		}
	}
	return l, nil
}

// detach lets go of an interface's counters: its links and their pins, or its clsact filters.
func (c *tcCounters) detach(ifindex int, l tcLinks) {
	if c.clsact {
		detachClsact(c.linkDir, c.handle, ifindex)
		return
	}
	l.detach()
}

func (l tcLinks) detach() {
	for _, x := range []link.Link{l.egress, l.ingress} {
		if x != nil {
			x.Unpin()
			x.Close()
		}
	}
}

// openTC loads the traffic counters (or takes over the ones an earlier run of this build left attached) and
// attaches them to the interfaces there are now. Counting is no part of enforcement: failing here only leaves
// traffic uncounted.
func (e *Enforcer) openTC() {
	if e.traffic.socks == nil {
		return
	}
	c := &tcCounters{links: map[int]tcLinks{}, linkDir: filepath.Join(e.pinDir, "links"), handle: clsactHandle(e.pinDir)}
	pinned := c.pinnedLinks()
	if e.trafficAttach == TrafficClsact || !e.reused || !c.takeOver(pinned) {
		for _, l := range pinned {
			l.Unpin()
			l.Close()
		}
		if err := e.loadTC(c); err != nil {
			e.log.Warn("traffic is not counted", "error", err)
			e.traffic.mu.Lock()
			e.traffic.off = err
			e.traffic.mu.Unlock()
			return
		}
		// A feature probe, not the kernel's version: backports and distribution kernels differ.
		c.clsact = e.trafficAttach == TrafficClsact || !haveTCX(c.egress)
		if c.clsact {
			e.log.Info("the kernel has no tcx (Linux 6.6): the traffic counters are clsact filters")
		}
	}
	e.traffic.mu.Lock()
	e.traffic.tc = c
	e.syncTCLocked()
	e.traffic.mu.Unlock()
	if err := e.watchLinks(c); err != nil {
		e.log.Warn("interfaces that appear are counted only from the helper's next read of the counters", "error", err)
	}
}

func (e *Enforcer) loadTC(c *tcCounters) error {
	spec, err := bpf.LoadTraffic()
	if err != nil {
		return fmt.Errorf("parse embedded traffic object: %w", err)
	}
	spec.Maps[trafficMapName].Pinning = ebpf.PinByName
	spec.Maps[bpf.TrafficMapPeers].Pinning = ebpf.PinByName
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: filepath.Join(e.pinDir, "maps")}})
	if err != nil {
		e.logVerifier(err)
		return fmt.Errorf("the kernel refused the traffic programs: %w", err)
	}
	defer coll.Close()
	eg, err1 := coll.Programs[bpf.TrafficProgTattleTrafficEgress].Clone()
	in, err2 := coll.Programs[bpf.TrafficProgTattleTrafficIngress].Clone()
	if err := errors.Join(err1, err2); err != nil {
		for _, p := range []*ebpf.Program{eg, in} {
			if p != nil {
				p.Close()
			}
		}
		return fmt.Errorf("take traffic programs: %w", err)
	}
	c.egress, c.ingress = eg, in
	return nil
}

// pinnedLinks loads the counters' links an earlier run pinned, by pin name (program@ifindex).
func (c *tcCounters) pinnedLinks() map[string]link.Link {
	out := map[string]link.Link{}
	ents, _ := os.ReadDir(c.linkDir)
	for _, ent := range ents {
		prog, _, ok := strings.Cut(ent.Name(), "@")
		if !ok || (prog != bpf.TrafficProgTattleTrafficEgress && prog != bpf.TrafficProgTattleTrafficIngress) {
			continue
		}
		path := filepath.Join(c.linkDir, ent.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			os.Remove(path)
			continue
		}
		out[ent.Name()] = l
	}
	return out
}

// takeOver adopts the pinned links of an earlier run of this build, and their programs, so a restarted helper
// neither reloads the counters nor leaves a gap in counting. It fails (taking nothing) when no complete pair
// is pinned.
func (c *tcCounters) takeOver(pinned map[string]link.Link) bool {
	for name, eg := range pinned {
		prog, idx, _ := strings.Cut(name, "@")
		if prog != bpf.TrafficProgTattleTrafficEgress {
			continue
		}
		in, ok := pinned[bpf.TrafficProgTattleTrafficIngress+"@"+idx]
		if !ok {
			continue
		}
		egress, err1 := programOf(eg)
		ingress, err2 := programOf(in)
		if err1 != nil || err2 != nil {
			for _, p := range []*ebpf.Program{egress, ingress} {
				if p != nil {
					p.Close()
				}
			}
			return false
		}
		c.egress, c.ingress = egress, ingress
		break
	}
	if c.egress == nil {
		return false
	}
	for name, eg := range pinned {
		prog, idx, _ := strings.Cut(name, "@")
		if prog != bpf.TrafficProgTattleTrafficEgress {
			continue
		}
		in, ok := pinned[bpf.TrafficProgTattleTrafficIngress+"@"+idx]
		n, err := strconv.Atoi(idx)
		ifc, ierr := net.InterfaceByIndex(n)
		if !ok || err != nil || ierr != nil {
			continue // let go below
		}
		c.links[n] = tcLinks{name: ifc.Name, egress: eg, ingress: in}
		delete(pinned, name)
		delete(pinned, bpf.TrafficProgTattleTrafficIngress+"@"+idx)
	}
	for _, l := range pinned {
		l.Unpin()
		l.Close()
	}
	return true
}

func programOf(l link.Link) (*ebpf.Program, error) {
	info, err := l.Info()
	if err != nil {
		return nil, fmt.Errorf("inspect traffic link: %w", err)
	}
	return ebpf.NewProgramFromID(info.Program)
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
	if c == nil {
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
			c.detach(ifc.Index, l)
			delete(c.links, ifc.Index)
		}
		l, err := c.attach(ifc)
		if err != nil {
			if c.lastErr == nil || c.lastErr.Error() != err.Error() {
				e.log.Warn("attach the traffic counters", "interface", ifc.Name, "error", err)
			}
			c.lastErr = fmt.Errorf("%s: %w", ifc.Name, err)
			continue
		}
		c.links[ifc.Index] = l
	}
	for idx, l := range c.links {
		if !seen[idx] {
			c.detach(idx, l)
			delete(c.links, idx)
		}
	}
}

// TrafficAttach chooses how the traffic counters are attached.
type TrafficAttach string

const (
	TrafficAuto   TrafficAttach = ""       // tcx where the kernel has it, else clsact
	TrafficClsact TrafficAttach = "clsact" // legacy TC filters even where there is tcx
)

// TrafficCounting says how traffic is counted: "tcx", "tc clsact", or "off: <why>" (for the status: a user
// must see that bytes are not counted rather than read 0 B).
func (e *Enforcer) TrafficCounting() string {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	c := e.traffic.tc
	switch {
	case e.traffic.socks == nil:
		return "off: the backend keeps no socket records"
	case c == nil && e.traffic.off != nil:
		return "off: " + e.traffic.off.Error()
	case c == nil:
		return "off: the counters are not loaded"
	case len(c.links) == 0 && c.lastErr != nil:
		return "off: " + c.lastErr.Error()
	}
	how := "tcx"
	if c.clsact {
		how = "tc clsact"
	}
	if len(c.links) == 0 {
		return how + ", no interface but loopback"
	}
	return how
}

// CountsTraffic tells whether the traffic counters are attached to any interface (there is one besides
// loopback, and tcx or clsact took them).
func (e *Enforcer) CountsTraffic() bool {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	return e.traffic.tc.attached()
}

func (c *tcCounters) attached() bool { return c != nil && len(c.links) > 0 }

// tcProgramIDs names the traffic counters (attached per interface, so not among the backend's links).
func (e *Enforcer) tcProgramIDs() []NamedProgram {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	c := e.traffic.tc
	if !c.attached() {
		return nil // loaded for interfaces to come, but attached nowhere
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
	seen := make(map[uint64]seenRecord, len(e.traffic.seen))
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
		counts := Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets}
		sum := out[id]
		sum.add(counts)
		out[id] = sum
		s, known := e.traffic.seen[cookie]
		switch {
		case !known && counts == (Traffic{}):
			s = seenRecord{counts: counts, since: v.MadeNs}
		case !known || s.counts != counts:
			// Counted since the last look (or before this handle's first): its last packet may be now.
			s = seenRecord{counts: counts, since: now}
		}
		seen[cookie] = s
		if now > s.since && time.Duration(now-s.since) > closedQuiet {
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
		delete(seen, c)
		id := recordFlow(&v)
		f := e.traffic.folded[id]
		f.add(Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets})
		e.traffic.folded[id] = f
	}
	e.traffic.seen = seen
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
