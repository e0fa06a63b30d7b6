package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

func cmdStatus(ctx context.Context, e *env, args []string) error {
	return show(ctx, e, "status", "text", args, Helper.Status, writeStatusJSON,
		func(ctx context.Context, h Helper, st api.Status) error {
			var problems []api.Problem
			if st.Problems > 0 {
				problems, _ = h.Problems(ctx) // the count is shown either way
			}
			return writeStatus(e.stdout, st, problems)
		})
}

type monitorOptions struct {
	json     bool
	once     bool
	interval time.Duration
}

func parseMonitor(e *env, args []string) (monitorOptions, error) {
	var o monitorOptions
	fs := newFlagSet("monitor")
	fs.BoolVar(&o.json, "json", false, "print one JSON array per refresh, one line each")
	fs.BoolVar(&o.once, "once", false, "print one snapshot and exit")
	fs.DurationVar(&o.interval, "interval", time.Second, "wait `DURATION` between refreshes")
	if err := noArgs(e, "monitor", fs, args); err != nil {
		return o, err
	}
	if o.interval < 100*time.Millisecond {
		return o, usagef("--interval: %v is too short; use at least 100ms", o.interval)
	}
	return o, nil
}

// sortFlows puts the most recently seen first, so the top of the table is what is happening now.
func sortFlows(flows []api.Flow) {
	sort.SliceStable(flows, func(i, j int) bool {
		if flows[i].LastSeen != flows[j].LastSeen {
			return flows[i].LastSeen > flows[j].LastSeen
		}
		if flows[i].Exe != flows[j].Exe {
			return flows[i].Exe < flows[j].Exe
		}
		return flows[i].Dest < flows[j].Dest
	})
}

func cmdMonitor(ctx context.Context, e *env, args []string) error {
	o, err := parseMonitor(e, args)
	if err != nil {
		return err
	}
	return e.withHelper(false, false, func(h Helper) error { return watchFlows(ctx, e, o, h) })
}

// watchFlows prints the flows every o.interval until Ctrl-C (once with --once).
func watchFlows(ctx context.Context, e *env, o monitorOptions, h Helper) error {
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for first := true; ; first = false {
		flows, err := h.Flows(ctx)
		if err != nil {
			if ctx.Err() != nil && !o.once {
				return nil // Ctrl-C: the normal way to leave
			}
			return err
		}
		sortFlows(flows)
		if err := renderFlows(e, o, flows, first); err != nil {
			return err
		}
		if o.once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// renderFlows prints one refresh: JSON lines, a redrawn screen on a terminal, or snapshots one after another.
func renderFlows(e *env, o monitorOptions, flows []api.Flow, first bool) error {
	switch {
	case o.json:
		return writeFlowsJSON(e.stdout, flows, e)
	case o.once:
		return writeFlowsTable(e.stdout, flows, e, 0)
	case e.terminal:
		limit := 0 // rows of flows that fit: the title, the header and the cursor's line take three
		if e.termRows != nil {
			if rows := e.termRows(); rows > 0 {
				limit = max(rows-3, 2)
			}
		}
		fmt.Fprint(e.stdout, "\x1b[H\x1b[2J") // home, clear screen
		fmt.Fprintf(e.stdout, "%d %s at %s, every %v; Ctrl-C to quit\n", len(flows), plural(len(flows), "flow", "flows"),
			e.now().Format("15:04:05"), o.interval)
		return writeFlowsTable(e.stdout, flows, e, limit)
	default:
		if !first {
			fmt.Fprintln(e.stdout)
		}
		return writeFlowsTable(e.stdout, flows, e, 0)
	}
}
