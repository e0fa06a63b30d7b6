package enforce

import (
	"crypto/sha256"
	"errors"
	"fmt"
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

// The traffic object (bpf/traffic.c) is attached and pinned with the backend's programs: its build takes part
// in the pinned set's hash, so a helper with other traffic programs replaces the whole set.
func withTraffic(backend [32]byte) [32]byte {
	t := bpf.TrafficObjectHash()
	return sha256.Sum256(append(backend[:], t[:]...))
}

const (
	trafficMapName  = "traffic_socks"
	expectedMapName = "traffic_expected"
	helperMapName   = "traffic_helper"
)

var trafficPrograms = []string{
	bpf.TrafficProgTattleTrafficEgress, bpf.TrafficProgTattleTrafficIngress, bpf.TrafficProgTattleTrafficRelease,
}

// closedQuiet is how long a released socket's record must have been quiet before it is folded into its flow's
// totals and removed: a closed TCP socket still sends what was left in its buffer.
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
	socks    *ebpf.Map
	expected *ebpf.Map // connections the helper lets go, by addresses and ports
	mu       sync.Mutex
	folded   map[FlowID]Traffic
}

func (e *Enforcer) installTraffic(cgroupRoot, mapDir, linkDir string) error {
	spec, err := bpf.LoadTraffic()
	if err != nil {
		return fmt.Errorf("parse embedded traffic object: %w", err)
	}
	spec.Maps[trafficMapName].Pinning = ebpf.PinByName
	spec.Maps[expectedMapName].Pinning = ebpf.PinByName
	spec.Maps[helperMapName].Pinning = ebpf.PinByName
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		os.Remove(filepath.Join(mapDir, trafficMapName))
		os.Remove(filepath.Join(mapDir, expectedMapName))
		os.Remove(filepath.Join(mapDir, helperMapName))
		coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}})
	}
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
	if e.traffic.expected, err = coll.Maps[expectedMapName].Clone(); err != nil {
		return fmt.Errorf("take traffic map: %w", err)
	}
	if err := nameHelper(coll.Maps[helperMapName]); err != nil {
		return err
	}
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

// dropTraffic undoes what a failed installTraffic left: attached links, their pins and the map's pin.
func (e *Enforcer) dropTraffic(mapDir, linkDir string) {
	for _, name := range trafficPrograms {
		if l, ok := e.links[name]; ok {
			l.Unpin()
			l.Close()
			delete(e.links, name)
		}
		os.Remove(filepath.Join(linkDir, name))
	}
	os.Remove(filepath.Join(mapDir, trafficMapName))
	if e.traffic.socks != nil {
		e.traffic.socks.Close()
		e.traffic.socks = nil
	}
}

// reattachTraffic takes the pinned traffic links and map of an earlier run; when that run pinned none (its
// kernel refused the programs), traffic stays uncounted.
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
	if e.traffic.expected, err = ebpf.LoadPinnedMap(filepath.Join(e.pinDir, "maps", expectedMapName), nil); err != nil {
		return fmt.Errorf("load pinned map %s: %w", expectedMapName, err)
	}
	h, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, "maps", helperMapName), nil)
	if err != nil {
		return fmt.Errorf("load pinned map %s: %w", helperMapName, err)
	}
	defer h.Close()
	return nameHelper(h)
}

// nameHelper tells the traffic programs which process is this helper: packets it lets go are sent from its
// context, and only they may be matched with what ExpectTraffic said.
func nameHelper(m *ebpf.Map) error {
	if err := m.Put(uint32(0), uint32(os.Getpid())); err != nil {
		return fmt.Errorf("name the helper to the traffic programs: %w", err)
	}
	return nil
}

// ExpectTraffic tells the traffic programs whose connection src -> dst is before the helper lets its held
// packet go: that packet is sent from the helper's context, so the kernel could not tell whose it is, and
// the socket would go uncounted. The socket's next packet takes the entry.
func (e *Enforcer) ExpectTraffic(proto Protocol, src, dst netip.AddrPort, app identity.Executable, uid uint32) error {
	if e.traffic.expected == nil {
		return nil
	}
	k := bpf.TrafficExpectedKey{Src: src.Addr().As16(), Dst: dst.Addr().As16(), Sport: src.Port(), Dport: dst.Port(), Proto: uint8(proto)}
	v := bpf.TrafficExpectedFlow{Ino: app.Ino, Dev: app.KernelDev(), Uid: uid}
	if err := e.traffic.expected.Put(k, v); err != nil {
		return fmt.Errorf("expect traffic of %v -> %v: %w", src, dst, err)
	}
	return nil
}

// FlowTraffic returns the bytes and packets of every flow that has any: the live sockets' records plus what
// closed ones left. Records of sockets closed and quiet for a while are folded into the totals and removed
// from the kernel, so only one reader (the helper) should call it.
func (e *Enforcer) FlowTraffic() (map[FlowID]Traffic, error) {
	if e.traffic.socks == nil {
		return nil, nil
	}
	now := monotonicNow()
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
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
		done   []uint64
	)
	it := e.traffic.socks.Iterate()
	for it.Next(&cookie, &v) {
		id := FlowID{App: identity.FromKernel(v.Dev, v.Ino), UID: v.Uid,
			Dest: netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), v.Port), Proto: Protocol(v.Proto)}
		t := Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets}
		sum := out[id]
		sum.add(t)
		out[id] = sum
		if v.Closed != 0 && now > v.LastNs && time.Duration(now-v.LastNs) > closedQuiet {
			done = append(done, cookie)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read traffic counters: %w", err)
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
		id := FlowID{App: identity.FromKernel(v.Dev, v.Ino), UID: v.Uid,
			Dest: netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), v.Port), Proto: Protocol(v.Proto)}
		f := e.traffic.folded[id]
		f.add(Traffic{TxBytes: v.TxBytes, TxPackets: v.TxPackets, RxBytes: v.RxBytes, RxPackets: v.RxPackets})
		e.traffic.folded[id] = f
	}
	return out, nil
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of the records' time stamps.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
