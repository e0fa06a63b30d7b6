package monitor

import (
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
)

// filterBar makes the search field and the verdict toggles above the list.
func (m *Monitor) filterBar() *gtk.Box {
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
	ui.SetMargins(bar, 6)
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
	return bar
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
