package service

import (
	"net/netip"
	"testing"

	"github.com/tattlefw/tattle/helper/enforce"
)

// A flow is sent again when it makes new attempts or moves bytes (a download after its one connect), and
// not when nothing changed.
func TestChangedFlowsFollowTraffic(t *testing.T) {
	m := newMonitor()
	f := enforce.Flow{UID: 1000, Dest: netip.MustParseAddrPort("192.0.2.1:443"), Proto: enforce.TCP, Attempts: 1}
	if got := m.changedFlows([]enforce.Flow{f}); len(got) != 1 {
		t.Fatalf("a new flow: %d changed, want 1", len(got))
	}
	if got := m.changedFlows([]enforce.Flow{f}); len(got) != 0 {
		t.Fatalf("an unchanged flow: %d changed, want 0", len(got))
	}
	f.RxBytes = 1 << 20
	if got := m.changedFlows([]enforce.Flow{f}); len(got) != 1 || got[0].RxBytes != 1<<20 {
		t.Fatalf("a flow that received 1 MiB without a new attempt: %+v, want it sent", got)
	}
	f.TxBytes = 10
	if got := m.changedFlows([]enforce.Flow{f}); len(got) != 1 {
		t.Fatalf("a flow that sent bytes: %d changed, want 1", len(got))
	}
}
