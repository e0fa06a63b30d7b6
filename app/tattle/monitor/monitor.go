// Package monitor is the Monitor page: live connections grouped by application (name and icon from its
// .desktop entry, else the binary), each expandable to its destinations, with a search field, verdict
// filters, a per-application activity sparkline and a detail pane. Flows arrive from any goroutine (Push);
// the main loop merges them in time-bounded slices, updating only the rows that changed.
package monitor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/gotk3/gotk3/cairo"
	"github.com/gotk3/gotk3/gdk"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/flows"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/shared/api"
)

// Tree store columns.
const (
	colIcon     = iota // icon name: the application's, or the verdict's for a destination
	colName            // application name, or host (else address) of a destination
	colPort            // destination port
	colProto           // protocol
	colVerdict         // verdict icon name
	colAttempts        // attempts
	colLast            // last seen, local clock time
	colSpark           // activity sparkline (applications)
	colVisible         // shown by the current filter
	colID              // row id: key into Monitor.rows
	colSent            // payload bytes sent, for reading
	colReceived        // payload bytes received
	colRate            // transfer rate over the last second
	// What the sortable columns sort by.
	colSortAttempts // uint64
	colSortLast     // int64, Unix milliseconds
	colSortSent     // uint64
	colSortReceived // uint64
	nCols
)

// IdleAfter: a connection with no attempt for this long and no bytes moving leaves the live view (the
// history keeps it); it comes back when it is seen again.
const IdleAfter = 15 * time.Minute

// Budget bounds the time one main-loop slice spends merging flows, so that input and drawing stay smooth
// however many flows arrive at once; the rest waits for the next slice.
const Budget = 8 * time.Millisecond

// ExpandBelow: applications that appear while the monitor holds at most this many flows are shown expanded.
const ExpandBelow = 100

const (
	sparkW, sparkH = 60, 16
	drainEvery     = 50 // ms between merge slices
)

type row struct {
	iter   *gtk.TreeIter
	app    *flows.App  // application rows
	dest   *flows.Dest // destination rows
	shown  bool
	nShown int // application rows: destinations shown
}

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

type detail struct {
	grid   *gtk.Grid
	values map[string]*gtk.Label
	spark  *gtk.DrawingArea
	hist   []uint64
}

