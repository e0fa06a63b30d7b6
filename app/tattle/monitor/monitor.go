// Package monitor is the Monitor page: live connections grouped by application (name and icon from its
// .desktop entry, else the binary), each expandable to its destinations, with a search field, verdict
// filters, a per-application activity sparkline and a detail pane. Flows arrive from any goroutine (Push);
// the main loop merges them in time-bounded slices, updating only the rows that changed.
package monitor

import (
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
	nCols
)

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
	view    *gtk.TreeView
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

// New builds the page. entries may be nil (no .desktop lookups).
func New(entries *desktop.Index) *Monitor {
	m := &Monitor{model: flows.New(), filter: flows.ShowAll, entries: entries, users: map[uint32]string{},
		rows: map[string]*row{}, appIDs: map[flows.AppKey]string{}, destIDs: map[flows.DestKey]string{}}
	m.store, _ = gtk.TreeStoreNew(glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, gdk.PixbufGetType(), glib.TYPE_BOOLEAN, glib.TYPE_STRING)
	m.filterM, _ = m.store.ToTreeModel().FilterNew(nil)
	m.filterM.SetVisibleColumn(colVisible)
	m.view, _ = gtk.TreeViewNewWithModel(m.filterM)
	m.view.SetEnableSearch(false)
	// Every row has the same height: GTK then never measures rows one by one, which is what keeps thousands of
	// flows cheap (fixed-height mode needs fixed-width columns; they stay resizable).
	m.view.SetFixedHeightMode(true)
	ui.SetAccessible(m.view, i18n.T("Connections"), "")

	// Application / destination column: icon + name.
	name, _ := gtk.TreeViewColumnNew()
	name.SetTitle(i18n.T("Application / Destination"))
	name.SetExpand(true)
	name.SetResizable(true)
	name.SetSizing(gtk.TREE_VIEW_COLUMN_FIXED)
	name.SetFixedWidth(230)
	icon, _ := gtk.CellRendererPixbufNew()
	name.PackStart(icon, false)
	name.AddAttribute(icon, "icon-name", colIcon)
	text, _ := gtk.CellRendererTextNew()
	text.SetProperty("ellipsize", 3) // PANGO_ELLIPSIZE_END
	name.PackStart(text, true)
	name.AddAttribute(text, "text", colName)
	m.view.AppendColumn(name)
	m.view.SetExpanderColumn(name)

	fixed := func(c *gtk.TreeViewColumn, title string) {
		c.SetResizable(true)
		c.SetSizing(gtk.TREE_VIEW_COLUMN_FIXED)
		// Wide enough for the title or its values, whichever is wider.
		c.SetFixedWidth(max(60, 8*len([]rune(title))+16))
		m.view.AppendColumn(c)
	}
	addText := func(title string, col int) {
		r, _ := gtk.CellRendererTextNew()
		c, _ := gtk.TreeViewColumnNewWithAttribute(title, r, "text", col)
		fixed(c, title)
	}
	addText(i18n.T("Port"), colPort)
	addText(i18n.T("Protocol"), colProto)
	vr, _ := gtk.CellRendererPixbufNew()
	vc, _ := gtk.TreeViewColumnNewWithAttribute(i18n.T("Verdict"), vr, "icon-name", colVerdict)
	fixed(vc, i18n.T("Verdict"))
	addText(i18n.T("Attempts"), colAttempts)
	addText(i18n.T("Last seen"), colLast)
	sr, _ := gtk.CellRendererPixbufNew()
	sc, _ := gtk.TreeViewColumnNewWithAttribute(i18n.T("Activity"), sr, "pixbuf", colSpark)
	fixed(sc, i18n.T("Activity"))

	sel, _ := m.view.GetSelection()
	sel.Connect("changed", func() { m.selectionChanged(sel) })

	// Search and filters above the list.
	search, _ := gtk.SearchEntryNew()
	search.SetPlaceholderText(i18n.T("Search applications, hosts, addresses"))
	search.SetHExpand(true)
	ui.SetAccessible(search, i18n.T("Search connections"), "")
	search.Connect("search-changed", func() {
		t, _ := search.GetText()
		m.filter.Text = t
		m.refilter()
	})
	bar, _ := gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6)
	bar.SetMarginStart(6)
	bar.SetMarginEnd(6)
	bar.SetMarginTop(6)
	bar.SetMarginBottom(6)
	bar.PackStart(search, true, true, 0)
	toggles, _ := gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 0)
	if sc, err := toggles.GetStyleContext(); err == nil {
		sc.AddClass("linked")
	}
	for _, t := range []struct {
		label string
		on    *bool
	}{{i18n.T("Allowed"), &m.filter.Allowed}, {i18n.T("Denied"), &m.filter.Denied}, {i18n.T("Asked"), &m.filter.Asked}} {
		b, _ := gtk.ToggleButtonNewWithLabel(t.label)
		b.SetActive(true)
		on := t.on
		b.Connect("toggled", func() {
			*on = b.GetActive()
			m.refilter()
		})
		toggles.PackStart(b, false, false, 0)
	}
	bar.PackStart(toggles, false, false, 0)

	scroll, _ := gtk.ScrolledWindowNew(nil, nil)
	scroll.SetVExpand(true)
	scroll.Add(m.view)
	m.status, _ = gtk.LabelNew("")
	m.status.SetXAlign(0)
	m.status.SetMarginStart(8)
	m.status.SetMarginBottom(4)
	if sc, err := m.status.GetStyleContext(); err == nil {
		sc.AddClass("dim-label")
	}
	left, _ := gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0)
	left.PackStart(bar, false, false, 0)
	left.PackStart(scroll, true, true, 0)
	left.PackStart(m.status, false, false, 0)

	m.detail = newDetail()
	m.Widget, _ = gtk.PanedNew(gtk.ORIENTATION_HORIZONTAL)
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
		m.store.InsertWithValues(it, nil, -1, []int{colIcon, colName, colAttempts, colLast, colVisible, colID},
			[]any{icon, name, strconv.FormatUint(a.Attempts, 10), clock(a.LastSeen), false, id})
		m.rows[id] = &row{iter: it, app: a}
		m.appIDs[a.Key] = id
	}
	for _, d := range ch.NewDests {
		ar := m.rows[m.appIDs[d.Key.App]]
		id := m.newID()
		r := &row{dest: d, shown: m.filter.Matches(d)}
		r.iter = &gtk.TreeIter{}
		m.store.InsertWithValues(r.iter, ar.iter, -1,
			[]int{colIcon, colName, colPort, colProto, colVerdict, colAttempts, colLast, colVisible, colID},
			[]any{"network-server-symbolic", destName(d), strconv.Itoa(int(d.Port)), d.Key.Protocol, verdictIcon(d.Flow),
				strconv.FormatUint(d.Flow.Attempts, 10), clock(d.Flow.LastSeen), r.shown, id})
		m.rows[id] = r
		m.destIDs[d.Key] = id
		if r.shown {
			m.nShown++
			m.setAppShown(ar, ar.nShown+1)
		}
	}
	for _, d := range ch.ChangedDests {
		r := m.rows[m.destIDs[d.Key]]
		m.store.SetValue(r.iter, colAttempts, strconv.FormatUint(d.Flow.Attempts, 10))
		m.store.SetValue(r.iter, colLast, clock(d.Flow.LastSeen))
		m.store.SetValue(r.iter, colVerdict, verdictIcon(d.Flow))
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
		m.store.SetValue(r.iter, colAttempts, strconv.FormatUint(a.Attempts, 10))
		m.store.SetValue(r.iter, colLast, clock(a.LastSeen))
	}
}

