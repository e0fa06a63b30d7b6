// Package historyview is the History page: the helper's record of connection attempts, newest first, with a
// search over applications, scripts, hosts and addresses, a verdict filter and paging. It reads the history
// through Monitor.History, so a user sees their own processes' entries (everyone's with monitor-all).
package historyview

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/shared/api"
)

// Source reads one page of the history (the client's Monitor.History).
type Source func(ctx context.Context, q api.HistoryQuery) ([]api.HistoryEntry, error)

// PageSize is how many entries one read brings; "Show more" reads the next page.
const PageSize = 200

const (
	colTime = iota
	colIcon
	colApp
	colDest
	colProto
	colVerdictIcon
	colVerdict
	colRule
	nCols
)

// Page is the History page. Create it and call its methods on the main loop.
type Page struct {
	Widget *gtk.Box

	ctx     context.Context
	source  Source
	entries *desktop.Index
	store   *gtk.ListStore
	search  *gtk.SearchEntry
	verdict *gtk.ComboBoxText
	more    *gtk.Button
	status  *gtk.Label

	query api.HistoryQuery // of the rows shown
	shown int
	gen   int // increases with each new query: answers to older ones are dropped
}

// New builds the page. source may be nil (no helper: the page says so).
func New(ctx context.Context, source Source, entries *desktop.Index) *Page {
	p := &Page{ctx: ctx, source: source, entries: entries}
	p.store = ui.Must(gtk.ListStoreNew(glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING,
		glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING, glib.TYPE_STRING))
	view := ui.Must(gtk.TreeViewNewWithModel(p.store))
	view.SetEnableSearch(false)
	view.SetFixedHeightMode(true)
	ui.SetAccessible(view, i18n.T("Connection history"), "")
	column := func(title string, width int, expand bool, cells ...func(c *gtk.TreeViewColumn)) {
		c := ui.Must(gtk.TreeViewColumnNew())
		c.SetTitle(title)
		c.SetResizable(true)
		c.SetSizing(gtk.TREE_VIEW_COLUMN_FIXED)
		c.SetFixedWidth(width)
		c.SetExpand(expand)
		for _, add := range cells {
			add(c)
		}
		view.AppendColumn(c)
	}
	text := func(col int) func(c *gtk.TreeViewColumn) {
		return func(c *gtk.TreeViewColumn) {
			r := ui.Must(gtk.CellRendererTextNew())
			r.SetProperty("ellipsize", 3) // PANGO_ELLIPSIZE_END
			c.PackStart(r, true)
			c.AddAttribute(r, "text", col)
		}
	}
	icon := func(col int) func(c *gtk.TreeViewColumn) {
		return func(c *gtk.TreeViewColumn) {
			r := ui.Must(gtk.CellRendererPixbufNew())
			c.PackStart(r, false)
			c.AddAttribute(r, "icon-name", col)
		}
	}
	column(i18n.T("Time"), 150, false, text(colTime))
	column(i18n.T("Application"), 220, true, icon(colIcon), text(colApp))
	column(i18n.T("Destination"), 260, true, text(colDest))
	column(i18n.T("Protocol"), 80, false, text(colProto))
	column(i18n.T("Verdict"), 110, false, icon(colVerdictIcon), text(colVerdict))
	column(i18n.T("Rule"), 200, true, text(colRule))

	p.search = ui.Must(gtk.SearchEntryNew())
	p.search.SetPlaceholderText(i18n.T("Search applications, scripts, hosts, addresses"))
	p.search.SetHExpand(true)
	ui.SetAccessible(p.search, i18n.T("Search history"), "")
	p.search.Connect("search-changed", func() { p.Load() })
	p.verdict = ui.Must(gtk.ComboBoxTextNew())
	for _, v := range []struct{ id, label string }{{"", i18n.T("All verdicts")}, {"allow", i18n.T("Allowed")},
		{"deny", i18n.T("Denied")}, {"undecided", i18n.T("Asked")}} {
		p.verdict.Append(v.id, v.label)
	}
	p.verdict.SetActiveID("")
	ui.SetAccessible(p.verdict, i18n.T("Verdict"), "")
	p.verdict.Connect("changed", func() { p.Load() })
	refresh := ui.IconButton("view-refresh-symbolic", i18n.T("Refresh"), i18n.T("Read the history again"), func() { p.Load() })
	bar := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6))
	ui.SetMargins(bar, 6)
	bar.PackStart(p.search, true, true, 0)
	bar.PackStart(p.verdict, false, false, 0)
	bar.PackStart(refresh, false, false, 0)

	scroll := ui.Must(gtk.ScrolledWindowNew(nil, nil))
	scroll.SetVExpand(true)
	scroll.Add(view)
	p.status = ui.Must(gtk.LabelNew(""))
	p.status.SetXAlign(0)
	p.status.SetHExpand(true)
	ui.Dim(p.status)
	p.more = ui.Must(gtk.ButtonNewWithLabel(i18n.T("Show more")))
	p.more.SetSensitive(false)
	p.more.Connect("clicked", func() { p.fetch(false) })
	foot := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6))
	foot.SetMarginStart(8)
	foot.SetMarginEnd(6)
	foot.SetMarginBottom(4)
	foot.PackStart(p.status, true, true, 0)
	foot.PackEnd(p.more, false, false, 0)

	p.Widget = ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0))
	p.Widget.PackStart(bar, false, false, 0)
	p.Widget.PackStart(scroll, true, true, 0)
	p.Widget.PackStart(foot, false, false, 0)
	return p
}

