// Package alert is the window that asks the user about a held connection. One window shows the oldest open
// question and says how many more wait. It stays above other windows and marks itself urgent, but takes no
// keyboard focus until the user clicks it, so typing elsewhere never lands in it by accident; then its
// mnemonics (Alt+A allow, Alt+D deny) work. A countdown shows when the default applies. When the window
// manager keeps it from the front anyway, a notification (Fallback) offers to bring it up.
package alert

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gotk3/gotk3/gdk"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/notify"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/app/tattle/userinput"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// ForTime is how long an answer "for a time" lasts.
const ForTime = time.Hour

// armDelay is how long after a question appears its buttons do nothing: the user may have been typing or
// clicking in another window at that moment (issue 17).
const armDelay = 500 * time.Millisecond

// raiseSettle is how long after a question's alert was shown the window manager's stacking is read to tell
// whether it kept the alert from the front: long enough for it to map and stack a new window.
const raiseSettle = 400 * time.Millisecond

// Fallback brings the alert to the user's notice when the window manager kept it from the front
// (notify.Async): Show puts up a notification whose only action calls Present, replacing the one shown;
// Withdraw takes it away. Both must return at once: they are called on the main loop.
type Fallback interface {
	Show(msg notify.Message)
	Withdraw()
}

// Window is the alert. Use it on the main loop only.
type Window struct {
	win     *gtk.Window
	entries *desktop.Index
	answer  func(id uint64, a api.Answer)

	current  *api.Question
	icon     *gtk.Image
	title    *gtk.Label
	values   map[string]*gtk.Label
	captions map[string]*gtk.Label // the dim label beside each value
	// scope and duration change only by the user's hand: a program that picked "Any connection, forever"
	// through AT-SPI just before the user's click on Allow would otherwise get that rule.
	scope    *userinput.Choice
	duration *userinput.Choice
	countdn  *gtk.Label
	more     *gtk.Label
	allow    *gtk.Button
	deny     *gtk.Button
	ignored  *gtk.Label
	shownAt  time.Time // when the current question was shown: answers wait armDelay from then
	// engaged: the user clicked the alert (with real input) since the current
	// question was shown; until then keys do not answer. A compositor may give the new window the keyboard
	// (GNOME Shell on Wayland does: GTK 3 cannot ask it not to), and Return or space typed for another
	// window must not press a button.
	engaged bool
	notice  *gtk.Label // what is special about this question: a system process, a changed program
	ticking bool

	fallback Fallback // nil: no notifications
	name     string   // the application and destination of the current question, as the title names them
	where    string

	// scripting tells whether the administrator lets accessibility actions and synthetic input answer
	// (Settings.AllowGUIScripting), asked afresh each time a question is shown; until it says yes, only the
	// user's real input does. Any program of the user can drive the app through AT-SPI: it must not be able
	// to press Allow.
	scripting    func() (bool, error)
	scriptingOK  bool
	scriptingFor uint64 // the question the answer is about
}

