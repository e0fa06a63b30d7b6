// Package bench measures what Tattle costs an allowed application: the loopback TCP connect+close rate with
// Tattle's programs attached versus not attached, in alternating rounds of one run, and the programs' average
// run time per call from the kernel's BPF statistics. It runs on the host (cgroup backend) and in the VM ring
// (lsm backend). Results are printed and written to $TATTLE_RESULTS_DIR (default tests/output).
//
// It lives in its own package so that no other test's programs are attached while it measures.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/dnscapture"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/benchstat"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

func TestConnectRateWithTattleVersusWithout(t *testing.T) {
	rounds := benchstat.Int("TATTLE_BENCH_ROUNDS", 15)
	count := benchstat.Int("TATTLE_BENCH_CONNECTS", 12000)
	// A regression bound on a noisy measure, not the goal (0.95). CI's machines move a whole run: 9 rounds of
	// one measured a median of 0.795 (quartiles 0.758..0.839) where others measured 0.94..0.97 with the same
	// programs, whose own time stayed at 2.5% of a connect (the share bound below is the precise guard). So the
	// test fails when the median is below the bound by more than twice its own noise (~0.02 over 15 rounds
	// here): from a ratio of 0.95, a regression that costs a connect a quarter more (an event or a map update
	// per connect) still fails.
	minRatio := benchstat.Float("TATTLE_BENCH_MIN_RATIO", 0.80)
	maxShare := benchstat.Float("TATTLE_BENCH_MAX_COST_SHARE", 0.05)
	warmup := count / 5
	backend := benchstat.Backend()

	dir := testrig.AppDir(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, dir, "bench-app")
	appID, err := identity.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	pin := testrig.FreshPinDir(t, "bench")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	cgroupRoot, err := enforce.CgroupV2Root("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}

	// Warm up: page cache, listener backlog, CPU frequency.
	testrig.RunApp(t, app, testrig.RunOpts{}, "bench", strconv.Itoa(count/4))

	// The rates are measured with BPF statistics off (they add two clock reads to every program run); one
	// extra round with them on measures the programs' own cost per call.
	var on, off, ratios []float64
	type progTotal struct{ runs, ns uint64 }
	progs := map[string]*progTotal{}
	var attached enforce.Backend
	for r := 0; r <= rounds; r++ {
		statsRound := r == rounds
		var stats io.Closer
		if statsRound {
			var err error
			// The kernel counts run time per program only while statistics are enabled.
			if stats, err = ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
				t.Fatalf("enable BPF statistics: %v", err)
			}
		}
		// Alternate which side goes first, so drift affects both alike.
		var rateOn, rateOff float64
		for _, withTattle := range benchstat.Order(r) {
			if !withTattle {
				testrig.RunApp(t, app, testrig.RunOpts{}, "bench", strconv.Itoa(warmup))
				res := testrig.RunApp(t, app, testrig.RunOpts{}, "bench", strconv.Itoa(count))
				if !res.OK {
					t.Fatalf("bench without Tattle failed: %s", res.Error)
				}
				rateOff = res.Rate
				continue
			}
			enf := benchstat.OpenAllowing(t, backend, pin, log, appID)
			attached = enf.Backend()
			// The DNS capture (a cgroup_skb program, run for every packet received) is attached by the helper
			// but measured only in the statistics round: its own run time per connect+close is reported apart.
			var capture *dnscapture.Capture
			if statsRound {
				if capture, err = dnscapture.Open(context.Background(), cgroupRoot); err != nil {
					t.Fatal(err)
				}
			}
			// Warm up after attaching: under qemu TCG freshly JIT-compiled programs are translated on first use.
			testrig.RunApp(t, app, testrig.RunOpts{}, "bench", strconv.Itoa(warmup))
			before := programStats(t, enf, capture)
			res := testrig.RunApp(t, app, testrig.RunOpts{}, "bench", strconv.Itoa(count))
			after := programStats(t, enf, capture)
			if capture != nil {
				capture.Close()
			}
			enf.Close()
			if err := enforce.Uninstall(pin); err != nil {
				t.Fatal(err)
			}
			if !res.OK {
				t.Fatalf("bench with Tattle failed: %s", res.Error)
			}
			rateOn = res.Rate
			for name, a := range after {
				b := before[name]
				if progs[name] == nil {
					progs[name] = &progTotal{}
				}
				progs[name].runs += a.RunCount - b.RunCount
				progs[name].ns += uint64(a.Runtime - b.Runtime)
			}
		}
		if statsRound {
			stats.Close()
			continue
		}
		on = append(on, rateOn)
		off = append(off, rateOff)
		ratios = append(ratios, rateOn/rateOff)
	}

	var b strings.Builder
	kernel := benchstat.KernelRelease()
	fmt.Fprintf(&b, "Tattle connect-rate benchmark (%s backend, kernel %s)\n", attached, kernel)
	fmt.Fprintf(&b, "loopback TCP connect+close of an allowed application, %d per run, %d alternating rounds\n", count, rounds)
	benchstat.WriteRounds(&b, off, on, ratios)
	sp := benchstat.SpreadOf(ratios)
	ratio := sp.Median
	fmt.Fprintf(&b, "median rate without Tattle %.0f/s, with Tattle %.0f/s\n", benchstat.Median(off), benchstat.Median(on))
	fmt.Fprintf(&b, "RATIO with/without (median of rounds): %.3f ± %.3f (quartiles %.3f..%.3f; goal >= 0.95)\n", ratio, sp.Noise, sp.Q1, sp.Q3)
	names := make([]string, 0, len(progs))
	for n := range progs {
		names = append(names, n)
	}
	sort.Strings(names)
	perConnect := 0.0 // ns of the connect path's programs per connect
	trafficPer := 0.0 // ns of the traffic counters per connect+close
	dnsPer := 0.0     // ns of the DNS capture (run per received packet) per connect+close
	for _, n := range names {
		p := progs[n]
		avg := 0.0
		if p.runs > 0 {
			avg = float64(p.ns) / float64(p.runs)
		}
		switch {
		case strings.HasPrefix(n, "tattle_traffic_"):
			trafficPer += float64(p.ns) / float64(count)
		case n == dnsProgram:
			dnsPer += float64(p.ns) / float64(count)
		default:
			perConnect += float64(p.ns) / float64(count)
		}
		fmt.Fprintf(&b, "  program %-24s %9d calls  %7.0f ns per call (BPF stats round)\n", n, p.runs, avg)
	}
	// The programs' own time as a share of one connect+close without Tattle: a figure that, unlike the rate
	// ratio, does not move with the machine's noise.
	share := perConnect * benchstat.Median(off) / 1e9
	fmt.Fprintf(&b, "connect path programs' time per connect: %.0f ns = %.2f%% of an unfiltered connect+close\n", perConnect, 100*share)
	trafficShare := trafficPer * benchstat.Median(off) / 1e9
	fmt.Fprintf(&b, "traffic counters' time per connect+close (tcx on interfaces but loopback: none expected here): %.0f ns = %.2f%%; all programs %.2f%%\n",
		trafficPer, 100*trafficShare, 100*(share+trafficShare))
	dnsShare := dnsPer * benchstat.Median(off) / 1e9
	fmt.Fprintf(&b, "DNS capture (cgroup_skb/ingress, statistics round only, not in the rates above): %.0f ns = %.2f%% per connect+close, "+
		"its own run time only (the cgroup-BPF framework it makes every received packet run is not in it)\n", dnsPer, 100*dnsShare)
	report := b.String()
	fmt.Print(report)
	writeResult(t, fmt.Sprintf("bench-connect-%s-%s.txt", attached, kernel), report)

	if share > maxShare {
		t.Errorf("Tattle's connect path programs take %.2f%% of a connect+close; the bound is %.0f%%", 100*share, 100*maxShare)
	}
	if trafficShare > maxShare {
		t.Errorf("the traffic counters take %.2f%% of a loopback connect+close they do not count; the bound is %.0f%%", 100*trafficShare, 100*maxShare)
	}
	if ratio+2*sp.Noise < minRatio {
		t.Errorf("connect rate with Tattle is %.3f ± %.3f of the rate without: below the regression bound %.2f by more than twice its noise", ratio, sp.Noise, minRatio)
	}
	if c := progs["tattle_connect4"]; attached == enforce.BackendCgroup && (c == nil || c.runs < uint64(count)) {
		t.Errorf("cgroup connect4 program ran %v times for %d connects per round", c, count)
	}
	if c := progs["tattle_lsm_connect"]; attached == enforce.BackendLSM && (c == nil || c.runs < uint64(count)) {
		t.Errorf("lsm connect program ran %v times for %d connects per round", c, count)
	}
}

// dnsProgram names the DNS capture's program in the statistics.
const dnsProgram = "tattle_dns_ingress"

func programStats(t *testing.T, enf *enforce.Enforcer, capture *dnscapture.Capture) map[string]ebpf.ProgramStats {
	t.Helper()
	ids, err := enf.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	if capture != nil {
		id, err := capture.ProgramID()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, enforce.NamedProgram{Name: dnsProgram, ID: id})
	}
	out := map[string]ebpf.ProgramStats{}
	for _, st := range benchstat.ProgramStats(t, ids) {
		out[st.Name] = st.ProgramStats
	}
	return out
}

func writeResult(t *testing.T, name, content string) {
	dir := testrig.ResultsDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("cannot keep the result: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Logf("cannot keep the result: %v", err)
	}
}