// New builds the page. entries may be nil (no .desktop lookups); traffic feeds the chart (nil: no chart
// data). Goroutines the page starts end with ctx.
func New(ctx context.Context, entries *desktop.Index, traffic TrafficSource) *Monitor {
	m := &Monitor{model: flows.New(), filter: flows.ShowAll, entries: entries, users: map[uint32]string{},
		rows: map[string]*row{}, appIDs: map[flows.AppKey]string{}, destIDs: map[flows.DestKey]string{}}
	m.store = ui.Must(gtk.TreeStoreNew(glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, gdk.PixbufGetType(), glib.TYPE_BOOLEAN, glib.TYPE_STRING,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_UINT64, glib.TYPE_INT64, glib.TYPE_UINT64, glib.TYPE_UINT64))
	m.filterM = ui.Must(m.store.ToTreeModel().FilterNew(nil))
	m.filterM.SetVisibleColumn(colVisible)
	// Sorting sits above the filter; until a column header is clicked it keeps the store's order.
	m.sortM = ui.Must(gtk.TreeModelSortNew(m.filterM))
	m.view = ui.Must(gtk.TreeViewNewWithModel(m.sortM))
	m.view.SetEnableSearch(false)
	// Every row has the same height: GTK then never measures rows one by one, which is what keeps thousands of
	// flows cheap (fixed-height mode needs fixed-width columns; they stay resizable).
	m.view.SetFixedHeightMode(true)
	ui.SetAccessible(m.view, i18n.T("Connections"), "")

	// Application / destination column: icon + name.
	name := ui.Must(gtk.TreeViewColumnNew())
	name.SetTitle(i18n.T("Application / Destination"))
	name.SetExpand(true)
	name.SetResizable(true)
	name.SetSizing(gtk.TREE_VIEW_COLUMN_FIXED)
	name.SetFixedWidth(230)
	icon := ui.Must(gtk.CellRendererPixbufNew())
	name.PackStart(icon, false)
	name.AddAttribute(icon, "icon-name", colIcon)
	text := ui.Must(gtk.CellRendererTextNew())
	text.SetProperty("ellipsize", 3) // PANGO_ELLIPSIZE_END
	name.PackStart(text, true)
	name.AddAttribute(text, "text", colName)
	name.SetSortColumnID(colName)
	m.view.AppendColumn(name)
	m.view.SetExpanderColumn(name)

	fixed := func(c *gtk.TreeViewColumn, title string) {
		c.SetResizable(true)
		c.SetSizing(gtk.TREE_VIEW_COLUMN_FIXED)
		// Wide enough for the title or its values, whichever is wider.
		c.SetFixedWidth(max(60, 8*len([]rune(title))+16))
		m.view.AppendColumn(c)
	}
	addText := func(title string, col, sortBy int) {
		r := ui.Must(gtk.CellRendererTextNew())
		c := ui.Must(gtk.TreeViewColumnNewWithAttribute(title, r, "text", col))
		if sortBy >= 0 {
			c.SetSortColumnID(sortBy)
		}
		fixed(c, title)
	}
	addText(i18n.T("Port"), colPort, -1)
	addText(i18n.T("Protocol"), colProto, -1)
	vr := ui.Must(gtk.CellRendererPixbufNew())
	vc := ui.Must(gtk.TreeViewColumnNewWithAttribute(i18n.T("Verdict"), vr, "icon-name", colVerdict))
	fixed(vc, i18n.T("Verdict"))
	addText(i18n.T("Attempts"), colAttempts, colSortAttempts)
	addText(i18n.T("Last seen"), colLast, colSortLast)
	addText(i18n.T("Sent"), colSent, colSortSent)
	addText(i18n.T("Received"), colReceived, colSortReceived)
	addText(i18n.T("Rate"), colRate, -1)
	sr := ui.Must(gtk.CellRendererPixbufNew())
	sc := ui.Must(gtk.TreeViewColumnNewWithAttribute(i18n.T("Activity"), sr, "pixbuf", colSpark))
	fixed(sc, i18n.T("Activity"))

	sel := ui.Must(m.view.GetSelection())
	sel.Connect("changed", func() { m.selectionChanged(sel) })

	// Search and filters above the list.
	search := ui.Must(gtk.SearchEntryNew())
	search.SetPlaceholderText(i18n.T("Search applications, hosts, addresses"))
	search.SetHExpand(true)
	ui.SetAccessible(search, i18n.T("Search connections"), "")
	search.Connect("search-changed", func() {
		t, _ := search.GetText()
		m.filter.Text = t
		m.refilter()
	})
	bar := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6))
	bar.SetMarginStart(6)
	bar.SetMarginEnd(6)
	bar.SetMarginTop(6)
	bar.SetMarginBottom(6)
	bar.PackStart(search, true, true, 0)
	toggles := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 0))
	if sc, err := toggles.GetStyleContext(); err == nil {
		sc.AddClass("linked")
	}
	for _, t := range []struct {
		label string
		on    *bool
	}{{i18n.T("Allowed"), &m.filter.Allowed}, {i18n.T("Denied"), &m.filter.Denied}, {i18n.T("Asked"), &m.filter.Asked}} {
		b := ui.Must(gtk.ToggleButtonNewWithLabel(t.label))
		b.SetActive(true)
		on := t.on
		b.Connect("toggled", func() {
			*on = b.GetActive()
			m.refilter()
		})
		toggles.PackStart(b, false, false, 0)
	}
	bar.PackStart(toggles, false, false, 0)

	scroll := ui.Must(gtk.ScrolledWindowNew(nil, nil))
	scroll.SetVExpand(true)
	scroll.Add(m.view)
	m.status = ui.Must(gtk.LabelNew(""))
	m.status.SetXAlign(0)
	m.status.SetMarginStart(8)
	m.status.SetMarginBottom(4)
	if sc, err := m.status.GetStyleContext(); err == nil {
		sc.AddClass("dim-label")
	}
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

