package enforce

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tattlefw/tattle/bpf"
)

// MapFill is how full one kernel map is: its entries and the most it holds.
type MapFill struct {
	Name    string
	Entries int
	Max     int
}

// MapFill counts the entries of the maps that fill with use: the rule maps (which refuse rules when full),
// the flow table and the socket tables (which are LRU: when full, the oldest entries go).
func (e *Enforcer) MapFill() ([]MapFill, error) {
	ms := []struct {
		name string
		m    *ebpf.Map
	}{
		{bpf.CgroupMapScopeRules, e.maps.ScopeRules}, {bpf.CgroupMapDestRules, e.maps.DestRules},
		{bpf.CgroupMapFlows, e.maps.Flows}, {bpf.CgroupMapDnsSocks, e.maps.DNSSocks}, {bpf.CgroupMapVias, e.maps.Vias},
		{trafficMapName, e.traffic.socks},
	}
	out := make([]MapFill, 0, len(ms))
	for _, x := range ms {
		if x.m == nil {
			continue
		}
		n, err := countEntries(x.m)
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", x.name, err)
		}
		out = append(out, MapFill{Name: x.name, Entries: n, Max: int(x.m.MaxEntries())})
	}
	return out, nil
}

// countEntries walks a map's keys without reading its values.
func countEntries(m *ebpf.Map) (int, error) {
	n := 0
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	var cur any // nil: the first key
	for {
		if err := m.NextKey(cur, &next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, nil
			}
			return n, err
		}
		n++
		copy(key, next)
		cur = key
		if n > int(m.MaxEntries())*2 {
			// An LRU map changing under the walk can restart it; stop rather than count forever.
			return int(m.MaxEntries()), nil
		}
	}
}
