package monitor

import (
	"fmt"
	"net"
	"os/user"
	"strconv"

	"github.com/gotk3/gotk3/cairo"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/flows"
	"github.com/tattlefw/tattle/app/tattle/ui"
)

type detail struct {
	grid   *gtk.Grid
	values map[string]*gtk.Label
	spark  *gtk.DrawingArea
	hist   []uint64
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
		ui.Dim(l)
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
