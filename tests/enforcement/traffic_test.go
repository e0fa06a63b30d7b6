package enforcement

import (
	"fmt"
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
// watcher attaches them) is counted as the sockets say (TCP_INFO: sent exactly what the client's socket sent,
// received between what it read and what the server's socket sent); a restart (a second Open on the same pins) neither counts
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
		pin := testrig.FreshPinDir(t, "traffic-"+name)
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
		served := testrig.ServeDownloads(ln, 1)
		flow := enforce.FlowID{App: ident(t, app), UID: 0, Dest: dest, Proto: enforce.TCP}
		// The counters see segments at the interface, so what TCP sent again (reordering on the veth makes it
		// resend segments the peer had: DSACKed, spurious) is counted again. The reference is each socket's
		// own account (TCP_INFO): sent is counted exactly as the client's socket handed it down (bytes_sent,
		// resent included); received at least what the client read and at most what the server's socket sent.
		var want expected
		transfer := func(n int64) {
			t.Helper()
			r := testrig.RunApp(t, app, testrig.RunOpts{Timeout: 5 * time.Minute}, "-send", strconv.FormatInt(n, 10), "tcp", dest.String())
			if !r.OK || r.Sent != n || r.Received != n || r.TCP == nil {
				t.Fatalf("transfer of %d bytes each way: ok=%v sent %d received %d tcp_info %v (%s)", n, r.OK, r.Sent, r.Received, r.TCP, r.Error)
			}
			var srv testrig.TCPStats
			select {
			case srv = <-served:
			case <-time.After(15 * time.Second):
				t.Fatalf("the server reported no TCP_INFO for the transfer of %d bytes", n)
			}
			t.Logf("transfer of %d bytes each way: client socket sent %d (%d resent in %d segments), server socket sent %d (%d resent in %d segments)",
				n, r.TCP.BytesSent, r.TCP.BytesRetrans, r.TCP.TotalRetrans, srv.BytesSent, srv.BytesRetrans, srv.TotalRetrans)
			want.add(expected{written: uint64(r.Sent), sent: r.TCP.BytesSent, sentResent: r.TCP.BytesRetrans,
				read: uint64(r.Received), peerSent: srv.BytesSent})
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
				if want.holds(got) || time.Now().After(deadline) {
					return got
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		report := func(when string, got enforce.Traffic) {
			t.Helper()
			line := fmt.Sprintf("%s %s, %s: wrote %d, the socket sent %d (%d resent), counted %d (%+d); read %d, the server's socket sent %d, counted %d",
				name, counting, when, want.written, want.sent, want.sentResent, got.TxBytes, int64(got.TxBytes)-int64(want.sent),
				want.read, want.peerSent, got.RxBytes)
			fmt.Println("TATTLE-TRAFFIC " + line)
			t.Log(line)
			if !want.holds(got) {
				t.Errorf("%s: sent counted %d, the socket sent %d (want exactly that); received counted %d, want %d to %d (read, what the server's socket sent)",
					when, got.TxBytes, want.sent, got.RxBytes, want.read, want.peerSent)
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
		first := want
		transfer(size / 4)
		// The first socket's record is still in the pinned map unless the first handle folded it (quiet for
		// 5 s): then only the second transfer is left to count. Counted twice, it is 20% or 100% off.
		got := counted(enf)
		if !want.holds(got) && got.TxBytes < first.sent {
			want = want.less(first)
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

// expected is what the sockets of a flow's transfers say about them (TCP_INFO, summed).
type expected struct {
	written, sent, sentResent uint64 // the client wrote; its socket sent, resent included; of that, resent
	read, peerSent            uint64 // the client read; the server's socket sent, resent included
}

func (e *expected) add(o expected) {
	e.written += o.written
	e.sent += o.sent
	e.sentResent += o.sentResent
	e.read += o.read
	e.peerSent += o.peerSent
}

func (e expected) less(o expected) expected {
	return expected{e.written - o.written, e.sent - o.sent, e.sentResent - o.sentResent, e.read - o.read, e.peerSent - o.peerSent}
}

// holds: sent counted exactly as the socket sent it; received at least what was read (every byte of it
// passed the host's interface) and at most what the server's socket sent (a resent segment arrives again,
// one its veth dropped never arrives).
func (e expected) holds(got enforce.Traffic) bool {
	return got.TxBytes == e.sent && got.RxBytes >= e.read && got.RxBytes <= e.peerSent
}