// New builds the (hidden) alert window. answer is called when the user decides. scripting reads whether
// accessibility actions and synthetic input may answer (nil: never).
func New(app *gtk.Application, entries *desktop.Index, answer func(id uint64, a api.Answer), scripting func() (bool, error)) *Window {
	w := &Window{entries: entries, answer: answer, scripting: scripting, values: map[string]*gtk.Label{}, captions: map[string]*gtk.Label{}}
	w.win = ui.Must(gtk.WindowNew(gtk.WINDOW_TOPLEVEL))
	app.AddWindow(w.win)
	w.win.SetTitle(i18n.T("Tattle: allow this connection?"))
	w.win.SetRole("tattle-alert")
	w.win.SetResizable(false)
	w.win.SetKeepAbove(true)
	w.win.SetTypeHint(gdk.WINDOW_TYPE_HINT_DIALOG)
	w.win.SetSkipTaskbarHint(false)
	w.win.SetIconName("io.github.tattlefw.Tattle")
	w.win.Connect("delete-event", func() bool {
		// Closing the window is not an answer: the question keeps waiting (the default applies at its deadline).
		w.win.Hide()
		return true
	})
	// A click on the window means the user is now dealing with it: let it take the keyboard. Only the user's
	// own click: on Xwayland another X client could click with XTEST to pull the keyboard here and engage the
	// alert, and the user's next Return would then press a button.
	w.win.AddEvents(int(gdk.BUTTON_PRESS_MASK))
	w.win.Connect("button-press-event", func() bool {
		if userinput.Real() {
			w.takeFocus()
		}
		return false
	})

	box := ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 12))
	ui.SetMargins(box, 18)
	w.win.Add(box)

	head := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 12))
	w.icon = ui.Must(gtk.ImageNewFromIconName("application-x-executable", gtk.ICON_SIZE_DIALOG))
	w.icon.SetPixelSize(48)
	head.PackStart(w.icon, false, false, 0)
	w.title = ui.Must(gtk.LabelNew(""))
	w.title.SetLineWrap(true)
	w.title.SetMaxWidthChars(44)
	w.title.SetXAlign(0)
	head.PackStart(w.title, true, true, 0)
	box.PackStart(head, false, false, 0)

	grid := ui.Must(gtk.GridNew())
	grid.SetRowSpacing(4)
	grid.SetColumnSpacing(12)
	row := 0
	addValue := func(key, label string) {
		l := ui.Must(gtk.LabelNew(label))
		l.SetXAlign(1)
		l.SetYAlign(0)
		ui.Dim(l)
		v := ui.Must(gtk.LabelNew(""))
		v.SetXAlign(0)
		v.SetSelectable(true)
		v.SetCanFocus(false)
		v.SetLineWrap(true)
		v.SetMaxWidthChars(48)
		grid.Attach(l, 0, row, 1, 1)
		grid.Attach(v, 1, row, 1, 1)
		w.values[key] = v
		w.captions[key] = l
		row++
	}
	addValue("dest", i18n.T("Destination"))
	addValue("proto", i18n.T("Protocol"))
	addValue("path", i18n.T("Path"))
	addValue("via", i18n.T("Via"))
	// Only an interpreter's question has a script: the row is shown for those alone (never by ShowAll).
	w.captions["via"].SetNoShowAll(true)
	w.values["via"].SetNoShowAll(true)
	addValue("pid", i18n.T("Process"))
	addValue("user", i18n.T("User"))
	box.PackStart(grid, false, false, 0)

	choices := ui.Must(gtk.GridNew())
	choices.SetRowSpacing(6)
	choices.SetColumnSpacing(12)
	scripted := func() bool { return w.current != nil && w.scriptingOK && w.scriptingFor == w.current.ID }
	forged := func() {
		slog.Warn("undid a change of the alert's choices that came from no real input")
		w.ignored.SetText(i18n.T("A program tried to change your choice; it was put back. Use your mouse or keyboard."))
		w.ignored.Show()
	}
	w.scope = userinput.NewChoice(ui.Must(gtk.ComboBoxTextNew()), scripted, forged)
	w.duration = userinput.NewChoice(ui.Must(gtk.ComboBoxTextNew()), scripted, forged)
	for _, d := range []struct{ id, label string }{
		{rules.DurationOnce, i18n.T("Once")},
		{rules.DurationUntilQuit, i18n.T("Until the application quits")},
		{rules.DurationUntilRestart, i18n.T("Until restart")},
		{rules.DurationUntilTime, i18n.T("For one hour")},
		{rules.DurationForever, i18n.T("Forever")},
	} {
		w.duration.Combo.Append(d.id, d.label)
	}
	ui.SetAccessible(w.scope.Combo, i18n.T("Scope"), "")
	ui.SetAccessible(w.duration.Combo, i18n.T("Duration"), "")
	sl := ui.Must(gtk.LabelNewWithMnemonic(i18n.T("_Connections")))
	sl.SetMnemonicWidget(w.scope.Combo)
	sl.SetXAlign(1)
	dl := ui.Must(gtk.LabelNewWithMnemonic(i18n.T("_For")))
	dl.SetMnemonicWidget(w.duration.Combo)
	dl.SetXAlign(1)
	choices.Attach(sl, 0, 0, 1, 1)
	choices.Attach(w.scope.Combo, 1, 0, 1, 1)
	choices.Attach(dl, 0, 1, 1, 1)
	choices.Attach(w.duration.Combo, 1, 1, 1, 1)
	box.PackStart(choices, false, false, 0)

	w.countdn = ui.Must(gtk.LabelNew(""))
	w.countdn.SetXAlign(0)
	w.more = ui.Must(gtk.LabelNew(""))
	w.more.SetXAlign(0)
	ui.Dim(w.more)
	box.PackStart(w.countdn, false, false, 0)
	box.PackStart(w.more, false, false, 0)
	w.notice = ui.Must(gtk.LabelNew(""))
	w.notice.SetXAlign(0)
	w.notice.SetLineWrap(true)
	w.notice.SetMaxWidthChars(48)
	w.notice.SetNoShowAll(true) // shown only when there is something to say
	box.PackStart(w.notice, false, false, 0)
	box.ReorderChild(w.notice, 1) // right under the title
	w.ignored = ui.Must(gtk.LabelNew(""))
	w.ignored.SetXAlign(0)
	w.ignored.SetLineWrap(true)
	w.ignored.SetMaxWidthChars(48)
	w.ignored.SetNoShowAll(true)
	if sc, err := w.ignored.GetStyleContext(); err == nil {
		sc.AddClass("error")
	}
	box.PackStart(w.ignored, false, false, 0)

	buttons := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 12))
	buttons.SetHomogeneous(true)
	w.deny = ui.Must(gtk.ButtonNewWithMnemonic(i18n.T("_Deny")))
	w.allow = ui.Must(gtk.ButtonNewWithMnemonic(i18n.T("_Allow")))
	if sc, err := w.deny.GetStyleContext(); err == nil {
		sc.AddClass("destructive-action")
	}
	if sc, err := w.allow.GetStyleContext(); err == nil {
		sc.AddClass("suggested-action")
	}
	ui.SetAccessible(w.allow, i18n.T("Allow"), "")
	ui.SetAccessible(w.deny, i18n.T("Deny"), "")
	w.deny.Connect("clicked", func() { w.decide(rules.ActionDeny) })
	w.allow.Connect("clicked", func() { w.decide(rules.ActionAllow) })
	// A mnemonic (Alt+A, Alt+D) is decided on its own key press. GTK would press the button and click it on
	// the key's release, which reaches the button only when it has the focus; otherwise a timer clicks it, with
	// no event to tell the user's key from a program's.
	for _, b := range []struct {
		button *gtk.Button
		action string
	}{{w.deny, rules.ActionDeny}, {w.allow, rules.ActionAllow}} {
		b.button.Connect("mnemonic-activate", func(_ *gtk.Button, groupCycling bool) bool {
			if groupCycling {
				return false // another widget shares the mnemonic: GTK only moves the focus
			}
			w.decide(b.action)
			return true
		})
	}
	buttons.PackStart(w.deny, true, true, 0)
	buttons.PackStart(w.allow, true, true, 0)
	box.PackEnd(buttons, false, false, 0)
	if userinput.OnX11() {
		// Said where the user decides: on X11 the alert cannot tell a program's fake clicks from the user's.
		x11 := ui.Must(gtk.LabelNew(i18n.T("On X11, other programs can fake clicks and keys; a Wayland session prevents that.")))
		x11.SetXAlign(0)
		x11.SetLineWrap(true)
		x11.SetMaxWidthChars(48)
		ui.Dim(x11)
		box.PackEnd(x11, false, false, 0)
	}
	box.ShowAll()
	if moveToXwayland(w.win) {
		slog.Info("the alert shows on Xwayland, where it can appear without taking the keyboard")
	}
	return w
}

