package rulesview

import (
	"time"

	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/app/tattle/userinput"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// runDialog edits a rule (base nil: a new one) and returns it validated; false when the user cancelled.
// Invalid input keeps the dialog open with the validator's message under the fields.
func runDialog(parent *gtk.Window, base *api.Rule, uid uint32) (r api.Rule, ok, real bool) {
	title := i18n.T("New rule")
	f := Form{Application: rules.Any, Remote: rules.Any, Port: rules.Any, Protocol: rules.Any,
		Action: rules.ActionAllow, Duration: rules.DurationForever, Enabled: true}
	if base != nil {
		title = i18n.T("Edit rule")
		f = FormOf(*base)
	}
	d := ui.Must(gtk.DialogNewWithButtons(title, parent, gtk.DIALOG_MODAL|gtk.DIALOG_DESTROY_WITH_PARENT,
		[]any{i18n.T("_Cancel"), gtk.RESPONSE_CANCEL}, []any{i18n.T("_Save"), gtk.RESPONSE_ACCEPT}))
	d.SetDefaultResponse(gtk.RESPONSE_ACCEPT)
	area := ui.Must(d.GetContentArea())
	grid := ui.Must(gtk.GridNew())
	grid.SetRowSpacing(8)
	grid.SetColumnSpacing(12)
	ui.SetMargins(grid, 12)
	area.Add(grid)

	row := 0
	add := func(label string, w gtk.IWidget) {
		l := ui.Must(gtk.LabelNewWithMnemonic(label))
		l.SetXAlign(1)
		l.SetMnemonicWidget(w)
		grid.Attach(l, 0, row, 1, 1)
		grid.Attach(w, 1, row, 1, 1)
		row++
	}
	entry := func(text, placeholder, name string) *gtk.Entry {
		e := ui.Must(gtk.EntryNew())
		e.SetText(text)
		e.SetPlaceholderText(placeholder)
		e.SetWidthChars(36)
		e.SetActivatesDefault(true)
		ui.SetAccessible(e, name, "")
		return e
	}
	combo := func(active string, items ...[2]string) *gtk.ComboBoxText {
		c := ui.Must(gtk.ComboBoxTextNew())
		for _, it := range items {
			c.Append(it[0], it[1])
		}
		c.SetActiveID(active)
		return c
	}
	app := entry(f.Application, "/usr/bin/curl, flatpak:org.example.App, any", i18n.T("Application"))
	add(i18n.T("_Application"), app)
	remote := entry(f.Remote, "host:example.com, domain:example.com, 192.0.2.1, 10.0.0.0/8, any", i18n.T("Remote"))
	add(i18n.T("_Remote"), remote)
	port := entry(f.Port, "443, 8000-8100, any", i18n.T("Port"))
	add(i18n.T("_Port"), port)
	proto := combo(f.Protocol, [2]string{rules.Any, i18n.T("Any protocol")}, [2]string{rules.ProtocolTCP, "TCP"}, [2]string{rules.ProtocolUDP, "UDP"})
	add(i18n.T("Pro_tocol"), proto)
	action := combo(f.Action, [2]string{rules.ActionAllow, i18n.T("Allow")}, [2]string{rules.ActionDeny, i18n.T("Deny")})
	add(i18n.T("A_ction"), action)
	duration := combo(f.Duration,
		[2]string{rules.DurationForever, i18n.T("Forever")},
		[2]string{rules.DurationUntilRestart, i18n.T("Until restart")},
		[2]string{rules.DurationUntilTime, i18n.T("For one hour")},
		[2]string{rules.DurationUntilQuit, i18n.T("Until the application quits")},
		[2]string{rules.DurationOnce, i18n.T("Once")})
	add(i18n.T("_Duration"), duration)
	note := entry(f.Note, "", i18n.T("Note"))
	add(i18n.T("_Note"), note)
	system := ui.Must(gtk.CheckButtonNewWithMnemonic(i18n.T("For _all users (needs an administrator)")))
	system.SetActive(f.System)
	grid.Attach(system, 1, row, 1, 1)
	row++
	problem := ui.Must(gtk.LabelNew(""))
	problem.SetLineWrap(true)
	problem.SetMaxWidthChars(50)
	problem.SetXAlign(0)
	if sc, err := problem.GetStyleContext(); err == nil {
		sc.AddClass("error")
	}
	grid.Attach(problem, 0, row, 2, 1)
	d.ShowAll()
	defer d.Destroy()
	for {
		resp, real := userinput.Run(d)
		if resp != gtk.RESPONSE_ACCEPT {
			return api.Rule{}, false, false
		}
		f.Application, _ = app.GetText()
		f.Remote, _ = remote.GetText()
		f.Port, _ = port.GetText()
		f.Protocol = proto.GetActiveID()
		f.Action = action.GetActiveID()
		f.Duration = duration.GetActiveID()
		f.Note, _ = note.GetText()
		f.System = system.GetActive()
		if f.Duration == rules.DurationUntilTime && (base == nil || base.Duration != rules.DurationUntilTime) {
			f.Until = time.Now().Add(time.Hour)
		}
		r, err := f.Rule(base, uid)
		if err == nil {
			return r, true, real
		}
		problem.SetText(err.Error())
	}
}
