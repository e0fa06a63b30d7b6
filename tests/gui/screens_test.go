package gui

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/tray/traytest"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// world is what the screenshot tests show: two applications with real flows to loopback servers, rules
// for them, and a .desktop entry naming one of them.
type world struct {
	servers testrig.Servers
	browser string // test client copy with a .desktop entry ("Web Browser")
	fetcher string // test client copy without one
}

func makeWorld(t *testing.T, s *Session, h *Helper) world {
	t.Helper()
	w := world{servers: testrig.StartServers(t)}
	bin := testrig.Build(t).Client
	dir := testrig.AppDir(t)
	w.browser = testrig.CopyApp(t, bin, dir, "webbrowser")
	w.fetcher = testrig.CopyApp(t, bin, dir, "fetcher")

	apps := filepath.Join(s.dir, "data", "applications")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	entry := fmt.Sprintf("[Desktop Entry]\nType=Application\nName=Web Browser\nName[de]=Webbrowser\nIcon=web-browser\nExec=%s %%u\n", w.browser)
	if err := os.WriteFile(filepath.Join(apps, "org.example.WebBrowser.desktop"), []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}

	cl := h.Dial(t)
	_, port4b, _ := net.SplitHostPort(w.servers.TCP4b)
	now := time.Now().Unix()
	rule := func(id, app, remote, port, proto, action string, owner int64, note string) api.Rule {
		return api.Rule{ID: id, Application: app, Owner: owner, Direction: "outgoing", Remote: remote, Port: port, Protocol: proto,
			Action: action, Duration: "forever", Enabled: true, Note: note, Created: now, Modified: now}
	}
	rs := []api.Rule{
		rule("deny-fetcher-"+port4b, w.fetcher, "127.0.0.1", port4b, "tcp", "deny", 0, "no uploads"),
		rule("allow-fetcher-loopback", w.fetcher, "127.0.0.0/8", "any", "any", "allow", 0, ""),
		rule("allow-browser-loopback", w.browser, "127.0.0.0/8", "any", "any", "allow", 0, "local test servers"),
		rule("allow-browser-v6", w.browser, "::1", "any", "tcp", "allow", 0, ""),
		rule("deny-any-tracker", "any", "domain:tracker.example", "any", "any", "deny", api.NoOwner, "system-wide block"),
	}
	if _, err := cl.AddRules(context.Background(), rs); err != nil {
		t.Fatalf("add rules: %v", err)
	}
	return w
}

// traffic makes real connections of both applications (allowed and denied ones).
func (w world) traffic(t *testing.T) {
	t.Helper()
	for i := 0; i < 3; i++ {
		if r := testrig.RunApp(t, w.browser, testrig.RunOpts{}, "tcp", w.servers.TCP4); !r.OK {
			t.Fatalf("browser to %s: %+v", w.servers.TCP4, r)
		}
	}
	if r := testrig.RunApp(t, w.browser, testrig.RunOpts{}, "tcp", w.servers.TCP6); !r.OK {
		t.Fatalf("browser to %s: %+v", w.servers.TCP6, r)
	}
	if r := testrig.RunApp(t, w.browser, testrig.RunOpts{}, "udp", w.servers.UDP4); !r.OK {
		t.Fatalf("browser udp to %s: %+v", w.servers.UDP4, r)
	}
	if r := testrig.RunApp(t, w.fetcher, testrig.RunOpts{}, "tcp", w.servers.TCP4); !r.OK {
		t.Fatalf("fetcher to %s: %+v", w.servers.TCP4, r)
	}
	if r := testrig.RunApp(t, w.fetcher, testrig.RunOpts{}, "tcp", w.servers.TCP4b); r.OK || r.Errno != "EPERM" {
		t.Fatalf("fetcher to %s should be denied with EPERM: %+v", w.servers.TCP4b, r)
	}
}

// ask calls the app's Agent.Ask as tattled does, and returns the pending call.
func ask(h *Helper, app *App, q api.Question) *dbus.Call {
	return h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Go(api.AgentInterface+".Ask", 0, make(chan *dbus.Call, 1), q)
}

