package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/agent"
	"github.com/tattlefw/tattle/app/tattle/alert"
	"github.com/tattlefw/tattle/app/tattle/desktop"
	"github.com/tattlefw/tattle/app/tattle/historyview"
	"github.com/tattlefw/tattle/app/tattle/monitor"
	"github.com/tattlefw/tattle/app/tattle/prefs"
	"github.com/tattlefw/tattle/app/tattle/rulesview"
	"github.com/tattlefw/tattle/app/tattle/stall"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/app/tattle/userinput"
	"github.com/tattlefw/tattle/shared/api"
)

// session is the running app: its window, its connection to tattled and its agent. Everything here runs on
// the GTK main loop unless noted.
type session struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	app    *gtk.Application
	cl     *client.Client
	win    *gtk.ApplicationWindow
	stack  *gtk.Stack
	msg    *ui.MessageBar
	// asked says who is asked about this user's connections when it is not simply this app (another agent
	// took over, or the helper refused this app): a bar of its own, so no passing message hides it.
	asked *ui.MessageBar
	mon   *monitor.Monitor
	rules *rulesview.Page
	prefs *prefs.Page
	hist  *historyview.Page
	alert *alert.Window
	agent *agent.Agent
	tray  *trayUI // nil without a session bus
	// notified is closed when the alert's notification is withdrawn at the end (nil: no notifications).
	notified chan struct{}
}

func startSession(parent context.Context, app *gtk.Application, log *slog.Logger) *session {
	ctx, cancel := context.WithCancel(parent)
	s := &session{ctx: ctx, cancel: cancel, log: log, app: app, msg: ui.NewMessageBar(), asked: ui.NewMessageBar()}
	// The app stays running with its window closed: it is the agent that asks about new connections.
	app.Hold()
	userinput.Watch()
	entries := desktop.Load(desktop.DataDirs())

	quit := glib.SimpleActionNew("quit", nil)
	quit.Connect("activate", func() { app.Quit() })
	app.AddAction(quit)
	app.SetAccelsForAction("app.quit", []string{"<Primary>q"})

	// show-page opens the window on a page (monitor, rules, preferences): used by the tray's menu, by other
	// programs through org.gtk.Actions on the session bus, and by Alt+1..3.
	showPage := glib.SimpleActionNew("show-page", glib.VARIANT_TYPE_STRING)
	// gotk3 hands the GVariant parameter over already converted to a Go string.
	showPage.Connect("activate", func(_ *glib.SimpleAction, page string) {
		if page != "" {
			s.stack.SetVisibleChildName(page)
		}
		s.present()
	})
	app.AddAction(showPage)
	for i, page := range []string{"monitor", "rules", "preferences"} {
		app.SetAccelsForAction(fmt.Sprintf("app.show-page('%s')", page), []string{fmt.Sprintf("<Alt>%d", i+1)})
	}

	cl, err := client.Connect(client.Options{Interactive: true})
	s.cl = cl
	s.buildWindow(entries)
	if err != nil {
		s.msg.Show(gtk.MESSAGE_ERROR, fmt.Sprintf(i18n.T("Cannot reach the system bus, so Tattle cannot talk to its service: %s"), err))
		return s
	}
	s.alert = alert.New(app, entries, func(id uint64, a api.Answer) {
		if !s.agent.Answer(id, a) {
			log.Info("question was settled before the answer", "id", id)
		}
	}, s.guiScripting)
	s.startNotifications()
	s.agent = agent.New(ctx, log, func() {
		glib.IdleAdd(func() { s.questionsChanged() })
	})
	s.agent.OnAsked(func(a agent.Asked) {
		glib.IdleAdd(func() { s.askedChanged(a) })
	})
	if err := s.agent.Export(cl.Conn()); err != nil {
		s.msg.Show(gtk.MESSAGE_ERROR, err.Error())
	} else {
		go s.keepRegistered()
	}
	s.startTray()
	if s.tray != nil {
		s.tray.update(nil)
	}
	go s.feedMonitor()
	s.rules.Watch()
	s.prefs.Load()
	if path := os.Getenv("TATTLE_STALL_FILE"); path != "" {
		if err := stall.Start(path, func() (int, int) { return s.mon.Len(), s.mon.Queued() }); err != nil {
			log.Warn("stall probe", "error", err)
		}
	}
	return s
}

