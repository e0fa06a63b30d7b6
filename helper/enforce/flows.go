package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// Flow is the kernel's account of one application's attempts to one destination.
type Flow struct {
	App       identity.Executable
	UID       uint32
	Dest      netip.AddrPort
	Proto     Protocol
	Attempts  uint64
	Allowed   uint64
	Denied    uint64
	Undecided uint64
	FirstSeen time.Time
	LastSeen  time.Time
	LastTGID  uint32
	Verdict   Verdict // the verdict last applied
	RuleID    uint32
	Traffic   // payload bytes and packets of the flow's sockets, sent and received
}

// Flows reads the per-flow counters. The table holds the most recently active flows (LRU); the helper reads
// it periodically instead of receiving an event per packet.
func (e *Enforcer) Flows() ([]Flow, error) {
	clock := newKernelClock(unix.CLOCK_MONOTONIC)
	var (
		k   bpf.CgroupFlowKey
		v   bpf.CgroupFlow
		out []Flow
	)
	it := e.maps.Flows.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Flow{
			App:       identity.FromKernel(k.Dev, k.Ino),
			UID:       k.Uid,
			Dest:      netip.AddrPortFrom(netip.AddrFrom16(k.Addr).Unmap(), k.Port),
			Proto:     Protocol(k.Proto),
			Attempts:  v.Attempts,
			Allowed:   v.Allowed,
			Denied:    v.Denied,
			Undecided: v.Undecided,
			FirstSeen: clock.wall(v.FirstSeenNs),
			LastSeen:  clock.wall(v.LastSeenNs),
			LastTGID:  v.LastTgid,
			Verdict:   Verdict(v.Verdict),
			RuleID:    v.RuleId,
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read flow counters: %w", err)
	}
	traffic, err := e.FlowTraffic()
	if err != nil {
		return nil, err
	}
	// Only flows the decision core knows: a record of a socket nobody connected (a UDP server's answers) has
	// no flow to belong to.
	for i := range out {
		f := &out[i]
		f.Traffic = traffic[FlowID{App: f.App, UID: f.UID, Dest: f.Dest, Proto: f.Proto}]
	}
	return out, nil
}

// Stats are the kernel side's own counters.
type Stats struct {
	EventsLost uint64 // events the ring buffer had no room for
	FlowsFull  uint64 // attempts whose flow could not be recorded
	MarkFailed uint64 // undecided sockets that could not be marked
	NoIdentity uint64 // attempts without a user executable (kernel threads), allowed
	ExecLost   uint64 // interpreters' execs the helper was not told about (their processes stay unidentified)
}

// Stats sums the per-CPU counters.
func (e *Enforcer) Stats() (Stats, error) {
	read := func(i uint32) (uint64, error) {
		var per []uint64
		if err := e.maps.Stats.Lookup(i, &per); err != nil {
			return 0, fmt.Errorf("read kernel stats: %w", err)
		}
		var sum uint64
		for _, n := range per {
			sum += n
		}
		return sum, nil
	}
	var s Stats
	var err error
	for i, dst := range []*uint64{&s.EventsLost, &s.FlowsFull, &s.MarkFailed, &s.NoIdentity, &s.ExecLost} {
		if *dst, err = read(uint32(i)); err != nil {
			return Stats{}, err
		}
	}
	return s, nil
}

// LearnFlow caches a verdict the helper decided for one flow, so the flow's next attempts are decided in the
// kernel. It lives in the bounded flow table, not in the rule maps, and is valid only for the current rules
// generation: any rule change drops it, and the helper decides again under the new rules.
func (e *Enforcer) LearnFlow(app identity.Executable, uid uint32, dest netip.AddrPort, proto Protocol, v Verdict, ruleID uint32) error {
	if v != Allow && v != Deny {
		return fmt.Errorf("learned verdict must be allow or deny, not %v", v)
	}
	if proto != TCP && proto != UDP {
		return fmt.Errorf("learned flows are tcp or udp, not %v", proto)
	}
	if app.IsUnidentified() {
		// Every unidentified script shares this identity in the flow table: a verdict for one is for none.
		return fmt.Errorf("no verdict is learned for an unidentified script")
	}
	k := bpf.CgroupFlowKey{Ino: app.Ino, Dev: app.KernelDev(), Uid: uid, Addr: dest.Addr().As16(), Port: dest.Port(), Proto: uint8(proto)}
	e.mu.Lock()
	defer e.mu.Unlock()
	var cfg bpf.CgroupConfig
	if err := e.maps.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read kernel config: %w", err)
	}
	var f bpf.CgroupFlow
	if err := e.maps.Flows.Lookup(&k, &f); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read flow: %w", err)
	}
	f.Verdict, f.RuleId, f.Generation = uint8(v), ruleID, cfg.Generation
	// Counters the kernel adds meanwhile may be lost in this read-modify-write; the verdict is what counts.
	if err := e.maps.Flows.Put(&k, &f); err != nil {
		return fmt.Errorf("cache a learned verdict: %w", err)
	}
	return nil
}