func question(id uint64, exe, host, addr string, port uint16, proto string) api.Question {
	now := time.Now()
	return api.Question{ID: id, Exe: exe, PID: uint32(os.Getpid()), UID: 0, User: "root", Comm: filepath.Base(exe),
		Host: host, Addr: addr, Port: port, Protocol: proto, Created: now.UnixMilli(),
		Deadline: now.Add(2 * time.Minute).UnixMilli(), Default: api.DefaultDeny, Attempts: 1}
}

// trayStatus reads the Status property of the app's tray item, as a panel does.
func trayStatus(t *testing.T, s *Session, item traytest.ItemRef) string {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := conn.Object(item.Bus, item.Path).GetProperty("org.kde.StatusNotifierItem.Status")
	if err != nil {
		t.Fatalf("tray item status: %v", err)
	}
	st, _ := v.Value().(string)
	return st
}

// trayMenu returns the labels of the tray item's menu (com.canonical.dbusmenu), as a panel reads them.
func trayMenu(t *testing.T, s *Session, item traytest.ItemRef) []string {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := conn.Object(item.Bus, item.Path).GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("tray item menu: %v", err)
	}
	path, _ := v.Value().(dbus.ObjectPath)
	call := conn.Object(item.Bus, path).Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{})
	if call.Err != nil {
		t.Fatalf("GetLayout: %v", call.Err)
	}
	var labels []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case dbus.Variant:
			walk(x.Value())
		case map[string]dbus.Variant:
			if l, ok := x["label"].Value().(string); ok {
				labels = append(labels, l)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case []dbus.Variant:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(call.Body)
	return labels
}

// TestScreens shows the app's three faces (monitor with live data, rules, the alert) under X11 and Wayland,
// in English and German, saving screenshots, and checks through AT-SPI what a user would read there.
func TestScreens(t *testing.T) {
	for _, kind := range []string{"x11", "wayland"} {
		for _, langName := range []string{"en", "de"} {
			t.Run(kind+"-"+langName, func(t *testing.T) {
				lang := English()
				if langName == "de" {
					lang = German(t)
				}
				screens(t, kind, lang)
			})
		}
	}
}

