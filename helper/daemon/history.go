package daemon

import (
	"context"
	"time"

	"github.com/tattlefw/tattle/helper/dnscapture"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/history"
	"github.com/tattlefw/tattle/helper/metrics"
	"github.com/tattlefw/tattle/helper/records"
)

// DefaultTrafficSample is how often the flows' byte counters are written to the history.
const DefaultTrafficSample = time.Minute

// SetHistory makes the daemon write every decision to h, and the flows' traffic every sample
// (DefaultTrafficSample when 0). Call before Run.
func (d *Daemon) SetHistory(h *history.DB, sample time.Duration) {
	if sample <= 0 {
		sample = DefaultTrafficSample
	}
	d.history, d.trafficSample = h, sample
}

// History is the history database, nil when there is none.
func (d *Daemon) History() *history.DB { return d.history }

// SetRecords makes the daemon send a journald record of every decision it records. Call before Run.
func (d *Daemon) SetRecords(w *records.Writer) { d.records = w }

// SetMetrics makes the daemon count decisions and questions in m. Call before StartHolding and Run.
func (d *Daemon) SetMetrics(m *metrics.Metrics) { d.metrics = m }

// DNSStats are the DNS capture's counters; false when no capture runs.
func (d *Daemon) DNSStats() (dnscapture.Stats, bool, error) {
	if d.names.capture == nil {
		return dnscapture.Stats{}, false, nil
	}
	s, err := d.names.capture.Stats()
	return s, true, err
}

// recordDecision writes one attempt and its outcome (the kernel's verdict, or the helper's when it decided)
// to the history, the journal and the metrics: the same set of decisions for all three. rule is the rule the
// helper decided by; "": the kernel's rule of the event.
func (d *Daemon) recordDecision(ev enforce.Event, v enforce.Verdict, rule string) {
	if d.history == nil && d.records == nil && d.metrics == nil {
		return
	}
	exe := ev.Exe
	if exe == "" {
		exe = d.ExePath(ev.TGID, ev.App)
	}
	verdict := v.String()
	if d.metrics != nil {
		d.metrics.Decision(exe, verdict)
	}
	if d.history == nil && d.records == nil {
		return
	}
	host := d.HostFor(ev.App, ev.UID, ev.Dest.Addr())
	if rule == "" {
		rule = d.RuleName(ev.RuleID)
	}
	if d.history != nil {
		d.history.Record(history.Decision{Time: ev.Time, App: exe, Via: ev.Via, UID: ev.UID, Dest: ev.Dest.String(),
			Host: host, Proto: ev.Proto.String(), Verdict: verdict, Rule: rule})
	}
	if d.records != nil {
		d.records.Record(records.Decision{Time: ev.Time, App: exe, Via: ev.Via, UID: ev.UID, Dest: ev.Dest.String(),
			Host: host, Proto: ev.Proto.String(), Verdict: verdict, Rule: recordRule(rule, v)})
	}
}

// recordRule names what decided: the rule, or why no rule did.
func recordRule(rule string, v enforce.Verdict) string {
	switch {
	case rule != "":
		return rule
	case v == enforce.Undecided:
		return "undecided" // no rule decides it: held for a question, or passed by the fail policy
	}
	return "default"
}

// sampleTraffic writes, every sample, the bytes each flow moved since the previous sample.
func (d *Daemon) sampleTraffic(ctx context.Context) {
	last := map[enforce.FlowID]enforce.Traffic{}
	onTicks(ctx, d.trafficSample, func(time.Time) {
		flows, err := d.enf.Flows()
		if err != nil {
			d.log.Warn("sample traffic for the history", "error", err)
			return
		}
		now := time.Now()
		seen := make(map[enforce.FlowID]enforce.Traffic, len(flows))
		for _, f := range flows {
			id := enforce.FlowID{App: f.App, UID: f.UID, Dest: f.Dest, Proto: f.Proto}
			seen[id] = f.Traffic
			prev := last[id]
			if f.TxBytes < prev.TxBytes || f.RxBytes < prev.RxBytes {
				prev = enforce.Traffic{} // the helper's folded totals restarted
			}
			tx, rx := f.TxBytes-prev.TxBytes, f.RxBytes-prev.RxBytes
			if tx == 0 && rx == 0 {
				continue
			}
			d.history.RecordTraffic(history.Traffic{Time: now, App: d.ExePath(f.LastTGID, f.App), UID: f.UID,
				Dest: f.Dest.String(), Tx: tx, Rx: rx})
		}
		last = seen
	})
}
