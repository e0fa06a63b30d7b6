package monitor

import (
	"fmt"
	"time"

	"github.com/gotk3/gotk3/glib"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/flows"
	"github.com/tattlefw/tattle/shared/api"
)

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