func screens(t *testing.T, kind string, lang Lang) {
	if lang.Name != "en" {
		// The assertions below look for these words in the user's language: they must be translated.
		for _, msgid := range []string{"Attempts", "Last seen", "Allowed", "Denied", "Allow", "Deny", "Any application"} {
			if lang.T(msgid) == msgid {
				t.Errorf("po/%s.po does not translate %q", lang.Name, msgid)
			}
		}
	}
	h := StartHelper(t)
	// The helper's programs see every process on this machine: in silent-allow mode it asks nobody about
	// other tests' connections (the questions here come from the test itself).
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, kind)
	w := makeWorld(t, s, h)
	w.traffic(t)
	// X11 runs without a tray (the app must say so once); Wayland with a StatusNotifierWatcher and host,
	// as a panel provides.
	var watcher *traytest.Watcher
	if kind == "wayland" {
		watcher = traytest.StartWatcher(t, s.SessionBus(), true)
	}
	app := StartApp(t, s, h, lang)
	noTray := lang.T("No system tray was found, so Tattle shows no icon there. It keeps running and asks about new connections; open this window again from the applications menu.")
	var item traytest.ItemRef
	if watcher != nil {
		item = watcher.WaitItem(t, 20*time.Second)
		if st := trayStatus(t, s, item); st != "Active" {
			t.Errorf("tray item status = %q before any question, want Active", st)
		}
	} else {
		s.WaitFor(t, "label", noTray, 20*time.Second)
	}
	name := kind + "-" + lang.Name

	// Monitor: the applications (by their .desktop name, else the binary) and their destinations.
	browserName := "Web Browser"
	if lang.Name == "de" {
		browserName = "Webbrowser"
	}
	s.WaitFor(t, "table cell", browserName, 30*time.Second)
	s.WaitFor(t, "table cell", "fetcher", 10*time.Second)
	names := s.Names(t)
	host4, _, _ := net.SplitHostPort(w.servers.TCP4)
	_, port4b, _ := net.SplitHostPort(w.servers.TCP4b)
	for _, want := range []string{host4, "::1", port4b} {
		if !hasName(names, "table cell", want) {
			t.Errorf("the monitor does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	for _, label := range []string{"Application / Destination", "Attempts", "Last seen", "Details", "Allowed", "Denied", "Asked"} {
		if !hasName(names, "", lang.T(label)) {
			t.Errorf("no %q (%s) on the monitor page; it shows:\n%s", lang.T(label), label, dumpNames(names))
		}
	}
	// The search narrows the list to one application; selecting its connection fills the detail pane.
	search := lang.T("Search connections")
	if _, err := s.atspi(t, "settext", "tattle", "text", search, "webbrowser"); err != nil {
		t.Fatal(err)
	}
	// Both at once: the monitor refills its rows as flows arrive, and a look in between may see neither.
	deadline := time.Now().Add(10 * time.Second)
	for names = s.Names(t); hasName(names, "table cell", "fetcher") || !hasName(names, "table cell", browserName); names = s.Names(t) {
		if time.Now().After(deadline) {
			if hasName(names, "table cell", "fetcher") {
				t.Fatalf("the search for webbrowser still shows fetcher:\n%s", dumpNames(names))
			}
			t.Fatalf("the search for webbrowser hides it:\n%s", dumpNames(names))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := s.atspi(t, "select", "tattle", "table cell", "::1"); err != nil {
		t.Fatal(err)
	}
	s.WaitForText(t, "label", w.browser, 10*time.Second)
	if _, err := s.atspi(t, "settext", "tattle", "text", search, ""); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, "table cell", "fetcher", 10*time.Second)
	s.Screenshot(t, name+"-monitor")

	// Rules: grouped by application, named as the monitor names it (with the rule's own path beside a
	// desktop entry's name), the rules added through the helper.
	s.ShowPage(t, "rules")
	s.WaitFor(t, "table cell", browserName+"  ("+w.browser+")", 10*time.Second)
	names = s.Names(t)
	for _, want := range []string{"fetcher  (" + w.fetcher + ")", "127.0.0.0/8", "domain:tracker.example", "local test servers", lang.T("Any application"), lang.T("Deny")} {
		if !hasName(names, "table cell", want) {
			t.Errorf("the rules page does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	s.Screenshot(t, name+"-rules")

	// Preferences: the helper's settings; a changed timeout is written to the helper when applied. The test
	// presses Apply through AT-SPI, which the administrator must allow (TestForgedInputChangesNothing shows it
	// refused otherwise); so must the alert's buttons below.
	h.SetGUIScripting(t, true)
	s.ShowPage(t, "preferences")
	timeout := strings.ReplaceAll(lang.T("Question _timeout (seconds)"), "_", "")
	s.WaitFor(t, "spin button", timeout, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // the page re-reads the settings when opened; let that land first
	if _, err := s.atspi(t, "setvalue", "tattle", "spin button", timeout, "42"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "push button", strings.ReplaceAll(lang.T("_Apply"), "_", ""))
	s.WaitFor(t, "label", lang.T("Settings saved."), 10*time.Second)
	var st api.Settings
	if err := h.Conn.Object(api.BusName, api.ObjectPath).Call(api.DaemonInterface+".Settings", 0).Store(&st); err != nil {
		t.Fatal(err)
	}
	if st.QuestionTimeout != 42 || st.Mode != api.ModeSilentAllow {
		t.Errorf("settings after Apply: %+v, want a 42 s timeout and the mode unchanged", st)
	}
	s.Screenshot(t, name+"-preferences")
	s.ShowPage(t, "monitor")

	// Alert: two questions, one window, the second counted as waiting. The test answers through AT-SPI
	// (allowed above; TestAllowForeverEndToEnd shows it refused otherwise).
	_, p4, _ := net.SplitHostPort(w.servers.TCP4)
	port, _ := strconv.Atoi(p4)
	q1 := question(1001, w.browser, "updates.example.org", host4, uint16(port), "tcp")
	q1.Via = ""
	q2 := question(1002, w.fetcher, "", "::1", 53, "udp")
	c1 := ask(h, app, q1)
	s.WaitFor(t, "label", "updates.example.org ("+host4+":"+p4+")", 20*time.Second)
	if names := s.Names(t); hasName(names, "label", " 1 ") || hasName(names, "label", "1 more") {
		t.Errorf("one question alone is counted as waiting:\n%s", dumpNames(names))
	}
	c2 := ask(h, app, q2)
	s.WaitForText(t, "label", "1 ", 20*time.Second) // "1 more waiting"
	s.WaitFor(t, "push button", lang.T("Allow"), 5*time.Second)
	names = s.Names(t)
	for _, want := range []string{"updates.example.org", w.browser, "TCP"} {
		if !hasName(names, "", want) {
			t.Errorf("the alert does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	// The alert says when it runs on X11, where other programs can fake input, and only then.
	if x11Note := lang.T("On X11, other programs can fake clicks and keys; a Wayland session prevents that."); hasName(names, "label", x11Note) != (kind == "x11") {
		t.Errorf("on %s the alert shows the X11 note: %v", kind, hasName(names, "label", x11Note))
	}
	s.Screenshot(t, name+"-alert")
	alertTitle := lang.T("Tattle: allow this connection?")
	if kind == "x11" {
		// The alert is above the main window but has not taken the keyboard from it ...
		if st := s.States(t, "frame", alertTitle); contains(st, "active") {
			t.Errorf("the alert took the focus when it appeared: states %v", st)
		}
		if st := s.States(t, "frame", lang.T("Tattle")); !contains(st, "active") {
			t.Errorf("the window the user was in lost the focus to the alert: states %v", st)
		}
		// ... until the user clicks it.
		s.ClickWindow(t, alertTitle)
		deadline := time.Now().Add(5 * time.Second)
		for !contains(s.States(t, "frame", alertTitle), "active") {
			if time.Now().After(deadline) {
				t.Fatalf("the alert did not take the focus when clicked: %v", s.States(t, "frame", alertTitle))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if watcher != nil {
		if st := trayStatus(t, s, item); st != "NeedsAttention" {
			t.Errorf("tray item status = %q while questions wait, want NeedsAttention", st)
		}
		// The tray's menu lists the waiting questions and the mode (silent-allow, set above).
		labels := trayMenu(t, s, item)
		mode := fmt.Sprintf(lang.T("_Mode: %s…"), lang.T("Silent, allow"))
		for _, want := range []string{lang.T("_Open Monitor"), mode, "webbrowser", "fetcher", lang.T("_Quit Tattle")} {
			found := false
			for _, l := range labels {
				found = found || strings.Contains(l, want)
			}
			if !found {
				t.Errorf("the tray menu has no %q: %q", want, labels)
			}
		}
		if names := s.Names(t); hasName(names, "label", noTray) {
			t.Errorf("the app says no tray was found while a watcher and host run")
		}
	}

	// Answer the first through the accessibility tree: the helper's call returns the user's answer.
	s.Click(t, "push button", lang.T("Allow"))
	select {
	case call := <-c1.Done:
		var a api.Answer
		if err := call.Store(&a); err != nil {
			t.Fatalf("Ask: %v", err)
		}
		if a.Action != "allow" || a.Scope != api.ScopeHost || a.Duration != "forever" {
			t.Errorf("answer = %+v, want allow, this host, forever", a)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Ask did not return after Allow was pressed")
	}
	// The second question now shows; the helper withdraws it.
	s.WaitFor(t, "label", fmt.Sprintf(lang.T("DNS server %s"), "::1"), 10*time.Second)
	if err := h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, uint64(1002)).Err; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	select {
	case call := <-c2.Done:
		if call.Err == nil {
			t.Errorf("a withdrawn question was answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ask did not return after Cancel")
	}
}