func (m *Monitor) newID() string {
	m.nextID++
	return strconv.Itoa(m.nextID)
}

func (m *Monitor) apply(ch flows.Change) {
	for _, a := range ch.NewApps {
		id := m.newID()
		name, icon := m.appLabel(a.Key)
		it := &gtk.TreeIter{}
		m.store.InsertWithValues(it, nil, -1, []int{colIcon, colName, colAttempts, colLast, colVisible, colID,
			colSent, colReceived, colSortAttempts, colSortLast, colSortSent, colSortReceived},
			[]any{icon, name, strconv.FormatUint(a.Attempts, 10), clock(a.LastSeen), false, id,
				bytesText(a.TxBytes), bytesText(a.RxBytes), a.Attempts, a.LastSeen, a.TxBytes, a.RxBytes})
		m.rows[id] = &row{iter: it, app: a}
		m.appIDs[a.Key] = id
	}
	for _, d := range ch.NewDests {
		ar := m.rows[m.appIDs[d.Key.App]]
		id := m.newID()
		r := &row{dest: d, shown: m.filter.Matches(d)}
		r.iter = &gtk.TreeIter{}
		m.store.InsertWithValues(r.iter, ar.iter, -1,
			[]int{colIcon, colName, colPort, colProto, colVerdict, colAttempts, colLast, colVisible, colID,
				colSent, colReceived, colSortAttempts, colSortLast, colSortSent, colSortReceived},
			[]any{"network-server-symbolic", destName(d), strconv.Itoa(int(d.Port)), d.Key.Protocol, verdictIcon(d.Flow),
				strconv.FormatUint(d.Flow.Attempts, 10), clock(d.Flow.LastSeen), r.shown, id,
				bytesText(d.TxBytes), bytesText(d.RxBytes), d.Flow.Attempts, d.Flow.LastSeen, d.TxBytes, d.RxBytes})
		m.rows[id] = r
		m.destIDs[d.Key] = id
		if r.shown {
			m.nShown++
			m.setAppShown(ar, ar.nShown+1)
		}
	}
	for _, d := range ch.ChangedDests {
		r := m.rows[m.destIDs[d.Key]]
		m.setCols(r.iter, cols{colAttempts: strconv.FormatUint(d.Flow.Attempts, 10), colLast: clock(d.Flow.LastSeen),
			colVerdict: verdictIcon(d.Flow), colSent: bytesText(d.TxBytes), colReceived: bytesText(d.RxBytes),
			colSortAttempts: d.Flow.Attempts, colSortLast: d.Flow.LastSeen, colSortSent: d.TxBytes, colSortReceived: d.RxBytes})
		if shown := m.filter.Matches(d); shown != r.shown {
			m.setDestShown(r, shown)
		}
		if m.selected == m.destIDs[d.Key] {
			m.showDetail()
		}
	}
	// Small sets are shown whole: expand new applications while the monitor holds few flows.
	if m.model.Len() <= ExpandBelow {
		for _, a := range ch.NewApps {
			m.expand(m.rows[m.appIDs[a.Key]])
		}
	}
	for _, a := range ch.ChangedApps {
		r := m.rows[m.appIDs[a.Key]]
		m.setCols(r.iter, cols{colAttempts: strconv.FormatUint(a.Attempts, 10), colLast: clock(a.LastSeen),
			colSent: bytesText(a.TxBytes), colReceived: bytesText(a.RxBytes),
			colSortAttempts: a.Attempts, colSortLast: a.LastSeen, colSortSent: a.TxBytes, colSortReceived: a.RxBytes})
	}
}

func (m *Monitor) expand(r *row) {
	if r == nil {
		return
	}
	fit, ok := m.filterM.ConvertChildIterToIter(r.iter)
	if !ok {
		return
	}
	it, ok := m.sortM.ConvertChildIterToIter(fit)
	if !ok {
		return
	}
	if path, err := m.sortM.ToTreeModel().GetPath(it); err == nil {
		m.view.ExpandRow(path, false)
	}
}

