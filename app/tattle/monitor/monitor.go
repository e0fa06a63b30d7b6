// Package monitor is the Monitor page: live connections grouped by application (name and icon from its
// .desktop entry, else the binary), each expandable to its destinations, with a search field, verdict
// filters, a per-application activity sparkline and a detail pane. Flows arrive from any goroutine (Push);
// the main loop merges them in time-bounded slices, updating only the rows that changed.
package monitor

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/flows"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/shared/api"
)

// IdleAfter: a connection with no attempt for this long and no bytes moving leaves the live view (the
// history keeps it); it comes back when it is seen again.
const IdleAfter = 15 * time.Minute

// Budget bounds the time one main-loop slice spends merging flows, so that input and drawing stay smooth
// however many flows arrive at once; the rest waits for the next slice.
const Budget = 8 * time.Millisecond

// ExpandBelow: applications that appear while the monitor holds at most this many flows are shown expanded.
const ExpandBelow = 100

// drainEvery is the time between merge slices, in milliseconds.
const drainEvery = 50

// Monitor is the page. Create it and call its methods on the main loop, except Push.
type Monitor struct {
	Widget *gtk.Paned

	model   *flows.Model
	store   *gtk.TreeStore
	filterM *gtk.TreeModelFilter
	sortM   *gtk.TreeModelSort
	view    *gtk.TreeView
	chart   *chart
	ticks   int
	filter  flows.Filter
	entries *desktop.Index
	users   map[uint32]string

	rows    map[string]*row // by id
	appIDs  map[flows.AppKey]string
	destIDs map[flows.DestKey]string
	nextID  int

	nShown int // destinations the filter shows

	selected string
	detail   *detail
	status   *gtk.Label

	inboxMu sync.Mutex
	inbox   []api.Flow
}

// New builds the page. entries may be nil (no .desktop lookups); traffic feeds the chart (nil: no chart
// data). Goroutines the page starts end with ctx.
func New(ctx context.Context, entries *desktop.Index, traffic TrafficSource) *Monitor {
	m := &Monitor{model: flows.New(), filter: flows.ShowAll, entries: entries, users: map[uint32]string{},
		rows: map[string]*row{}, appIDs: map[flows.AppKey]string{}, destIDs: map[flows.DestKey]string{}}
	m.buildTable()
	bar := m.filterBar()

	scroll := ui.Must(gtk.ScrolledWindowNew(nil, nil))
	scroll.SetVExpand(true)
	scroll.Add(m.view)
	m.status = ui.Must(gtk.LabelNew(""))
	m.status.SetXAlign(0)
	m.status.SetMarginStart(8)
	m.status.SetMarginBottom(4)
	ui.Dim(m.status)
	m.chart = newChart(ctx, traffic, func(since, until time.Time) {
		m.filter.Since, m.filter.Until = since.UnixMilli(), until.UnixMilli()
		if since.IsZero() {
			m.filter.Since, m.filter.Until = 0, 0
		}
		m.refilter()
	})
	left := ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0))
	left.PackStart(bar, false, false, 0)
	left.PackStart(m.chart.Widget, false, false, 0)
	left.PackStart(scroll, true, true, 0)
	left.PackStart(m.status, false, false, 0)

	m.detail = newDetail()
	m.Widget = ui.Must(gtk.PanedNew(gtk.ORIENTATION_HORIZONTAL))
	m.Widget.Pack1(left, true, false)
	m.Widget.Pack2(m.detail.grid, false, false)
	m.Widget.SetPosition(800)
	m.updateStatus()

	glib.TimeoutAdd(drainEvery, func() bool { m.drain(); return true })
	glib.TimeoutAdd(1000, func() bool { m.tick(); return true })
	return m
}

// Push queues flows (a snapshot or a FlowsChanged batch) for the main loop. Safe from any goroutine.
func (m *Monitor) Push(fs []api.Flow) {
	m.inboxMu.Lock()
	m.inbox = append(m.inbox, fs...)
	m.inboxMu.Unlock()
}

// LearnHost shows the host name a question names in the row of the flow it asks about.
func (m *Monitor) LearnHost(q api.Question) {
	addr, err := netip.ParseAddr(q.Addr)
	if q.Host == "" || err != nil {
		return
	}
	key := flows.DestKey{App: flows.AppKey{Exe: q.Exe, Dev: q.Dev, Ino: q.Ino, UID: q.UID},
		Dest: netip.AddrPortFrom(addr, q.Port).String(), Protocol: q.Protocol}
	for _, d := range m.model.LearnHost(key, q.Host) {
		if r := m.rows[m.destIDs[d.Key]]; r != nil {
			m.store.SetValue(r.iter, colName, destName(d))
		}
	}
}

// Len is the number of flows shown or filtered out.
func (m *Monitor) Len() int { return m.model.Len() }

// Queued is the number of flows received and not yet merged. Safe from any goroutine.
func (m *Monitor) Queued() int {
	m.inboxMu.Lock()
	defer m.inboxMu.Unlock()
	return len(m.inbox)
}

// drain merges queued flows for at most Budget.
func (m *Monitor) drain() {
	m.inboxMu.Lock()
	queued := m.inbox
	m.inbox = nil
	m.inboxMu.Unlock()
	if len(queued) == 0 {
		return
	}
	start := time.Now()
	const slice = 20
	i := 0
	for i < len(queued) && time.Since(start) < Budget {
		n := min(slice, len(queued)-i)
		m.apply(m.model.Apply(queued[i : i+n]))
		i += n
	}
	if i < len(queued) {
		// Put the rest back in front of anything that arrived meanwhile, keeping the order of updates.
		m.inboxMu.Lock()
		m.inbox = append(queued[i:len(queued):len(queued)], m.inbox...)
		m.inboxMu.Unlock()
	}
	m.updateStatus()
}

// tick closes a sample: it redraws the sparklines and rates that changed, and every ten seconds takes idle
// connections out of the view.
func (m *Monitor) tick() {
	history, rates := m.model.Tick()
	for _, a := range rates.ChangedApps {
		if r := m.rows[m.appIDs[a.Key]]; r != nil {
			m.store.SetValue(r.iter, colRate, rateText(a.Traffic))
		}
	}
	for _, d := range rates.ChangedDests {
		if r := m.rows[m.destIDs[d.Key]]; r != nil {
			m.store.SetValue(r.iter, colRate, rateText(d.Traffic))
		}
	}
	if m.ticks++; m.ticks%10 == 0 {
		m.forget(time.Now().Add(-IdleAfter).UnixMilli())
	}
	for _, a := range history {
		r := m.rows[m.appIDs[a.Key]]
		if r == nil {
			continue
		}
		if pb := sparkPixbuf(a.History); pb != nil {
			m.store.SetValue(r.iter, colSpark, pb)
		}
	}
	if r := m.rows[m.selected]; r != nil {
		m.showDetail()
	}
}

func (m *Monitor) updateStatus() {
	shown := m.nShown
	m.status.SetText(fmt.Sprintf(i18n.N("%d connection shown of %d", "%d connections shown of %d", shown), shown, m.model.Len()))
}
