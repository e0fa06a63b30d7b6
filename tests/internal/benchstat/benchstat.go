// Package benchstat holds what the benchmarks share: their knobs from the environment, the statistics of
// alternating rounds (a median and how far it can be trusted), and the kernel they ran on, for the report.
package benchstat

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
)

// Int is the positive integer in the environment variable name, or def.
func Int(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Float is the positive number in the environment variable name, or def.
func Float(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

// Backend is the enforcement backend TATTLE_BACKEND names, auto when it names none.
func Backend() enforce.Backend {
	backend, err := enforce.ParseBackend(os.Getenv("TATTLE_BACKEND"))
	if err != nil {
		return enforce.BackendAuto
	}
	return backend
}

// Order is round r's two sides, with Tattle (true) and without, in the order they run: it alternates so that
// drift affects both alike.
func Order(r int) []bool {
	if r%2 == 1 {
		return []bool{false, true}
	}
	return []bool{true, false}
}

// OpenAllowing attaches Tattle's programs, pinned at pin, with a default rule that allows app for every
// user: what the side with Tattle measures.
func OpenAllowing(t testing.TB, backend enforce.Backend, pin string, log *slog.Logger, app identity.Executable) *enforce.Enforcer {
	t.Helper()
	enf, err := enforce.Open(enforce.Options{Backend: backend, PinDir: pin, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := enf.SetDefault(enforce.Scope{App: app, UID: identity.AnyUID}, enforce.Allow, 1); err != nil {
		t.Fatal(err)
	}
	return enf
}

// ProgramStat is one program's run count and run time as the kernel counts them (while statistics are
// enabled, ebpf.EnableStats).
type ProgramStat struct {
	Name string
	ebpf.ProgramStats
}

// ProgramStats reads the kernel's statistics of each program in ids, in their order: what the benchmarks
// take the programs' own cost from.
func ProgramStats(t testing.TB, ids []enforce.NamedProgram) []ProgramStat {
	t.Helper()
	out := make([]ProgramStat, 0, len(ids))
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id.ID)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Stats()
		p.Close()
		if err != nil {
			t.Fatalf("program %s statistics: %v", id.Name, err)
		}
		out = append(out, ProgramStat{Name: id.Name, ProgramStats: *st})
	}
	return out
}

// WriteRounds lists each round's rates without and with Tattle and their ratio, for the report.
func WriteRounds(w io.Writer, off, on, ratios []float64) {
	for i := range on {
		fmt.Fprintf(w, "  round %d: without %8.0f/s  with %8.0f/s  ratio %.3f\n", i+1, off[i], on[i], ratios[i])
	}
}

// Median of xs (the mean of the middle two for an even count); NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Spread describes a benchmark's rounds: their median, extremes and quartiles, and Noise, the median's own
// standard error estimated from the quartiles (a normal's IQR is 1.349 sd, its median's error 1.253 sd/sqrt(n)),
// robust to the single wild rounds a shared machine gives.
type Spread struct {
	Median, Min, Q1, Q3, Max, Noise float64
}

// SpreadOf the rounds xs; the zero Spread (NaN median) for none.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{Median: math.NaN()}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	q1, q3 := s[len(s)/4], s[(3*len(s))/4]
	return Spread{
		Median: Median(s), Min: s[0], Q1: q1, Q3: q3, Max: s[len(s)-1],
		Noise: 1.253 * (q3 - q1) / 1.349 / math.Sqrt(float64(len(s))),
	}
}

// KernelRelease is `uname -r`, for the report.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