// Update shows the oldest of the open questions, or hides the window when there are none.
func (w *Window) Update(queue []api.Question) {
	if len(queue) == 0 {
		w.current = nil
		w.win.Hide()
		w.withdraw()
		return
	}
	q := queue[0]
	if w.current == nil || w.current.ID != q.ID {
		w.show(q)
	}
	if n := len(queue) - 1 + int(q.Waiting); n > 0 {
		w.more.SetText(fmt.Sprintf(i18n.N("%d more waiting", "%d more waiting", n), n))
		w.more.Show()
	} else {
		w.more.SetText("")
	}
	w.win.SetUrgencyHint(true)
}

// SetFallback sets what brings the alert up when the window manager keeps it from the front.
func (w *Window) SetFallback(f Fallback) {
	w.fallback = f
}

// Present brings the alert to the front and gives it the keyboard: the notification's action. Whoever sent
// that (any program of the user can emit the signal, see package notify), it does only what a new question
// does by itself: it does not engage the alert, so keys still do not answer until the user clicks it, and
// it starts the arm delay again, so a click meant for the window that was in front does not answer either.
func (w *Window) Present() {
	if w.current == nil {
		return
	}
	w.shownAt = time.Now()
	w.win.ShowAll()
	w.win.SetAcceptFocus(true)
	// No user event comes with a D-Bus signal: on X the server's time now (openbox, for one, then lets the
	// alert in front unless the user was busy in another window in the last half second).
	t := x11ServerTime(w.win)
	if t == 0 {
		t = userinput.EventTime()
	}
	w.win.PresentWithTime(t)
	w.withdraw()
}

