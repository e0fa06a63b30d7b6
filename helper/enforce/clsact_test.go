package enforce

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tattlefw/tattle/bpf"
)

func TestOwnFiltersKeepToTheInstancesOwn(t *testing.T) {
	mine := clsactHandle("/sys/fs/bpf/tattle")
	other := clsactHandle("/sys/fs/bpf/tattle-test")
	if mine == other {
		t.Fatalf("two pin directories share the handle %#x", mine)
	}
	if mine != clsactHandle("/sys/fs/bpf/tattle/") {
		t.Error("the same pin directory spelt with a trailing slash gives another handle")
	}
	eg := bpf.TrafficProgTattleTrafficEgress
	filters := []clsactFilter{
		{Kind: "bpf", Handle: mine, Priority: clsactPrio, Name: eg},                // ours
		{Kind: "bpf", Handle: other, Priority: clsactPrio, Name: eg},               // another tattled's
		{Kind: "bpf", Handle: mine, Priority: 1, Name: eg},                         // same handle, someone's priority
		{Kind: "bpf", Handle: mine, Priority: clsactPrio, Name: "cil_from_netdev"}, // someone's program
		{Kind: "u32", Handle: mine, Priority: clsactPrio},                          // not bpf
		{Kind: "bpf", Handle: 1, Priority: 49152, Name: "classifier"},              // tc's defaults
	}
	own := ownFilters(filters, mine)
	if len(own) != 1 || own[0] != filters[0] {
		t.Errorf("own filters %+v, want only %+v", own, filters[0])
	}
	if got := ownFilters(filters, other); len(got) != 1 || got[0] != filters[1] {
		t.Errorf("the other instance's own filters %+v, want only %+v", got, filters[1])
	}
	if got := ownFilters(filters[2:], mine); len(got) != 0 {
		t.Errorf("filters of others taken as own: %+v", got)
	}
}

// The status must say traffic is not counted, and why, rather than let 0 B pass for nothing moved.
func TestTrafficCountingSaysWhyNot(t *testing.T) {
	refused := errors.New("the kernel refused the traffic programs: invalid argument")
	noQdisc := errors.New("eth0: add clsact qdisc: operation not supported")
	for _, c := range []struct {
		socks bool
		tc    *tcCounters
		off   error
		want  string
	}{
		{false, nil, nil, "off: the backend keeps no socket records"},
		{true, nil, refused, "off: " + refused.Error()},
		{true, &tcCounters{clsact: true, links: map[int]tcLinks{}, lastErr: noQdisc}, nil, "off: " + noQdisc.Error()},
		{true, &tcCounters{clsact: true, links: map[int]tcLinks{2: {name: "eth0"}}, lastErr: noQdisc}, nil, "tc clsact"},
		{true, &tcCounters{links: map[int]tcLinks{2: {name: "eth0"}}}, nil, "tcx"},
		{true, &tcCounters{links: map[int]tcLinks{}}, nil, "tcx, no interface but loopback"},
	} {
		e := &Enforcer{}
		if c.socks {
			e.traffic.socks = &ebpf.Map{}
		}
		e.traffic.tc, e.traffic.off = c.tc, c.off
		if got := e.TrafficCounting(); got != c.want {
			t.Errorf("TrafficCounting() = %q, want %q", got, c.want)
		}
	}
}
