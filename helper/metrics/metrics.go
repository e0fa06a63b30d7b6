// Package metrics serves tattled's Prometheus metrics: decisions (by verdict, and by application with a
// bounded set of application labels), questions, the kernel's and the DNS capture's loss counters, the
// kernel maps' fill and per-application bytes. Everything the helper already counts is read when scraped
// (a collector); only decisions and questions, which nothing else counts, are counted here.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tattlefw/tattle/helper/dnscapture"
	"github.com/tattlefw/tattle/helper/enforce"
)

// DefaultMaxApps is how many applications get their own label value; the rest share Other.
const DefaultMaxApps = 50

// Other is the app label value of every application beyond the first MaxApps.
const Other = "other"

// Sources are where the collector reads current values at scrape time. Any may be nil (not reported).
type Sources struct {
	Flows    func() ([]enforce.Flow, error)
	AppName  func(enforce.Flow) string // the label an application's flow is counted under (its path)
	Kernel   func() (enforce.Stats, error)
	Maps     func() ([]enforce.MapFill, error)
	DNS      func() (dnscapture.Stats, bool, error) // false: no DNS capture running
	Pending  func() int                             // open questions
	Journal  func() (sent, dropped, failed uint64)  // decision records
	Unlogged func() uint64                          // history rows the history could not keep up with
}

// Metrics is tattled's registry and the counters only it keeps.
type Metrics struct {
	reg     *prometheus.Registry
	maxApps int
	src     Sources

	decisions    *prometheus.CounterVec // verdict
	appDecisions *prometheus.CounterVec // app, verdict
	asked        prometheus.Counter

	mu   sync.Mutex
	apps map[string]bool // applications with their own label

	traffic trafficTotals // per-application bytes, made monotonic across the flow table's evictions
}

// New returns the metrics with a registry of their own (never the client library's global one).
func New(maxApps int, src Sources) *Metrics {
	if maxApps <= 0 {
		maxApps = DefaultMaxApps
	}
	m := &Metrics{reg: prometheus.NewRegistry(), maxApps: maxApps, src: src, apps: map[string]bool{},
		traffic: trafficTotals{last: map[enforce.FlowID]enforce.Traffic{}, apps: map[string]*appBytes{}}}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tattle_decisions_total",
		Help: "Connection decisions the helper made or saw, by verdict (allow, deny, undecided: held for a question)."},
		[]string{"verdict"})
	m.appDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tattle_app_decisions_total",
		Help: "Connection decisions by application (its executable's path; the first applications seen get their own label, later ones share \"other\") and verdict."},
		[]string{"app", "verdict"})
	m.asked = prometheus.NewCounter(prometheus.CounterOpts{Name: "tattle_questions_asked_total",
		Help: "Questions put to a user's agent."})
	m.reg.MustRegister(m.decisions, m.appDecisions, m.asked, collector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is what the endpoint serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Decision counts one decision of app.
func (m *Metrics) Decision(app, verdict string) {
	m.decisions.WithLabelValues(verdict).Inc()
	m.appDecisions.WithLabelValues(m.appLabel(app), verdict).Inc()
}

// QuestionAsked counts one question put to an agent.
func (m *Metrics) QuestionAsked() { m.asked.Inc() }

// appLabel is app's label value: the first maxApps applications keep theirs for the helper's lifetime (so
// their counters stay monotonic), every later one is Other.
func (m *Metrics) appLabel(app string) string {
	if app == "" {
		app = "unknown"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.apps[app] {
		return app
	}
	if len(m.apps) < m.maxApps {
		m.apps[app] = true
		return app
	}
	return Other
}
