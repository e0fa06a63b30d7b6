// Package stall measures how long the GTK main loop goes without running: a timer asks to run every
// Interval, and each gap longer than that is time the loop spent busy (merging flows, drawing). Enabled by
// the app when TATTLE_STALL_FILE names a file: once a second it appends one JSON line with the worst gap of
// that second, so tests and developers can see the loop's responsiveness under load.
package stall

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gotk3/gotk3/glib"
)

// Interval is how often the probe asks to run.
const Interval = 5 * time.Millisecond

// Sample is one line of the file.
type Sample struct {
	Time     int64   `json:"time"`       // Unix milliseconds at the end of the second
	MaxGapMS float64 `json:"max_gap_ms"` // longest time between two runs of the probe, minus Interval
	Flows    int     `json:"flows"`      // flows in the monitor's model
	Queued   int     `json:"queued"`     // flows received but not yet merged
}

// Start runs the probe on the default main context until the process exits, appending samples to path.
// stats reports the monitor's flows and queue at each sample.
func Start(path string, stats func() (flows, queued int)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the stall file: %w", err)
	}
	last := time.Now()
	windowStart := last
	var worst time.Duration
	enc := json.NewEncoder(f)
	glib.TimeoutAddPriority(uint(Interval/time.Millisecond), glib.PRIORITY_DEFAULT, func() bool {
		now := time.Now()
		if gap := now.Sub(last) - Interval; gap > worst {
			worst = gap
		}
		last = now
		if now.Sub(windowStart) >= time.Second {
			fl, q := stats()
			enc.Encode(Sample{Time: now.UnixMilli(), MaxGapMS: float64(worst.Microseconds()) / 1000, Flows: fl, Queued: q})
			worst = 0
			windowStart = now
		}
		return true
	})
	return nil
}