func (s *session) buildWindow(entries *desktop.Index) {
	s.win = ui.Must(gtk.ApplicationWindowNew(s.app))
	s.win.SetTitle(i18n.T("Tattle"))
	s.win.SetDefaultSize(1180, 680)
	s.win.SetIconName(AppID)
	ui.SetAccessible(s.win, i18n.T("Tattle"), "")
	s.win.Connect("delete-event", func() bool {
		s.win.Hide()
		return true
	})

	s.stack = ui.Must(gtk.StackNew())
	s.stack.SetTransitionType(gtk.STACK_TRANSITION_TYPE_CROSSFADE)
	s.mon = monitor.New(s.ctx, entries, s.trafficSource())
	gate := userinput.NewGate(s.guiScripting, s.log)
	s.rules = rulesview.New(s.ctx, s.cl, gate, &s.win.Window, entries)
	s.prefs = prefs.New(s.ctx, s.cl, gate)
	s.stack.AddTitled(s.mon.Widget, "monitor", i18n.T("Monitor"))
	s.hist = historyview.New(s.ctx, s.historySource(), entries)
	s.stack.AddTitled(s.hist.Widget, "history", i18n.T("History"))
	s.stack.AddTitled(s.rules.Widget, "rules", i18n.T("Rules"))
	s.stack.AddTitled(s.prefs.Widget, "preferences", i18n.T("Preferences"))

	// The settings may change elsewhere (tattlectl, the tray): read them again whenever the page is opened.
	s.stack.Connect("notify::visible-child-name", func() {
		switch s.stack.GetVisibleChildName() {
		case "preferences":
			if s.cl != nil {
				s.prefs.Load()
			}
		case "history":
			s.hist.Load()
		}
	})
	switcher := ui.Must(gtk.StackSwitcherNew())
	switcher.SetStack(s.stack)
	header := ui.Must(gtk.HeaderBarNew())
	header.SetShowCloseButton(true)
	header.SetCustomTitle(switcher)
	s.win.SetTitlebar(header)
	header.ShowAll()

	box := ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 0))
	box.PackStart(s.asked.Bar, false, false, 0)
	box.PackStart(s.msg.Bar, false, false, 0)
	box.PackStart(s.stack, true, true, 0)
	s.win.Add(box)
	box.ShowAll()
	// Tests and the tray open a page directly: TATTLE_PAGE=rules|preferences.
	if page := os.Getenv("TATTLE_PAGE"); page != "" {
		s.stack.SetVisibleChildName(page)
	}
}

// errNoService: the app has no connection to the helper (the system bus was not reachable at start).
var errNoService = errors.New("not connected to the Tattle service")

// guiScripting reads whether the administrator lets accessibility actions and synthetic input act for the
// user (Settings.AllowGUIScripting): the alert and userinput.Gate ask it afresh each time.
func (s *session) guiScripting() (bool, error) {
	if s.cl == nil {
		return false, errNoService
	}
	st, err := s.cl.Settings(s.ctx)
	return st.AllowGUIScripting, err
}

func (s *session) present() {
	s.win.Present()
}

func (s *session) stop() {
	if s.cl != nil && s.agent != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.cl.UnregisterAgent(ctx, agent.Path)
		cancel()
	}
	if s.tray != nil {
		s.tray.close()
	}
	s.cancel()
	if s.notified != nil {
		// A notification left behind would offer to show an alert that is gone.
		select {
		case <-s.notified:
		case <-time.After(2 * time.Second):
		}
	}
}

// questionsChanged shows the oldest open question (or hides the alert) and teaches the monitor host names.
func (s *session) questionsChanged() {
	q := s.agent.Queue()
	for _, x := range q {
		s.mon.LearnHost(x)
	}
	s.alert.Update(q)
	if s.tray != nil {
		s.tray.update(q)
	}
}