// withdraw takes the notification away: the alert is up, or its question settled.
func (w *Window) withdraw() {
	if w.fallback != nil {
		w.fallback.Withdraw()
	}
}

// checkRaised tells, raiseSettle after the question id was shown, whether the window manager kept the alert
// from the front, and notifies if so; otherwise it withdraws the notification of an earlier question.
func (w *Window) checkRaised(id uint64) {
	if w.fallback == nil || w.current == nil || w.current.ID != id {
		return
	}
	if w.engaged || !w.win.GetVisible() || !raiseRefused(w.win) {
		// Up in front, or the user already turned to it or closed it: they have seen it.
		w.withdraw()
		return
	}
	slog.Info("the window manager kept the alert from the front; showing a notification", "question", id)
	w.fallback.Show(notify.Message{
		AppName: i18n.T("Tattle"),
		AppIcon: "io.github.tattlefw.Tattle",
		Desktop: "io.github.tattlefw.Tattle",
		// TRANSLATORS: a notification's summary, plain text: the application's name, then the destination.
		Summary: fmt.Sprintf(i18n.T("%s wants to connect to %s"), w.name, w.where),
		Body:    i18n.T("Another window covers Tattle's alert. Show the alert to allow or deny; this notification cannot answer."),
		// TRANSLATORS: the notification's one action: it brings up the alert window, it does not answer.
		ShowLabel: i18n.T("Show the alert"),
	})
}

// Current is the question shown, if any.
func (w *Window) Current() (api.Question, bool) {
	if w.current == nil {
		return api.Question{}, false
	}
	return *w.current, true
}

