package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tattlefw/tattle/helper/enforce"
)

var (
	descKernel = map[string]*prometheus.Desc{
		"events_lost": prometheus.NewDesc("tattle_kernel_events_lost_total", "Attempts whose event the kernel's ring buffer had no room for.", nil, nil),
		"flows_full":  prometheus.NewDesc("tattle_kernel_flows_not_recorded_total", "Attempts whose flow the kernel could not record.", nil, nil),
		"mark_failed": prometheus.NewDesc("tattle_kernel_marks_failed_total", "Undecided sockets the kernel could not mark for holding.", nil, nil),
		"no_identity": prometheus.NewDesc("tattle_kernel_no_identity_total", "Attempts without a user executable (kernel threads), allowed.", nil, nil),
		"exec_lost":   prometheus.NewDesc("tattle_kernel_exec_events_lost_total", "Interpreters' execs the helper was not told about.", nil, nil),
	}
	descDNSSeen      = prometheus.NewDesc("tattle_dns_answers_seen_total", "DNS answers delivered to local sockets.", nil, nil)
	descDNSLost      = prometheus.NewDesc("tattle_dns_answers_lost_total", "DNS answers the capture's ring buffer had no room for.", nil, nil)
	descDNSTruncated = prometheus.NewDesc("tattle_dns_answers_truncated_total", "DNS answers delivered cut short.", nil, nil)
	descMapEntries   = prometheus.NewDesc("tattle_map_entries", "Entries in a kernel map.", []string{"map"}, nil)
	descMapMax       = prometheus.NewDesc("tattle_map_max_entries", "The most entries a kernel map holds.", []string{"map"}, nil)
	descPending      = prometheus.NewDesc("tattle_questions_pending", "Open questions: connections held while their owner decides.", nil, nil)
	descJournalSent  = prometheus.NewDesc("tattle_journal_records_total", "Decision records journald accepted.", nil, nil)
	descJournalDrop  = prometheus.NewDesc("tattle_journal_records_dropped_total", "Decision records dropped because the queue to journald was full.", nil, nil)
	descJournalFail  = prometheus.NewDesc("tattle_journal_records_failed_total", "Decision records journald refused.", nil, nil)
	descUnlogged     = prometheus.NewDesc("tattle_history_dropped_total", "Decisions the history database could not keep up with.", nil, nil)
	descSent         = prometheus.NewDesc("tattle_app_sent_bytes_total", "Payload bytes applications sent (bounded app labels, as for decisions).", []string{"app"}, nil)
	descReceived     = prometheus.NewDesc("tattle_app_received_bytes_total", "Payload bytes applications received (bounded app labels, as for decisions).", []string{"app"}, nil)
	descScrapeErrors = prometheus.NewDesc("tattle_scrape_errors", "Sources that could not be read in this scrape.", []string{"source"}, nil)
)

// collector reads the values the helper already keeps when Prometheus scrapes.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descKernel {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{descDNSSeen, descDNSLost, descDNSTruncated, descMapEntries, descMapMax, descPending,
		descJournalSent, descJournalDrop, descJournalFail, descUnlogged, descSent, descReceived, descScrapeErrors} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.src
	failed := func(source string) {
		ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, 1, source)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if s.Kernel != nil {
		if st, err := s.Kernel(); err == nil {
			counter(descKernel["events_lost"], st.EventsLost)
			counter(descKernel["flows_full"], st.FlowsFull)
			counter(descKernel["mark_failed"], st.MarkFailed)
			counter(descKernel["no_identity"], st.NoIdentity)
			counter(descKernel["exec_lost"], st.ExecLost)
		} else {
			failed("kernel")
		}
	}
	if s.DNS != nil {
		if st, ok, err := s.DNS(); err != nil {
			failed("dns")
		} else if ok {
			counter(descDNSSeen, st.Seen)
			counter(descDNSLost, st.Lost)
			counter(descDNSTruncated, st.Truncated)
		}
	}
	if s.Maps != nil {
		if fill, err := s.Maps(); err == nil {
			for _, f := range fill {
				ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(f.Entries), f.Name)
				ch <- prometheus.MustNewConstMetric(descMapMax, prometheus.GaugeValue, float64(f.Max), f.Name)
			}
		} else {
			failed("maps")
		}
	}
	if s.Pending != nil {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending()))
	}
	if s.Journal != nil {
		sent, dropped, jf := s.Journal()
		counter(descJournalSent, sent)
		counter(descJournalDrop, dropped)
		counter(descJournalFail, jf)
	}
	if s.Unlogged != nil {
		counter(descUnlogged, s.Unlogged())
	}
	if s.Flows != nil && s.AppName != nil {
		flows, err := s.Flows()
		if err != nil {
			failed("flows")
		} else {
			for app, b := range c.m.traffic.update(flows, s.AppName, c.m.appLabel) {
				counter(descSent, b.tx, app)
				counter(descReceived, b.rx, app)
			}
		}
	}
}

type appBytes struct{ tx, rx uint64 }

// trafficTotals turns the flow table's counters (which go when a flow is evicted, and restart when the
// helper's folded totals do) into per-application totals that only grow: each scrape adds what each flow
// moved since the last one.
type trafficTotals struct {
	mu   sync.Mutex
	last map[enforce.FlowID]enforce.Traffic
	apps map[string]*appBytes
}

func (t *trafficTotals) update(flows []enforce.Flow, name func(enforce.Flow) string, label func(string) string) map[string]appBytes {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := make(map[enforce.FlowID]enforce.Traffic, len(flows))
	for _, f := range flows {
		id := enforce.FlowID{App: f.App, UID: f.UID, Dest: f.Dest, Proto: f.Proto}
		seen[id] = f.Traffic
		prev := t.last[id]
		if f.TxBytes < prev.TxBytes || f.RxBytes < prev.RxBytes {
			prev = enforce.Traffic{} // restarted: all of it is new
		}
		tx, rx := f.TxBytes-prev.TxBytes, f.RxBytes-prev.RxBytes
		if tx == 0 && rx == 0 {
			if _, known := t.last[id]; known {
				continue
			}
		}
		app := label(name(f))
		a := t.apps[app]
		if a == nil {
			a = &appBytes{}
			t.apps[app] = a
		}
		a.tx += tx
		a.rx += rx
	}
	t.last = seen
	out := make(map[string]appBytes, len(t.apps))
	for k, v := range t.apps {
		out[k] = *v
	}
	return out
}
