package enforcement

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// Issue 16: bytes are counted where the kernel has no tcx (Debian 12's 6.1), through clsact filters. A
// transfer each way to a host in a network namespace (a veth made after the helper's counters, so the link
// watcher attaches them) is counted within 1%; a restart (a second Open on the same pins) neither counts
// twice nor leaves a second filter; Uninstall leaves no filter and no qdisc it made. Where the kernel has tcx
// the same runs once as chosen (tcx) and once forced to clsact. The guests report TATTLE-TRAFFIC lines.
func TestTrafficCountedWithoutTCX(t *testing.T) {
	size := int64(20 << 20)
	if v := os.Getenv("TATTLE_TRAFFIC_BYTES"); v != "" {
		size, _ = strconv.ParseInt(v, 10, 64)
	}
	auto := trafficRun(t, "auto", enforce.TrafficAuto, size)
	// The guests' kernel command line holds no spaces: "clsact" or "tcx".
	if want := os.Getenv("TATTLE_EXPECT_TRAFFIC"); want != "" && strings.TrimPrefix(auto, "tc ") != want {
		t.Errorf("traffic counted by %q, want %q", auto, want)
	}
	if auto != "tc clsact" {
		trafficRun(t, "clsact", enforce.TrafficClsact, size)
	}
}

func openTrafficEnforcer(t *testing.T, pin string, how enforce.TrafficAttach) *enforce.Enforcer {
	t.Helper()
	enf, err := enforce.Open(enforce.Options{Backend: backend(t), PinDir: pin, Logger: quietLogger(), TrafficAttach: how})
	if err != nil {
		t.Fatalf("attach programs: %v", err)
	}
	return enf
}

// counterFilters lists the counters' filters (by name, as tc filter show prints them) on a hook of ifname.
func counterFilters(t *testing.T, ifname string, parent uint32) []string {
	t.Helper()
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := netlink.FilterList(l, parent)
	if err != nil && !strings.Contains(err.Error(), "invalid argument") {
		t.Fatalf("list filters of %s: %v", ifname, err)
	}
	var out []string
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(b.Name, "tattle_traffic") {
			out = append(out, fmt.Sprintf("%s handle %#x prio %d", b.Name, b.Handle, b.Priority))
		}
	}
	return out
}

func hasClsact(t *testing.T, ifname string) bool {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true
		}
	}
	return false
}

