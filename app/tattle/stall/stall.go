// Package stall measures how long the GTK main loop goes without running: a timer asks to run every
// Interval, and each gap longer than that is time the loop spent busy (merging flows, drawing). Enabled by
// the app when TATTLE_STALL_FILE names a file: once a second it appends one JSON line with the worst gap of
// that second, so tests and developers can see the loop's responsiveness under load.
package stall

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gotk3/gotk3/glib"
	"golang.org/x/sys/unix"
)

// Interval is how often the probe asks to run.
const Interval = 5 * time.Millisecond

// Sample is one line of the file.
type Sample struct {
	Time     int64   `json:"time"`       // Unix milliseconds at the end of the second
	MaxGapMS float64 `json:"max_gap_ms"` // longest time between two runs of the probe, minus Interval
	// GapCPUMS is the CPU time the main thread used during that longest gap: close to MaxGapMS when the app
	// itself was busy, far below it when the thread was waiting for a CPU (a loaded machine).
	GapCPUMS float64 `json:"gap_cpu_ms"`
	// GapWaitMS is the time the main thread was runnable but waited for a CPU during that gap (the scheduler's
	// run-queue delay): the machine's doing, not the app's.
	GapWaitMS float64 `json:"gap_wait_ms"`
	// MaxOwnMS is the longest stall of that second the app itself caused: of each gap, the time its thread was
	// not waiting for a CPU (it ran, or it blocked: a synchronous call, a lock).
	MaxOwnMS float64 `json:"max_own_ms"`
	Flows    int     `json:"flows"`  // flows in the monitor's model
	Queued   int     `json:"queued"` // flows received but not yet merged
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// threadCPU is the CPU time (user + system) of the calling thread: the GTK main thread, where the probe runs.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadWait is how long the calling thread has waited on a run queue in all (the second field of
// /proc/thread-self/schedstat), or 0 when the kernel does not say.
func threadWait() time.Duration {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ns)
}

// Start runs the probe on the default main context until the process exits, appending samples to path.
// stats reports the monitor's flows and queue at each sample.
func Start(path string, stats func() (flows, queued int)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the stall file: %w", err)
	}
	last, lastCPU, lastWait := time.Now(), threadCPU(), threadWait()
	windowStart := last
	var worst, worstCPU, worstWait, worstOwn time.Duration
	enc := json.NewEncoder(f)
	glib.TimeoutAddPriority(uint(Interval/time.Millisecond), glib.PRIORITY_DEFAULT, func() bool {
		now, cpu, wait := time.Now(), threadCPU(), threadWait()
		gap := now.Sub(last) - Interval
		if gap > worst {
			worst, worstCPU, worstWait = gap, cpu-lastCPU, wait-lastWait
		}
		worstOwn = max(worstOwn, gap-(wait-lastWait))
		last, lastCPU, lastWait = now, cpu, wait
		if now.Sub(windowStart) >= time.Second {
			fl, q := stats()
			enc.Encode(Sample{Time: now.UnixMilli(), MaxGapMS: ms(worst), GapCPUMS: ms(worstCPU), GapWaitMS: ms(worstWait), MaxOwnMS: ms(worstOwn), Flows: fl, Queued: q})
			worst, worstCPU, worstWait, worstOwn = 0, 0, 0, 0
			windowStart = now
		}
		return true
	})
	return nil
}