func (w *Window) show(q api.Question) {
	w.current = &q
	w.shownAt = time.Now()
	w.engaged = false
	w.ignored.SetText("")
	w.ignored.Hide()
	w.scriptingOK, w.scriptingFor = false, q.ID
	if w.scripting != nil {
		id := q.ID
		ui.Background(w.scripting, func(ok bool, err error) {
			if err == nil && w.scriptingFor == id {
				w.scriptingOK = ok
			}
		})
	}
	name, icon := filepath.Base(q.Exe), "application-x-executable"
	if e, ok := w.entries.Lookup(q.Exe); ok {
		name = e.Name
		if e.Icon != "" && !filepath.IsAbs(e.Icon) {
			icon = e.Icon
		}
	}
	if q.Via != "" {
		// The script is the application the user knows; the interpreter only runs it.
		name = fmt.Sprintf(i18n.T("%s via %s"), filepath.Base(q.Via), name)
	}
	w.icon.SetFromIconName(icon, gtk.ICON_SIZE_DIALOG)
	dest := q.Addr
	if q.Host != "" {
		dest = q.Host
	}
	w.title.SetMarkup(fmt.Sprintf(i18n.T("<b>%s</b> wants to connect to <b>%s</b>"),
		glib.MarkupEscapeText(name), glib.MarkupEscapeText(dest)))
	where := net(q)
	switch {
	case q.Port == api.DNSPort:
		where = fmt.Sprintf(i18n.T("DNS server %s"), q.Addr)
	case q.Host != "":
		where = q.Host + " (" + where + ")"
	case q.Reverse != "":
		where = fmt.Sprintf(i18n.T("%s (reverse name %s)"), where, q.Reverse)
	}
	if q.PortCount > 1 {
		where = q.Host
		if where == "" {
			where = q.Addr
		}
		where += " · " + portsLabel(q)
	}
	w.values["dest"].SetText(where)
	w.name, w.where = name, where
	var notes []string
	if q.System {
		notes = append(notes, i18n.T("<b>System process.</b> Your answer makes a rule for all users."))
	}
	if q.Changed {
		notes = append(notes, i18n.T("<b>Changed program.</b> Its file changed since a rule was made for it."))
	}
	w.notice.SetMarkup(strings.Join(notes, "\n"))
	w.notice.SetVisible(len(notes) > 0)
	w.values["proto"].SetText(protoName(q.Protocol))
	path := q.Exe
	if q.Package != "" && q.Package != q.Exe {
		path += " · " + q.Package
	}
	w.values["path"].SetText(path)
	via := q.Via
	if _, interp := identity.InterpreterNamed(filepath.Base(q.Exe)); via == "" && interp {
		// An interpreter with no script: the answer is about the interpreter itself, every use of it.
		via = i18n.T("no script: the interpreter itself (a command line, a REPL or standard input)")
	}
	w.values["via"].SetText(via)
	for _, l := range []*gtk.Label{w.captions["via"], w.values["via"]} {
		l.SetVisible(via != "")
	}
	w.values["pid"].SetText(fmt.Sprintf("%s (%s %d)", q.Comm, i18n.T("PID"), q.PID))
	w.values["user"].SetText(q.User)
	if q.System {
		w.values["user"].SetText(fmt.Sprintf(i18n.T("%s (system)"), q.User))
	}

	w.scope.Rebuild(func() {
		sc := w.scope.Combo
		sc.RemoveAll()
		host := q.Host
		if host == "" {
			host = q.Addr
		}
		if q.PortCount > 1 {
			// The rule an answer makes for a question of several ports covers the host on any port.
			sc.Append(api.ScopeHost, fmt.Sprintf(i18n.T("To %s on any port"), host))
		} else {
			sc.Append(api.ScopeHost, fmt.Sprintf(i18n.T("To %s on port %d"), host, q.Port))
		}
		if q.Host != "" {
			sc.Append(api.ScopeDomain, fmt.Sprintf(i18n.T("To any host in %s"), Domain(q)))
		}
		sc.Append(api.ScopePort, fmt.Sprintf(i18n.T("To any host on port %d"), q.Port))
		sc.Append(api.ScopeAny, i18n.T("Any connection"))
		sc.SetActiveID(api.ScopeHost)
	})
	w.duration.Set(rules.DurationForever)
	// Each question starts at its first choice, not on a button the previous one left focused, where a Return
	// would press it once the user turns to the alert.
	w.scope.Combo.GrabFocus()

	// Shown without taking the keyboard: typing elsewhere goes on undisturbed until the user clicks here.
	w.win.SetAcceptFocus(false)
	w.win.SetFocusOnMap(false)
	x, y, placed := w.activeMonitorPlace()
	if placed {
		w.win.Move(x, y)
	}
	w.win.ShowAll()
	if placed {
		// GTK applies a move made while the window is hidden at its first map only: shown again for a later
		// question the alert would appear where the last one was. Moved when mapped, it asks the window manager.
		w.win.Move(x, y)
	}
	w.updateCountdown()
	id := q.ID
	glib.TimeoutAdd(uint(raiseSettle/time.Millisecond), func() bool {
		w.checkRaised(id)
		return false
	})
	if !w.ticking {
		w.ticking = true
		glib.TimeoutAdd(250, func() bool {
			if w.current == nil {
				w.ticking = false
				return false
			}
			w.updateCountdown()
			return true
		})
	}
}

// activeMonitorPlace is where the window goes: the top right of the monitor of the active window, the one
// the user types into (X11), else of the pointer; the user may work with the keyboard on one monitor while the
// pointer rests on another. False when the app does not place it: Wayland compositors place windows
// themselves, X ones on Xwayland too.
func (w *Window) activeMonitorPlace() (x, y int, ok bool) {
	if onXwayland(w.win) {
		// The compositor places X windows too, on the pointer's monitor (Mutter; KWin by default, else on the
		// active window's), which is the active window's when the user clicked into it; the X pointer is only
		// known while it is over an X window, the active Wayland window not at all.
		return 0, 0, false
	}
	if !userinput.OnX11() {
		return 0, 0, false
	}
	display, err := gdk.DisplayGetDefault()
	if err != nil {
		return 0, 0, false
	}
	x, y, active := x11ActiveCentre(w.win)
	if !active {
		seat, err := display.GetDefaultSeat()
		if err != nil {
			return 0, 0, false
		}
		pointer, err := seat.GetPointer()
		if err != nil {
			return 0, 0, false
		}
		if err := pointer.GetPosition(nil, &x, &y); err != nil {
			return 0, 0, false
		}
	}
	mon, err := display.GetMonitorAtPoint(x, y)
	if err != nil || mon == nil {
		return 0, 0, false
	}
	area := mon.GetWorkarea()
	width, _ := w.win.GetSize()
	if width < 420 {
		width = 420
	}
	return area.GetX() + area.GetWidth() - width - 24, area.GetY() + 24, true
}