// Load reads the first page for the current search and verdict, replacing what is shown.
func (p *Page) Load() { p.fetch(true) }

func (p *Page) fetch(fresh bool) {
	if p.source == nil {
		p.status.SetText(i18n.T("The history is read from tattled, which is not running."))
		return
	}
	if fresh {
		text, _ := p.search.GetText()
		p.query = api.HistoryQuery{Text: text, Verdict: p.verdict.GetActiveID(), Limit: PageSize}
		p.shown = 0
		p.gen++
	}
	q := p.query
	q.Offset = uint32(p.shown)
	gen := p.gen
	p.more.SetSensitive(false)
	p.status.SetText(i18n.T("Reading the history…"))
	ui.Background(func() ([]api.HistoryEntry, error) {
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		defer cancel()
		return p.source(ctx, q)
	}, func(es []api.HistoryEntry, err error) {
		if gen != p.gen {
			return // a newer search replaced this one
		}
		if err != nil {
			p.status.SetText(fmt.Sprintf(i18n.T("The history could not be read: %v"), err))
			return
		}
		if q.Offset == 0 {
			p.store.Clear()
		}
		for _, e := range es {
			p.add(e)
		}
		p.shown += len(es)
		p.more.SetSensitive(len(es) == int(q.Limit))
		p.status.SetText(fmt.Sprintf(i18n.N("%d entry, newest first", "%d entries, newest first", p.shown), p.shown))
	})
}

func (p *Page) add(e api.HistoryEntry) {
	name, icon := i18n.T("Unknown application"), "application-x-executable"
	if e.Exe != "" {
		name, icon = p.entries.App(e.Exe)
	}
	if e.Via != "" {
		// TRANSLATORS: a script and the interpreter that runs it, e.g. "sync-photos.py via Python"
		name = fmt.Sprintf(i18n.T("%s via %s"), filepath.Base(e.Via), name)
	}
	dest := e.Dest
	if e.Host != "" {
		dest = e.Host + " (" + e.Dest + ")"
	}
	it := p.store.Append()
	p.store.Set(it, []int{colTime, colIcon, colApp, colDest, colProto, colVerdictIcon, colVerdict, colRule},
		[]any{time.UnixMilli(e.Time).Local().Format("2006-01-02 15:04:05"), icon, name, dest, e.Protocol,
			verdictIcon(e.Verdict), verdictText(e.Verdict), e.RuleID})
}

func verdictIcon(v string) string {
	switch v {
	case "allow":
		return "object-select-symbolic"
	case "deny":
		return "action-unavailable-symbolic"
	}
	return "user-status-pending-symbolic"
}

func verdictText(v string) string {
	switch v {
	case "allow":
		return i18n.T("Allowed")
	case "deny":
		return i18n.T("Denied")
	}
	return i18n.T("Asked")
}