// feedMonitor streams flows into the monitor: subscribe first, then take a snapshot, so no change falls
// between the two. Without the subscription (the helper refused it: too many monitors) it polls instead.
// Runs on its own goroutine until the session ends.
func (s *session) feedMonitor() {
	batches, err := s.cl.WatchFlows(s.ctx)
	if err != nil {
		s.log.Warn("no live flow updates; polling", "error", err)
	}
	s.snapshot()
	if batches == nil {
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-tick.C:
				s.snapshot()
			}
		}
	}
	for b := range batches {
		s.mon.Push(b)
	}
}

// pollEvery is how often flows are read when the helper sends no FlowsChanged.
const pollEvery = 2 * time.Second

// snapshot reads every flow once.
func (s *session) snapshot() {
	snap, err := s.cl.Flows(s.ctx)
	if err != nil {
		if s.ctx.Err() == nil {
			s.showError(i18n.T("Cannot read connections from the Tattle service: "), err)
		}
		return
	}
	s.mon.Push(snap)
}

func (s *session) showError(prefix string, err error) {
	glib.IdleAdd(func() { s.msg.Show(gtk.MESSAGE_ERROR, prefix+err.Error()) })
}

// keepRegistered registers the agent now and again whenever tattled (re)starts, until the session ends.
func (s *session) keepRegistered() {
	conn := s.cl.Conn()
	opts := []dbus.MatchOption{dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, api.BusName)}
	if err := conn.AddMatchSignalContext(s.ctx, opts...); err != nil {
		s.log.Warn("cannot follow tattled restarts", "error", err)
	}
	sigs := make(chan *dbus.Signal, 8)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)
	s.register()
	for {
		select {
		case <-s.ctx.Done():
			return
		case sig := <-sigs:
			if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
				continue
			}
			if name, _ := sig.Body[0].(string); name != api.BusName {
				continue
			}
			if owner, _ := sig.Body[2].(string); owner != "" {
				// tattled (re)started: it knows neither this agent nor this monitor.
				s.register()
				if err := s.cl.Resubscribe(s.ctx); err != nil {
					s.log.Warn("cannot resubscribe to flow updates", "error", err)
				}
				s.snapshot()
			}
		}
	}
}

// askedChanged shows in the window (and the tray's tooltip) when another agent of this user, a terminal
// agent started with --replace, gets the questions instead of the app: a program acting behind the user's
// back would have to show itself here.
func (s *session) askedChanged(a agent.Asked) {
	if a.Here {
		s.asked.Show(gtk.MESSAGE_INFO, i18n.T("Questions about your programs' connections are asked here again."))
		return
	}
	s.asked.Show(gtk.MESSAGE_WARNING, fmt.Sprintf(i18n.T("Questions about your programs' connections now go to %s (process %d), which took over with --replace. End that program to have them asked here again."), a.Exe, a.PID))
	s.present()
}

func (s *session) register() {
	err := s.cl.RegisterAgent(s.ctx, agent.Path)
	if err == nil {
		s.log.Info("registered as agent", "path", agent.Path)
		return
	}
	s.log.Warn("cannot register as agent", "error", err)
	if client.KindOf(err) == client.Unreachable {
		return // registered when tattled starts
	}
	glib.IdleAdd(func() {
		s.asked.Show(gtk.MESSAGE_WARNING, fmt.Sprintf(i18n.T("Tattle cannot ask you about new connections: the Tattle service did not accept this app as the one to ask (%s). Connections no rule covers get the default answer. Check that tattled is up to date and running, and that nothing is loaded into the app (LD_PRELOAD, GTK modules)."), err))
	})
}

// trafficSource feeds the monitor's chart from the helper's history; nil without a helper.
func (s *session) trafficSource() monitor.TrafficSource {
	if s.cl == nil {
		return nil
	}
	return s.cl.Traffic
}

// historySource feeds the History page; nil without a helper.
func (s *session) historySource() historyview.Source {
	if s.cl == nil {
		return nil
	}
	return s.cl.History
}
