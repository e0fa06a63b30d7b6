package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/api"
)

// Bounds of the monitor's signals.
const (
	batchInterval  = time.Second // at most one FlowsChanged per subscriber per interval
	maxSubscribers = 64
	maxPerUID      = 8    // so one user cannot take every slot
	maxBatch       = 1000 // flows per signal; more are split over several signals
)

type subscriber struct {
	name string // unique bus name
	uid  uint32
	all  bool // may see every user's flows
}

// monitor sends each subscriber, as unicast signals, the flows that changed: its own processes' flows
// only, unless it was authorized for monitor-all when it subscribed.
type monitor struct {
	mu   sync.Mutex
	subs map[string]subscriber
	last map[flowID]flowCounts // attempts and bytes per flow at the last batch
}

type flowID struct {
	dev, ino uint64
	uid      uint32
	dest     string
	proto    enforce.Protocol
}

func newMonitor() *monitor {
	return &monitor{subs: map[string]subscriber{}, last: map[flowID]flowCounts{}}
}

func (m *monitor) subscribe(s subscriber) *dbus.Error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subs[s.name]; !ok {
		mine := 0
		for _, o := range m.subs {
			if o.uid == s.uid {
				mine++
			}
		}
		if len(m.subs) >= maxSubscribers || mine >= maxPerUID {
			return dbus.NewError(api.ErrFailed, []any{fmt.Sprintf("too many monitors are subscribed (%d of yours, %d in all); poll Flows instead", mine, len(m.subs))})
		}
	}
	m.subs[s.name] = s
	return nil
}

func (m *monitor) unsubscribe(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, name)
}

func (m *monitor) subscribers() []subscriber {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]subscriber, 0, len(m.subs))
	for _, s := range m.subs {
		out = append(out, s)
	}
	return out
}

// flowCounts is what makes a flow worth sending again: more attempts, or bytes moved (a download in
// progress makes no new attempts).
type flowCounts struct{ attempts, tx, rx uint64 }

// changedFlows returns the flows whose attempts or traffic changed since the last call.
func (m *monitor) changedFlows(flows []enforce.Flow) []enforce.Flow {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[flowID]flowCounts, len(flows))
	var changed []enforce.Flow
	for _, f := range flows {
		id := flowID{f.App.Dev, f.App.Ino, f.UID, f.Dest.String(), f.Proto}
		now := flowCounts{f.Attempts, f.TxBytes, f.RxBytes}
		next[id] = now
		if prev, ok := m.last[id]; !ok || prev != now {
			changed = append(changed, f)
		}
	}
	m.last = next
	return changed
}

// runMonitor sends batches until ctx ends, and forgets subscribers that leave the bus.
func (s *Service) runMonitor(ctx context.Context) {
	gone := make(chan *dbus.Signal, 16)
	s.conn.Signal(gone)
	defer s.conn.RemoveSignal(gone)
	if err := s.conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged")); err != nil {
		s.log.Warn("cannot notice monitors leaving the bus", "error", err)
	}
	tick := time.NewTicker(batchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-gone:
			// NameOwnerChanged(name, old, new) with new == "": name left the bus.
			if len(sig.Body) == 3 {
				if name, _ := sig.Body[0].(string); name != "" {
					if newOwner, _ := sig.Body[2].(string); newOwner == "" {
						s.monitor.unsubscribe(name)
						if gone := s.agents.remove(name, ""); len(gone) > 0 {
							s.agentsLeft(gone)
						}
					}
				}
			}
		case <-tick.C:
			s.sendBatches()
		}
	}
}

func (s *Service) sendBatches() {
	subs := s.monitor.subscribers()
	if len(subs) == 0 {
		return
	}
	flows, err := s.enf.Flows()
	if err != nil {
		s.log.Warn("read flows for monitors", "error", err)
		return
	}
	changed := s.monitor.changedFlows(flows)
	if len(changed) == 0 {
		return
	}
	wire := make([]api.Flow, len(changed))
	for i, f := range changed {
		wire[i] = s.wireFlow(f)
	}
	for _, sub := range subs {
		var mine []api.Flow
		for _, f := range wire {
			if sub.all || f.UID == sub.uid {
				mine = append(mine, f)
			}
		}
		for len(mine) > 0 {
			n := min(len(mine), maxBatch)
			s.sendFlows(sub.name, mine[:n])
			mine = mine[n:]
		}
	}
}

// sendFlows sends FlowsChanged to one subscriber only (a unicast signal: others never see these flows).
func (s *Service) sendFlows(dest string, flows []api.Flow) {
	msg := &dbus.Message{
		Type: dbus.TypeSignal,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:        dbus.MakeVariant(api.ObjectPath),
			dbus.FieldInterface:   dbus.MakeVariant(api.MonitorInterface),
			dbus.FieldMember:      dbus.MakeVariant("FlowsChanged"),
			dbus.FieldDestination: dbus.MakeVariant(dest),
			dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(flows)),
		},
		Body: []any{flows},
	}
	s.conn.Send(msg, nil)
}