func (m *Monitor) setDestShown(r *row, shown bool) {
	r.shown = shown
	m.store.SetValue(r.iter, colVisible, shown)
	ar := m.rows[m.appIDs[r.dest.Key.App]]
	if shown {
		m.nShown++
		m.setAppShown(ar, ar.nShown+1)
	} else {
		m.nShown--
		m.setAppShown(ar, ar.nShown-1)
	}
}

// setAppShown shows an application row exactly while at least one of its destinations is shown.
func (m *Monitor) setAppShown(ar *row, n int) {
	was := ar.nShown > 0
	ar.nShown = n
	if now := n > 0; now != was {
		m.store.SetValue(ar.iter, colVisible, now)
	}
}

// refilter applies a changed filter: only rows whose visibility changes are touched.
func (m *Monitor) refilter() {
	for _, r := range m.rows {
		if r.dest == nil {
			continue
		}
		if shown := m.filter.Matches(r.dest); shown != r.shown {
			m.setDestShown(r, shown)
		}
	}
	if m.filter.Text != "" {
		m.view.ExpandAll()
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

// sparkPixbuf renders a history into a new pixbuf (gdk_pixbuf_new owns the pixels; rows may be padded).
func sparkPixbuf(history []uint64) *gdk.Pixbuf {
	img := flows.Sparkline(history, sparkW, sparkH, [3]byte{0x35, 0x84, 0xe4})
	pb, err := gdk.PixbufNew(gdk.COLORSPACE_RGB, true, 8, sparkW, sparkH)
	if err != nil {
		return nil
	}
	px, stride := pb.GetPixels(), pb.GetRowstride()
	for y := 0; y < sparkH; y++ {
		copy(px[y*stride:y*stride+sparkW*4], img[y*sparkW*4:(y+1)*sparkW*4])
	}
	return pb
}

// forget removes the rows of connections idle since before cutoff, and of applications left with none.
func (m *Monitor) forget(cutoff int64) {
	gone := m.model.Forget(cutoff)
	if len(gone.Dests) == 0 {
		return
	}
	for _, d := range gone.Dests {
		id := m.destIDs[d.Key]
		r := m.rows[id]
		if r == nil {
			continue
		}
		if r.shown {
			m.setDestShown(r, false)
		}
		m.store.Remove(r.iter)
		delete(m.rows, id)
		delete(m.destIDs, d.Key)
		if m.selected == id {
			m.selected = ""
		}
	}
	for _, a := range gone.Apps {
		id := m.appIDs[a.Key]
		if r := m.rows[id]; r != nil {
			m.store.Remove(r.iter)
		}
		delete(m.rows, id)
		delete(m.appIDs, a.Key)
		if m.selected == id {
			m.selected = ""
		}
	}
	m.showDetail()
	m.updateStatus()
}

// bytesText is a byte count as people read it ("1.2 MB"), empty for none.
func bytesText(n uint64) string {
	if n == 0 {
		return ""
	}
	return glib.FormatSize(n)
}

// rateText is the last second's transfer: up arrow sent, down arrow received; empty when idle.
func rateText(t flows.Traffic) string {
	var s string
	if t.TxRate > 0 {
		s = "↑" + glib.FormatSize(t.TxRate) + "/s"
	}
	if t.RxRate > 0 {
		if s != "" {
			s += " "
		}
		s += "↓" + glib.FormatSize(t.RxRate) + "/s"
	}
	return s
}

func (m *Monitor) updateStatus() {
	shown := m.nShown
	m.status.SetText(fmt.Sprintf(i18n.N("%d connection shown of %d", "%d connections shown of %d", shown), shown, m.model.Len()))
}

func (m *Monitor) appLabel(k flows.AppKey) (name, icon string) {
	if k.Exe == "" {
		return i18n.T("Unknown application"), "application-x-executable"
	}
	return m.entries.App(k.Exe)
}

func destName(d *flows.Dest) string {
	switch {
	case d.Host != "":
		return d.Host + " (" + d.Addr + ")"
	case d.Flow.Reverse != "":
		// TRANSLATORS: an address nobody looked up by name, then the name its owner published for it
		return fmt.Sprintf(i18n.T("%s (reverse name %s)"), d.Addr, d.Flow.Reverse)
	}
	return d.Addr
}

func verdictIcon(f api.Flow) string {
	switch flows.Class(f) {
	case flows.ClassDenied:
		return "action-unavailable-symbolic"
	case flows.ClassAsked:
		// A speech bubble: Adwaita 43's dialog-question is a black diamond with "?", which at 16 px reads as
		// the font's missing-glyph mark.
		return "user-status-pending-symbolic"
	}
	return "object-select-symbolic"
}

func verdictText(f api.Flow) string {
	switch flows.Class(f) {
	case flows.ClassDenied:
		return i18n.T("Denied")
	case flows.ClassAsked:
		return i18n.T("Asked")
	}
	return i18n.T("Allowed")
}

func clock(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).Local().Format("15:04:05")
}

func (m *Monitor) userName(uid uint32) string {
	if n, ok := m.users[uid]; ok {
		return n
	}
	n := strconv.Itoa(int(uid))
	if u, err := user.LookupId(n); err == nil {
		n = u.Username
	}
	m.users[uid] = n
	return n
}

func (m *Monitor) selectionChanged(sel *gtk.TreeSelection) {
	model, it, ok := sel.GetSelected()
	m.selected = ""
	if ok {
		if v, err := model.(*gtk.TreeModel).GetValue(it, colID); err == nil {
			m.selected, _ = v.GetString()
		}
	}
	m.showDetail()
}

func newDetail() *detail {
	d := &detail{values: map[string]*gtk.Label{}}
	d.grid = ui.Must(gtk.GridNew())
	d.grid.SetRowSpacing(6)
	d.grid.SetColumnSpacing(12)
	d.grid.SetMarginStart(12)
	d.grid.SetMarginEnd(12)
	d.grid.SetMarginTop(12)
	d.grid.SetSizeRequest(260, -1)
	title := ui.Must(gtk.LabelNew(""))
	title.SetMarkup("<b>" + glib.MarkupEscapeText(i18n.T("Details")) + "</b>")
	title.SetXAlign(0)
	d.grid.Attach(title, 0, 0, 2, 1)
	for i, k := range []string{"app", "path", "user", "dest", "proto", "verdict", "rule", "counts", "traffic", "first", "last", "pid"} {
		var label string
		switch k {
		case "app":
			label = i18n.T("Application")
		case "path":
			label = i18n.T("Path")
		case "user":
			label = i18n.T("User")
		case "dest":
			label = i18n.T("Destination")
		case "proto":
			label = i18n.T("Protocol")
		case "verdict":
			label = i18n.T("Verdict")
		case "rule":
			label = i18n.T("Rule")
		case "counts":
			label = i18n.T("Allowed / denied / asked")
		case "traffic":
			label = i18n.T("Sent / received")
		case "first":
			label = i18n.T("First seen")
		case "last":
			label = i18n.T("Last seen")
		case "pid":
			label = i18n.T("Last process")
		}
		l := ui.Must(gtk.LabelNew(label))
		l.SetXAlign(1)
		if sc, err := l.GetStyleContext(); err == nil {
			sc.AddClass("dim-label")
		}
		v := ui.Must(gtk.LabelNew(""))
		v.SetXAlign(0)
		v.SetSelectable(true)
		v.SetLineWrap(true)
		v.SetMaxWidthChars(32)
		d.grid.Attach(l, 0, i+1, 1, 1)
		d.grid.Attach(v, 1, i+1, 1, 1)
		d.values[k] = v
	}
	act := ui.Must(gtk.LabelNew(i18n.T("Activity (last minute)")))
	act.SetXAlign(0)
	d.grid.Attach(act, 0, 14, 2, 1)
	d.spark = ui.Must(gtk.DrawingAreaNew())
	d.spark.SetSizeRequest(240, 60)
	d.spark.Connect("draw", func(da *gtk.DrawingArea, cr *cairo.Context) bool {
		drawHistory(cr, float64(da.GetAllocatedWidth()), float64(da.GetAllocatedHeight()), d.hist)
		return false
	})
	d.grid.Attach(d.spark, 0, 15, 2, 1)
	return d
}

// drawHistory draws an activity history as a filled line chart.
func drawHistory(cr *cairo.Context, w, h float64, hist []uint64) {
	cr.SetSourceRGBA(0.5, 0.5, 0.5, 0.15)
	cr.Rectangle(0, 0, w, h)
	cr.Fill()
	var peak uint64
	for _, v := range hist {
		peak = max(peak, v)
	}
	if peak == 0 || len(hist) < 2 {
		return
	}
	step := w / float64(len(hist)-1)
	cr.MoveTo(0, h)
	for i, v := range hist {
		cr.LineTo(float64(i)*step, h-2-float64(v)/float64(peak)*(h-4))
	}
	cr.LineTo(w, h)
	cr.ClosePath()
	cr.SetSourceRGBA(0.21, 0.52, 0.89, 0.35)
	cr.FillPreserve()
	cr.SetSourceRGB(0.21, 0.52, 0.89)
	cr.SetLineWidth(1.5)
	cr.Stroke()
}

func (m *Monitor) showDetail() {
	d := m.detail
	for _, v := range d.values {
		v.SetText("")
	}
	r := m.rows[m.selected]
	if r == nil {
		d.hist = nil
		d.spark.QueueDraw()
		return
	}
	var key flows.AppKey
	if r.dest != nil {
		key = r.dest.Key.App
		f := r.dest.Flow
		where := net.JoinHostPort(r.dest.Addr, strconv.Itoa(int(r.dest.Port)))
		switch {
		case r.dest.Host != "":
			where = r.dest.Host + " (" + where + ")"
		case f.Reverse != "":
			where = fmt.Sprintf(i18n.T("%s (reverse name %s)"), where, f.Reverse)
		}
		d.values["dest"].SetText(where)
		d.values["proto"].SetText(f.Protocol)
		d.values["verdict"].SetText(verdictText(f))
		d.values["rule"].SetText(f.RuleID)
		d.values["counts"].SetText(fmt.Sprintf("%d / %d / %d", f.Allowed, f.Denied, f.Undecided))
		d.values["traffic"].SetText(trafficText(r.dest.Traffic))
		d.values["first"].SetText(clock(f.FirstSeen))
		d.values["last"].SetText(clock(f.LastSeen))
		d.values["pid"].SetText(strconv.Itoa(int(f.LastPID)))
	} else {
		key = r.app.Key
		a := r.app
		d.values["dest"].SetText(fmt.Sprintf(i18n.N("%d destination", "%d destinations", a.Dests), a.Dests))
		d.values["counts"].SetText(fmt.Sprintf("%d / %d / %d", a.Allowed, a.Denied, a.Undecided))
		d.values["traffic"].SetText(trafficText(a.Traffic))
		d.values["last"].SetText(clock(a.LastSeen))
	}
	name, _ := m.appLabel(key)
	d.values["app"].SetText(name)
	d.values["path"].SetText(key.Exe)
	d.values["user"].SetText(m.userName(key.UID))
	if a := m.model.App(key); a != nil {
		d.hist = append(d.hist[:0], a.History...)
	}
	d.spark.QueueDraw()
}

// trafficText is a detail pane line: totals, then the current rate when there is one.
func trafficText(t flows.Traffic) string {
	s := glib.FormatSize(t.TxBytes) + " / " + glib.FormatSize(t.RxBytes)
	if r := rateText(t); r != "" {
		s += "  (" + r + ")"
	}
	return s
}

// cols are a row's new values by column.
type cols map[int]any

func (m *Monitor) setCols(it *gtk.TreeIter, c cols) {
	columns, values := make([]int, 0, len(c)), make([]any, 0, len(c))
	for col, v := range c {
		columns, values = append(columns, col), append(values, v)
	}
	ui.SetRow(m.store, it, columns, values)
}
