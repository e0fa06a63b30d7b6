package gui

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/tray/traytest"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// refusal is what the app shows when it ignored a change no real input made (userinput.Refusal).
const refusal = "A program tried to make this change for you; it was ignored. Use your mouse or keyboard."

// TestForgedInputChangesNothing: the app runs as root here, so polkit grants its every call without asking,
// as a kept authorization (auth_admin_keep, auth_self_keep) does for minutes after the user typed a password.
// Another program of the user then works the app's controls: the tray menu's mode item through a dbusmenu
// Event call (which any program on the session bus can make) and the Preferences and Rules pages' buttons
// through AT-SPI. The helper's mode and rules stay as they were, and the app says it ignored the presses; the
// same Apply clicked with the pointer changes the mode.
func TestForgedInputChangesNothing(t *testing.T) {
	h := StartHelper(t)
	cl := h.Dial(t)
	now := time.Now().Unix()
	const keptID = "deny-wget-forged"
	if _, err := cl.AddRules(context.Background(), []api.Rule{{ID: keptID, Application: "/usr/bin/wget", Owner: 0,
		Direction: "outgoing", Remote: "domain:forged.example", Port: "any", Protocol: "any", Action: "deny", Duration: "forever",
		Enabled: true, Created: now, Modified: now, Note: "kept by the test"}}); err != nil {
		t.Fatal(err)
	}
	s := StartSession(t, "x11")
	watcher := traytest.StartWatcher(t, s.SessionBus(), true)
	app := StartApp(t, s, h, English())
	item := watcher.WaitItem(t, 20*time.Second)
	mode := func() string {
		t.Helper()
		st, err := cl.Settings(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode
	}
	helperRules := func() map[string]api.Rule {
		t.Helper()
		rs, err := cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]api.Rule{}
		for _, r := range rs {
			m[r.ID] = r
		}
		return m
	}
	// settle gives a change that should not happen the time it would take if it did.
	settle := func() { time.Sleep(1500 * time.Millisecond) }

	// The tray: no item switches the mode; the mode's item only opens Preferences, whoever sends its click.
	labels := trayMenu(t, s, item)
	for _, l := range labels {
		if strings.HasPrefix(l, "Silent") || l == "Alert" {
			t.Errorf("the tray menu has an item that switches the mode: %q in %q", l, labels)
		}
	}
	id, label := trayItemID(t, s, item, "_Mode: ")
	if label != "_Mode: Alert…" {
		t.Errorf("the tray's mode item reads %q, want the mode named", label)
	}
	forger, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	menuPath := trayMenuPath(t, forger, item)
	if err := forger.Object(item.Bus, menuPath).Call("com.canonical.dbusmenu.Event", 0, id, "clicked", dbus.MakeVariant(""), uint32(0)).Err; err != nil {
		t.Fatalf("forged dbusmenu Event: %v", err)
	}
	s.WaitFor(t, "combo box", "Mode", 10*time.Second)
	settle()
	if m := mode(); m != api.ModeAlert {
		t.Fatalf("a forged tray click changed the mode to %s", m)
	}

	// Preferences: another program picks "Silent, allow" and presses Apply through AT-SPI.
	time.Sleep(500 * time.Millisecond) // the page re-reads the settings when opened; let that land first
	if _, err := s.atspi(t, "choose", "tattle", "Mode", "Silent, allow: allow new connections and log them"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "push button", "Apply")
	settle()
	if m := mode(); m != api.ModeAlert {
		t.Fatalf("Apply pressed through AT-SPI changed the mode to %s", m)
	}
	s.WaitFor(t, "label", refusal, 10*time.Second)
	s.Screenshot(t, "forged-preferences")
	// The page shows the settings in force again: the user's own Apply now keeps the mode.
	s.RealClick(t, "push button", "Apply")
	s.WaitFor(t, "label", "Settings saved.", 10*time.Second)
	if m := mode(); m != api.ModeAlert {
		t.Fatalf("the refused choice stayed on the page: the user's Apply saved mode %s", m)
	}
	// The user's own choice with pointer and keys, and Apply clicked: applied.
	s.RealClick(t, "combo box", "Mode")
	time.Sleep(500 * time.Millisecond) // the popup opens on the current choice
	s.Keys(t, "Down", "Return")
	s.RealClick(t, "push button", "Apply")
	deadline := time.Now().Add(10 * time.Second)
	for mode() != api.ModeSilentAllow {
		if time.Now().After(deadline) {
			s.Screenshot(t, "forged-preferences-real")
			t.Fatalf("after the user chose Silent, allow and clicked Apply the mode is %s", mode())
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.SetMode(t, api.ModeAlert)

	// Rules: the user opens the delete confirmation and the rule editor with the pointer; another program
	// presses Delete and Save in them through AT-SPI. GTK keeps the user's click current for all that the
	// dialog's nested main loop dispatches, so that click must not count for the presses inside.
	s.ShowPage(t, "rules")
	s.WaitFor(t, "table cell", "kept by the test", 10*time.Second)
	if _, err := s.atspi(t, "select", "tattle", "table cell", "kept by the test"); err != nil {
		t.Fatal(err)
	}
	s.RealClick(t, "push button", "Delete rule")
	s.WaitFor(t, "push button", "Delete", 10*time.Second)
	s.Click(t, "push button", "Delete")
	settle()
	if _, ok := helperRules()[keptID]; !ok {
		t.Fatalf("a Delete pressed through AT-SPI in the confirmation the user opened removed the rule")
	}
	s.WaitFor(t, "label", refusal, 10*time.Second)
	s.RealClick(t, "push button", "Add rule")
	s.WaitFor(t, "dialog", "New rule", 10*time.Second)
	if _, err := s.atspi(t, "settext", "tattle", "text", "Remote", "domain:added.forged.example"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "push button", "Save")
	s.WaitForGone(t, "dialog", "New rule", 10*time.Second)
	settle()
	for id, r := range helperRules() {
		if r.Remote == "domain:added.forged.example" {
			t.Errorf("a Save pressed through AT-SPI in the editor the user opened added rule %s: %+v", id, r)
		}
	}
	// The user's own keyboard: Return in the editor's Remote field saves (GTK clicks the default button from
	// a timer then, with no event current: the key that activated it counts).
	s.RealClick(t, "push button", "Add rule")
	s.WaitFor(t, "dialog", "New rule", 10*time.Second)
	if _, err := s.atspi(t, "settext", "tattle", "text", "Remote", "domain:typed.example"); err != nil {
		t.Fatal(err)
	}
	s.RealClick(t, "text", "Remote")
	s.Keys(t, "End", "Return")
	s.WaitForGone(t, "dialog", "New rule", 10*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for {
		found := false
		for _, r := range helperRules() {
			found = found || r.Remote == "domain:typed.example"
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			s.Screenshot(t, "forged-rules-return")
			t.Fatalf("Return in the rule editor did not save the rule")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Screenshot(t, "forged-rules")

	// The alert: a program picks "Any connection" and "Once" through AT-SPI while the question is up. Both
	// are put back at once, and the user's click on Allow answers with what the alert offered: this host,
	// forever (without the check the program's choice would ride on the click: an allow-anything rule).
	call := ask(h, app, question(2001, "/usr/bin/curl", "forged.example", "192.0.2.1", 443, "tcp"))
	s.WaitFor(t, "combo box", "Scope", 20*time.Second)
	// Another program (as user nobody here) withdraws the question through the app's agent object, as only the
	// helper may: refused, and the question stays (withdrawn, its default would apply without the user). The
	// shipped bus policy lets only root call the Agent interface; the app also refuses any caller but root
	// (agent TestOnlyTheHelperIsHeard), for a bus without that policy.
	cancel := exec.Command("gdbus", "call", "--address", h.Address, "--dest", app.Owner, "--object-path", "/io/github/tattlefw/Tattle/Agent",
		"--method", api.AgentInterface+".Cancel", "2001")
	cancel.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cancel.CombinedOutput(); err == nil || !strings.Contains(string(out), "AccessDenied") {
		t.Errorf("another user's Cancel of the question: %v %s, want it refused by the app", err, out)
	}
	if _, err := s.atspi(t, "choose", "tattle", "Scope", "Any connection"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.atspi(t, "choose", "tattle", "Duration", "Once"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.atspi(t, "wait", "tattle", "label", "A program tried to change your choice; it was put back. Use your mouse or keyboard.", "10"); err != nil {
		t.Errorf("the alert does not say it put the choices back: %v", err)
	}
	s.Screenshot(t, "forged-alert")
	time.Sleep(700 * time.Millisecond) // past the alert's arm delay
	s.RealClick(t, "push button", "Allow")
	select {
	case c := <-call.Done:
		var a api.Answer
		if err := c.Store(&a); err != nil {
			t.Fatalf("the agent's answer: %v", err)
		}
		if a.Action != "allow" || a.Scope != api.ScopeHost || a.Duration != rules.DurationForever {
			t.Errorf("the user's Allow answered %+v: want allow, scope %s, %s (what the alert offered, not the forged choice)", a, api.ScopeHost, rules.DurationForever)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the user's click on Allow did not answer the question")
	}
}

// trayMenuPath is the object path of the tray item's menu.
func trayMenuPath(t *testing.T, conn *dbus.Conn, item traytest.ItemRef) dbus.ObjectPath {
	t.Helper()
	v, err := conn.Object(item.Bus, item.Path).GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("tray item menu: %v", err)
	}
	path, _ := v.Value().(dbus.ObjectPath)
	return path
}

// trayItemID finds the tray menu's item whose label starts with prefix, as a panel reads the layout
// (com.canonical.dbusmenu GetLayout: each node is (id, properties, children)).
func trayItemID(t *testing.T, s *Session, item traytest.ItemRef, prefix string) (int32, string) {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := conn.Object(item.Bus, trayMenuPath(t, conn, item)).Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{})
	if call.Err != nil || len(call.Body) < 2 {
		t.Fatalf("GetLayout: %v", call.Err)
	}
	var find func(node any) (int32, string, bool)
	find = func(node any) (int32, string, bool) {
		if v, ok := node.(dbus.Variant); ok {
			node = v.Value()
		}
		fields, ok := node.([]any)
		if !ok || len(fields) != 3 {
			return 0, "", false
		}
		id, _ := fields[0].(int32)
		props, _ := fields[1].(map[string]dbus.Variant)
		if l, ok := props["label"].Value().(string); ok && strings.HasPrefix(l, prefix) {
			return id, l, true
		}
		children, _ := fields[2].([]dbus.Variant)
		for _, c := range children {
			if id, l, ok := find(c); ok {
				return id, l, true
			}
		}
		return 0, "", false
	}
	id, label, ok := find(call.Body[1])
	if !ok {
		t.Fatalf("the tray menu has no item starting %q: %q", prefix, trayMenu(t, s, item))
	}
	return id, label
}