func (w *Window) takeFocus() {
	if w.current == nil {
		return
	}
	if time.Since(w.shownAt) >= armDelay {
		// A click as the alert appeared was meant for another window: it does not engage the alert.
		w.engaged = true
	}
	w.win.SetAcceptFocus(true)
	w.withdraw()
	if onXwayland(w.win) {
		xwaylandTakeFocus(w.win, userinput.EventTime())
	}
	// The click's own time: an X window manager (on Xwayland too) weighs it against the focused window's last
	// input before it moves the keyboard.
	w.win.PresentWithTime(userinput.EventTime())
}

func (w *Window) updateCountdown() {
	if w.current == nil {
		return
	}
	left := time.Until(time.UnixMilli(w.current.Deadline)).Round(time.Second)
	if left < 0 {
		left = 0
	}
	secs := int(left / time.Second)
	if w.current.Default == api.DefaultAllow {
		w.countdn.SetText(fmt.Sprintf(i18n.N("Allowed once in %d second unless you decide", "Allowed once in %d seconds unless you decide", secs), secs))
	} else {
		w.countdn.SetText(fmt.Sprintf(i18n.N("Denied once in %d second unless you decide", "Denied once in %d seconds unless you decide", secs), secs))
	}
}

func (w *Window) decide(action string) {
	if w.current == nil {
		return
	}
	if !userinput.Real() && !(w.scriptingOK && w.scriptingFor == w.current.ID) {
		// Not the user's hand: another program pressing the button through AT-SPI or sending events.
		slog.Warn("ignored an answer that came from no real input", "question", w.current.ID, "action", action)
		w.ignored.SetText(i18n.T("A program tried to answer for you; it was ignored. Use your mouse or keyboard."))
		w.ignored.Show()
		return
	}
	if userinput.Key() && !w.engaged {
		slog.Info("ignored a key answering the alert before the user turned to it", "question", w.current.ID, "action", action)
		return
	}
	if time.Since(w.shownAt) < armDelay {
		// Appeared under the user's hands: a key or click meant for another window must not answer it.
		slog.Info("ignored an answer in the alert's first moment", "question", w.current.ID, "action", action)
		return
	}
	a := api.Answer{Action: action, Scope: w.scope.ID(), Duration: w.duration.ID()}
	if a.Duration == rules.DurationUntilTime {
		a.Until = time.Now().Add(ForTime).Unix()
	}
	id := w.current.ID
	w.current = nil
	w.withdraw()
	w.answer(id, a)
}

// Domain is what the domain scope covers for a question: the helper's own Domain (the registrable domain by
// the public suffix list, rules.RegistrableDomain), so the label and the rule made agree.
func Domain(q api.Question) string {
	if q.Domain != "" {
		return q.Domain
	}
	return rules.RegistrableDomain(q.Host)
}

func net(q api.Question) string {
	addr := q.Addr
	for i := 0; i < len(addr); i++ {
		if addr[i] == ':' {
			addr = "[" + addr + "]"
			break
		}
	}
	return addr + ":" + strconv.Itoa(int(q.Port))
}

func protoName(p string) string {
	switch p {
	case "tcp":
		return "TCP"
	case "udp":
		return "UDP"
	}
	return p
}

// portsLabel names the ports of a question of several: "3,000 ports (22, 80, 443, …)".
func portsLabel(q api.Question) string {
	shown := q.Ports
	if len(shown) > 6 {
		shown = shown[:6]
	}
	list := make([]string, len(shown))
	for i, p := range shown {
		list[i] = strconv.Itoa(int(p))
	}
	if int(q.PortCount) > len(shown) {
		list = append(list, "…")
	}
	return fmt.Sprintf(i18n.N("%s port (%s)", "%s ports (%s)", int(q.PortCount)), i18n.Thousands(uint64(q.PortCount)), strings.Join(list, ", "))
}
