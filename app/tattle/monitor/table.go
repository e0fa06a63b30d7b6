package monitor

import (
	"strconv"

	"github.com/gotk3/gotk3/gdk"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/flows"
	"github.com/tattlefw/tattle/app/tattle/ui"
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

type row struct {
	iter   *gtk.TreeIter
	app    *flows.App  // application rows
	dest   *flows.Dest // destination rows
	shown  bool
	nShown int // application rows: destinations shown
}

// buildTable makes the tree store, the filter and sort models above it, and the view with its columns.
func (m *Monitor) buildTable() {
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

// cols are a row's new values by column.
type cols map[int]any

func (m *Monitor) setCols(it *gtk.TreeIter, c cols) {
	columns, values := make([]int, 0, len(c)), make([]any, 0, len(c))
	for col, v := range c {
		columns, values = append(columns, col), append(values, v)
	}
	ui.SetRow(m.store, it, columns, values)
}