func trafficRun(t *testing.T, name string, how enforce.TrafficAttach, size int64) (counting string) {
	t.Run(name, func(t *testing.T) {
		pin := testrig.PinDir("traffic-" + name)
		enforce.Uninstall(pin)
		t.Cleanup(func() { enforce.Uninstall(pin) })
		enf := openTrafficEnforcer(t, pin, how)
		closed := false
		t.Cleanup(func() {
			if !closed {
				enf.Close()
			}
		})
		ns := testrig.NewNetnsNetlink(t, "t16e", 18)
		deadline := time.Now().Add(10 * time.Second)
		for !enf.CountsTraffic() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		counting = enf.TrafficCounting()
		t.Logf("traffic counted by: %s", counting)
		if !enf.CountsTraffic() {
			t.Fatalf("the counters were not attached to %s: %s", ns.HostIf, counting)
		}
		clsact := counting == "tc clsact"
		if (how == enforce.TrafficClsact) != clsact && how != enforce.TrafficAuto {
			t.Fatalf("asked for %q, counting by %q", how, counting)
		}
		// The enforcer counts once it is attached somewhere; it attaches to an interface that appears (the
		// namespace's veth) a moment later, so the filters are looked for until they are there (or 10 s).
		check := func(when string, want int) {
			t.Helper()
			if !clsact {
				return
			}
			for _, hook := range []struct {
				name   string
				parent uint32
			}{{"egress", netlink.HANDLE_MIN_EGRESS}, {"ingress", netlink.HANDLE_MIN_INGRESS}} {
				deadline := time.Now().Add(10 * time.Second)
				fs := counterFilters(t, ns.HostIf, hook.parent)
				for len(fs) != want && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
					fs = counterFilters(t, ns.HostIf, hook.parent)
				}
				if len(fs) != want {
					t.Errorf("%s: %d counter filters on %s %s, want %d: %v", when, len(fs), ns.HostIf, hook.name, want, fs)
				}
			}
		}
		check("attached", 1)

		app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "app-traffic")
		dest := netip.AddrPortFrom(ns.NsV4, 15218)
		ln := ns.Listen(t, "tcp", dest.String())
		testrig.ServeDownloads(ln, 1)
		flow := enforce.FlowID{App: ident(t, app), UID: 0, Dest: dest, Proto: enforce.TCP}
		var moved enforce.Traffic
		// The counters see segments on the wire: what TCP sent again (a loaded machine's veth drops from its
		// backlog) is counted again, so the sent count may exceed what moved by that much.
		var resent uint64
		transfer := func(n int64) {
			t.Helper()
			before := retransmittedSegments(t)
			defer func() { resent += (retransmittedSegments(t) - before) * mss }()
			r := testrig.RunApp(t, app, testrig.RunOpts{Timeout: 5 * time.Minute}, "-send", strconv.FormatInt(n, 10), "tcp", dest.String())
			if !r.OK || r.Sent != n || r.Received != n {
				t.Fatalf("transfer of %d bytes each way: ok=%v sent %d received %d (%s)", n, r.OK, r.Sent, r.Received, r.Error)
			}
			moved.TxBytes += uint64(r.Sent)
			moved.RxBytes += uint64(r.Received)
		}
		counted := func(e *enforce.Enforcer) enforce.Traffic {
			t.Helper()
			var got enforce.Traffic
			deadline := time.Now().Add(10 * time.Second)
			for {
				flows, err := e.FlowTraffic()
				if err != nil {
					t.Fatal(err)
				}
				got = flows[flow]
				if withinSent(got.TxBytes, moved.TxBytes, resent) && within(got.RxBytes, moved.RxBytes) || time.Now().After(deadline) {
					return got
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		report := func(when string, got enforce.Traffic) {
			t.Helper()
			line := fmt.Sprintf("%s %s, %s: sent %d counted %d (%+.3f%%; TCP resent about %d), received %d counted %d (%+.3f%%)", name, counting, when,
				moved.TxBytes, got.TxBytes, pct(got.TxBytes, moved.TxBytes), resent, moved.RxBytes, got.RxBytes, pct(got.RxBytes, moved.RxBytes))
			fmt.Println("TATTLE-TRAFFIC " + line)
			t.Log(line)
			if !withinSent(got.TxBytes, moved.TxBytes, resent) || !within(got.RxBytes, moved.RxBytes) {
				t.Errorf("%s: counted more than 1%% away from what moved (sent: beyond what TCP resent)", when)
			}
		}

		transfer(size)
		report("one transfer", counted(enf))

		// A restart: the second handle finds the pins (and, for clsact, its filters in the kernel).
		enf.Close()
		closed = true
		enf = openTrafficEnforcer(t, pin, how)
		closed = false
		if !enf.Reused() {
			t.Errorf("the restarted enforcer did not reuse the pinned programs")
		}
		deadline = time.Now().Add(10 * time.Second)
		for !enf.CountsTraffic() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		check("after a restart", 1)
		first := moved
		transfer(size / 4)
		// The first socket's record is still in the pinned map unless the first handle folded it (quiet for
		// 5 s): then only the second transfer is left to count. Counted twice, it is 20% or 100% off.
		got := counted(enf)
		if !within(got.TxBytes, moved.TxBytes) && got.TxBytes < first.TxBytes {
			moved = enforce.Traffic{TxBytes: moved.TxBytes - first.TxBytes, RxBytes: moved.RxBytes - first.RxBytes}
			got = counted(enf)
		}
		report("both transfers, the second after a restart", got)

		// Closed sockets' records leave the kernel's map once their counts stop moving (the helper tells that
		// from the counts: the programs keep no per-packet time), and what they counted stays in the totals.
		records := func() int {
			t.Helper()
			fill, err := enf.MapFill()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fill {
				if f.Name == "traffic_socks" {
					return f.Entries
				}
			}
			t.Fatal("no traffic_socks in the map fill")
			return 0
		}
		deadline = time.Now().Add(15 * time.Second)
		for records() > 0 && time.Now().Before(deadline) {
			if _, err := enf.FlowTraffic(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if n := records(); n > 0 {
			t.Errorf("%d socket records still in the kernel 15 s after their sockets closed", n)
		}
		report("after the closed sockets' records were folded", counted(enf))

		enf.Close()
		closed = true
		if err := enforce.Uninstall(pin); err != nil {
			t.Fatalf("uninstall: %v", err)
		}
		check("after uninstall", 0)
		if clsact && hasClsact(t, ns.HostIf) {
			t.Errorf("uninstall left the clsact qdisc it made on %s", ns.HostIf)
		}
	})
	return counting
}

func within(got, want uint64) bool { return math.Abs(float64(got)-float64(want)) <= 0.01*float64(want) }

// withinSent is within for a sent count, which may also hold the resent bytes.
func withinSent(got, want, resent uint64) bool {
	return within(got, want) || got > want && float64(got-want) <= float64(resent)+0.01*float64(want)
}

// mss is a TCP segment's payload on the test's veth (MTU 1500, timestamps on).
const mss = 1448

// retransmittedSegments is the host's count of TCP segments sent again (RetransSegs of /proc/net/snmp): the
// test's client is the host's TCP sender while it runs.
func retransmittedSegments(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == "RetransSegs" && i < len(fields) {
				v, err := strconv.ParseUint(fields[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp RetransSegs %q: %v", fields[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Tcp RetransSegs in /proc/net/snmp")
	return 0
}

func pct(got, want uint64) float64 { return 100 * (float64(got) - float64(want)) / float64(want) }