func (m *Monitor) expand(r *row) {
	if r == nil {
		return
	}
	it, ok := m.filterM.ConvertChildIterToIter(r.iter)
	if !ok {
		return
	}
	if path, err := m.filterM.ToTreeModel().GetPath(it); err == nil {
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

// tick closes a history sample and redraws the sparklines that changed.
func (m *Monitor) tick() {
	for _, a := range m.model.Tick() {
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
	d.grid, _ = gtk.GridNew()
	d.grid.SetRowSpacing(6)
	d.grid.SetColumnSpacing(12)
	d.grid.SetMarginStart(12)
	d.grid.SetMarginEnd(12)
	d.grid.SetMarginTop(12)
	d.grid.SetSizeRequest(260, -1)
	title, _ := gtk.LabelNew("")
	title.SetMarkup("<b>" + glib.MarkupEscapeText(i18n.T("Details")) + "</b>")
	title.SetXAlign(0)
	d.grid.Attach(title, 0, 0, 2, 1)
	for i, k := range []string{"app", "path", "user", "dest", "proto", "verdict", "rule", "counts", "first", "last", "pid"} {
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
		case "first":
			label = i18n.T("First seen")
		case "last":
			label = i18n.T("Last seen")
		case "pid":
			label = i18n.T("Last process")
		}
		l, _ := gtk.LabelNew(label)
		l.SetXAlign(1)
		if sc, err := l.GetStyleContext(); err == nil {
			sc.AddClass("dim-label")
		}
		v, _ := gtk.LabelNew("")
		v.SetXAlign(0)
		v.SetSelectable(true)
		v.SetLineWrap(true)
		v.SetMaxWidthChars(32)
		d.grid.Attach(l, 0, i+1, 1, 1)
		d.grid.Attach(v, 1, i+1, 1, 1)
		d.values[k] = v
	}
	act, _ := gtk.LabelNew(i18n.T("Activity (last minute)"))
	act.SetXAlign(0)
	d.grid.Attach(act, 0, 13, 2, 1)
	d.spark, _ = gtk.DrawingAreaNew()
	d.spark.SetSizeRequest(240, 60)
	d.spark.Connect("draw", func(da *gtk.DrawingArea, cr *cairo.Context) bool {
		drawHistory(cr, float64(da.GetAllocatedWidth()), float64(da.GetAllocatedHeight()), d.hist)
		return false
	})
	d.grid.Attach(d.spark, 0, 14, 2, 1)
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
		d.values["first"].SetText(clock(f.FirstSeen))
		d.values["last"].SetText(clock(f.LastSeen))
		d.values["pid"].SetText(strconv.Itoa(int(f.LastPID)))
	} else {
		key = r.app.Key
		a := r.app
		d.values["dest"].SetText(fmt.Sprintf(i18n.N("%d destination", "%d destinations", a.Dests), a.Dests))
		d.values["counts"].SetText(fmt.Sprintf("%d / %d / %d", a.Allowed, a.Denied, a.Undecided))
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
