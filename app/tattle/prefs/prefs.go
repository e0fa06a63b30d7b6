// Package prefs is the Preferences page: the helper's settings (mode, default action, question timeout,
// fail policy, history retention), read with Daemon.Settings and written whole with SetSettings, which
// needs an administrator (polkit manage-rules). Apply acts only on the user's own click or key (userinput.Gate):
// polkit keeps an administrator's authorization for minutes, and any program of the user can press buttons
// through AT-SPI. Failures show in the page's message bar.
package prefs

import (
	"context"
	"fmt"
	"strings"

	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/app/tattle/userinput"
	"github.com/tattlefw/tattle/shared/api"
)

// Page is the Preferences page.
type Page struct {
	Widget *gtk.Box

	ctx  context.Context
	cl   *client.Client
	gate *userinput.Gate
	msg  *ui.MessageBar
	// The choices change only by the user's hand (userinput.Choice): a program that picked silent-allow
	// through AT-SPI would otherwise have the user's next Apply save it.
	mode     *userinput.Choice
	defAct   *userinput.Choice
	timeout  *gtk.SpinButton
	fail     *userinput.Choice
	history  *gtk.SpinButton
	apply    *gtk.Button
	settings api.Settings
}

// New builds the page; gate decides whether a press of Apply is the user's.
func New(ctx context.Context, cl *client.Client, gate *userinput.Gate) *Page {
	p := &Page{ctx: ctx, cl: cl, gate: gate, msg: ui.NewMessageBar()}
	grid := ui.Must(gtk.GridNew())
	grid.SetRowSpacing(12)
	grid.SetColumnSpacing(18)
	grid.SetHAlign(gtk.ALIGN_CENTER)
	grid.SetMarginTop(24)
	row := 0
	add := func(label, help string, w gtk.IWidget) {
		l := ui.Must(gtk.LabelNewWithMnemonic(label))
		l.SetXAlign(1)
		l.SetMnemonicWidget(w)
		ui.SetAccessible(w, strings.ReplaceAll(label, "_", ""), help)
		grid.Attach(l, 0, row, 1, 1)
		grid.Attach(w, 1, row, 1, 1)
		h := ui.Must(gtk.LabelNew(help))
		h.SetXAlign(0)
		h.SetLineWrap(true)
		h.SetMaxWidthChars(60)
		ui.Dim(h)
		grid.Attach(h, 1, row+1, 1, 1)
		row += 2
	}
	scripted := func() bool { return p.settings.AllowGUIScripting }
	forged := func() { p.msg.Show(gtk.MESSAGE_WARNING, userinput.Refusal()) }
	combo := func(items ...[2]string) *userinput.Choice {
		c := ui.Must(gtk.ComboBoxTextNew())
		for _, it := range items {
			c.Append(it[0], it[1])
		}
		return userinput.NewChoice(c, scripted, forged)
	}
	p.mode = combo([2]string{api.ModeAlert, i18n.T("Alert: ask about new connections")},
		[2]string{api.ModeSilentAllow, i18n.T("Silent, allow: allow new connections and log them")},
		[2]string{api.ModeSilentDeny, i18n.T("Silent, deny: deny new connections and log them")})
	add(i18n.T("_Mode"), i18n.T("What happens when an application connects somewhere no rule covers."), p.mode.Combo)
	p.defAct = combo([2]string{api.DefaultDeny, i18n.T("Deny")}, [2]string{api.DefaultAllow, i18n.T("Allow")})
	add(i18n.T("_Unanswered questions"), i18n.T("Applied once when nobody answers a question in time."), p.defAct.Combo)
	p.timeout = ui.Must(gtk.SpinButtonNewWithRange(api.MinQuestionTimeout, api.MaxQuestionTimeout, 1))
	add(i18n.T("Question _timeout (seconds)"), i18n.T("How long a held connection waits for an answer."), p.timeout)
	p.fail = combo([2]string{api.FailPass, i18n.T("Let new connections through")}, [2]string{api.FailDrop, i18n.T("Hold new connections back")})
	add(i18n.T("While the service is _stopped"), i18n.T("What happens to connections no rule decides while tattled is not running."), p.fail.Combo)
	p.history = ui.Must(gtk.SpinButtonNewWithRange(1, api.MaxHistoryDays, 1))
	add(i18n.T("Keep _history (days)"), i18n.T("Connection history older than this is deleted."), p.history)

	p.apply = ui.Must(gtk.ButtonNewWithMnemonic(i18n.T("_Apply")))
	if sc, err := p.apply.GetStyleContext(); err == nil {
		sc.AddClass("suggested-action")
	}
	p.apply.SetHAlign(gtk.ALIGN_END)
	// A refused Apply reloads the page, so it shows the settings in force, not what another program chose.
	p.apply.Connect("clicked", func() { p.gate.Do(p.msg, "apply the settings", p.save, p.Load) })
	grid.Attach(p.apply, 1, row, 1, 1)

	p.Widget = ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0))
	p.Widget.PackStart(p.msg.Bar, false, false, 0)
	p.Widget.PackStart(grid, false, false, 0)
	return p
}

// FocusMode puts the keyboard on the mode's choice (the tray's "Change Mode" opens the page there).
func (p *Page) FocusMode() { p.mode.Combo.GrabFocus() }

// Load reads the settings from the helper.
func (p *Page) Load() {
	ui.Background(func() (api.Settings, error) { return p.cl.Settings(p.ctx) }, func(s api.Settings, err error) {
		if err != nil {
			p.apply.SetSensitive(false)
			p.msg.Show(gtk.MESSAGE_ERROR, fmt.Sprintf(i18n.T("Cannot read the settings from the Tattle service: %s"), err))
			return
		}
		p.settings = s
		p.apply.SetSensitive(true)
		p.mode.Set(s.Mode)
		p.defAct.Set(s.DefaultAction)
		p.timeout.SetValue(float64(s.QuestionTimeout))
		p.fail.Set(s.FailPolicy)
		p.history.SetValue(float64(s.HistoryDays))
	})
}

func (p *Page) save() {
	// Settings this page does not show keep the values the helper has.
	s := p.settings
	s.Mode, s.DefaultAction, s.FailPolicy = p.mode.ID(), p.defAct.ID(), p.fail.ID()
	s.QuestionTimeout, s.HistoryDays = uint32(p.timeout.GetValueAsInt()), uint32(p.history.GetValueAsInt())
	ui.Background(func() (struct{}, error) { return struct{}{}, p.cl.SetSettings(p.ctx, s) }, func(_ struct{}, err error) {
		if err != nil {
			msg := fmt.Sprintf(i18n.T("The settings were not changed: %s"), err)
			if client.KindOf(err) == client.AccessDenied {
				msg = i18n.T("The settings were not changed: changing them needs an administrator's password, and no authentication agent of the desktop answered (is a polkit agent running in this session?).")
			}
			p.msg.Show(gtk.MESSAGE_ERROR, msg)
			return
		}
		p.settings = s
		p.msg.Show(gtk.MESSAGE_INFO, i18n.T("Settings saved."))
	})
}
