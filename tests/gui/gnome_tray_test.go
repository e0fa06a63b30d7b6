package gui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// shellActor is where a GNOME Shell actor is on the screen.
type shellActor struct {
	Found   bool     `json:"found"`
	Visible bool     `json:"visible"`
	X       int      `json:"x"`
	Y       int      `json:"y"`
	W       int      `json:"w"`
	H       int      `json:"h"`
	Labels  []string `json:"labels"`
}

func (a shellActor) center() (int, int) { return a.X + a.W/2, a.Y + a.H/2 }

// trayIndicator finds the AppIndicator extension's panel button for the app's item, and the labels of its
// open menu.
func trayIndicator(t *testing.T, s *Session) shellActor {
	t.Helper()
	var a shellActor
	s.Eval(t, `(() => {
		const key = Object.keys(Main.panel.statusArea).find(k => k.startsWith("appindicator-"));
		if (!key) return {found: false};
		const b = Main.panel.statusArea[key];
		const [x, y] = b.get_transformed_position(), [w, h] = b.get_transformed_size();
		const labels = b.menu ? b.menu._getMenuItems().filter(i => i.label).map(i => i.label.text) : [];
		return {found: true, visible: b.visible && b.mapped, x: Math.round(x), y: Math.round(y), w: Math.round(w), h: Math.round(h), labels};
	})()`, &a)
	return a
}

// trayMenuItem finds the open tray menu's item labelled label.
func trayMenuItem(t *testing.T, s *Session, label string) shellActor {
	t.Helper()
	var a shellActor
	js, _ := json.Marshal(label)
	s.Eval(t, `(() => {
		const key = Object.keys(Main.panel.statusArea).find(k => k.startsWith("appindicator-"));
		const b = key && Main.panel.statusArea[key];
		const item = b && b.menu && b.menu.isOpen && b.menu._getMenuItems().find(i => i.label && i.label.text === `+string(js)+`);
		if (!item) return {found: false};
		const [x, y] = item.get_transformed_position(), [w, h] = item.get_transformed_size();
		return {found: true, visible: item.mapped, x: Math.round(x), y: Math.round(y), w: Math.round(w), h: Math.round(h)};
	})()`, &a)
	return a
}

// TestTrayOnGnomeShell: GNOME Shell with Debian's AppIndicator extension shows the app's StatusNotifierItem in
// its top panel, registered by the app's own connection; a click with the compositor's virtual pointer opens
// its menu (the app's dbusmenu as the extension renders it) while a question waits and the main window is
// closed, and its Open Monitor, clicked, brings the main window back. The question is a real program's
// connection held by tattled: the menu lists it by the program's name, destination port and all, and
// choosing that entry brings the alert (closed by the user) back.
func TestTrayOnGnomeShell(t *testing.T) {
	h := StartHelper(t)
	if !h.HasPrompts(t) {
		t.Skip("needs Prompts in the helper")
	}
	s := StartSession(t, "gnome")
	app := StartApp(t, s, h, English())
	s.Log.WaitFor(t, "registered as agent", 0)

	// The extension's watcher lists the item, registered by the app's own connection.
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(20 * time.Second)
	var items []string
	for {
		v, err := conn.Object("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher").GetProperty("org.kde.StatusNotifierWatcher.RegisteredStatusNotifierItems")
		if err == nil {
			items, _ = v.Value().([]string)
		}
		if len(items) > 0 && trayIndicator(t, s).Visible {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tray item in GNOME Shell's panel (watcher lists %q, %v; indicator %+v):\n%s", items, err, trayIndicator(t, s), s.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkItemOwner(t, conn, items[0], app.Cmd.Process.Pid)

	// A connection of a real program held for the answer; its alert and the main window closed (the app keeps
	// running in the background, the question still waits).
	servers := testrig.StartServers(t)
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "traycheck")
	result := startClient(exe, servers.TCP4)
	waitAlertShows(t, s, exe)
	_, port, _ := strings.Cut(servers.TCP4, ":")
	closeWindow := func(title string) {
		t.Helper()
		js, _ := json.Marshal(title)
		s.Eval(t, `global.get_window_actors().map(a => a.meta_window).filter(w => w.get_title() === `+string(js)+`).forEach(w => w.delete(global.get_current_time())); true`, nil)
		deadline := time.Now().Add(10 * time.Second)
		for hasWindow(s.ShellStack(t), title) {
			if time.Now().After(deadline) {
				t.Fatalf("the window %q did not close: %s", title, titles(s.ShellStack(t)))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	closeWindow(alertTitle)
	closeWindow("Tattle")
	select {
	case r := <-result:
		t.Fatalf("the connection ended before anyone answered: %+v", r)
	default:
	}

	// The menu lists the question; choosing it brings the alert back.
	openMenu := func() []string {
		t.Helper()
		// The extension can rebuild its indicator when the item's properties change (the main window closed
		// just before): a click on the old one's place opens nothing. A person clicks again; so does this,
		// on the indicator as it is then, for at most 20 s.
		deadline := time.Now().Add(20 * time.Second)
		for !trayMenuItem(t, s, "Open Monitor").Visible {
			if time.Now().After(deadline) {
				t.Fatalf("the tray menu did not open with an Open Monitor item: %+v", trayIndicator(t, s))
			}
			ind := trayIndicator(t, s)
			if !ind.Found || !ind.Visible {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			x, y := ind.center()
			s.ShellClick(t, x, y)
			for wait := time.Now().Add(4 * time.Second); time.Now().Before(wait) && !trayMenuItem(t, s, "Open Monitor").Visible; {
				time.Sleep(100 * time.Millisecond)
			}
		}
		time.Sleep(300 * time.Millisecond) // the menu's opening animation
		return trayIndicator(t, s).Labels
	}
	labels := openMenu()
	entry := ""
	for _, l := range labels {
		if strings.HasPrefix(l, "traycheck to ") && strings.HasSuffix(l, " port "+port) {
			entry = l
		}
	}
	if entry == "" {
		s.Screenshot(t, "gnome-tray-menu-no-question")
		t.Fatalf("the tray menu does not list the question of traycheck to port %s: %q", port, labels)
	}
	for _, want := range []string{"Open Monitor", "Mode: Alert…", "Quit Tattle"} {
		if !contains(labels, want) {
			t.Errorf("the tray menu in GNOME Shell's panel has no %q: %q", want, labels)
		}
	}
	if contains(labels, "No questions waiting") {
		t.Errorf("the tray menu says no questions wait while one does: %q", labels)
	}
	s.Screenshot(t, "gnome-tray-menu")
	it := trayMenuItem(t, s, entry)
	x, y := it.center()
	s.ShellClick(t, x, y)
	deadline = time.Now().Add(10 * time.Second)
	for !hasWindow(s.ShellStack(t), alertTitle) {
		if time.Now().After(deadline) {
			t.Fatalf("choosing %q in the tray menu (clicked at %d,%d) did not bring up the alert: %s", entry, x, y, titles(s.ShellStack(t)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.WaitFor(t, "push button", "Allow", 10*time.Second)
	if !hasName(s.Names(t), "label", exe) {
		t.Errorf("the alert brought back from the tray does not name %s", exe)
	}
	s.Screenshot(t, "gnome-tray-reopened-alert")

	openMenu()
	open := trayMenuItem(t, s, "Open Monitor")
	x, y = open.center()
	s.ShellClick(t, x, y)
	deadline = time.Now().Add(10 * time.Second)
	for !hasWindow(s.ShellStack(t), "Tattle") {
		if time.Now().After(deadline) {
			t.Fatalf("Open Monitor in the tray menu (clicked at %d,%d: %+v) did not open the main window: %s", x, y, open, titles(s.ShellStack(t)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Screenshot(t, "gnome-tray-opened-monitor")
	closeWindow(alertTitle)
}

func hasWindow(ws []ShellWindow, title string) bool {
	for _, w := range ws {
		if w.Title == title {
			return true
		}
	}
	return false
}

// checkItemOwner checks that the StatusNotifierWatcher's item ("owner/path") is registered by the process
// pid's own bus connection, as a tray item the app registers must be.
func checkItemOwner(t *testing.T, conn *dbus.Conn, item string, pid int) {
	t.Helper()
	owner, _, _ := strings.Cut(item, "/")
	var p uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, owner).Store(&p); err != nil || int(p) != pid {
		t.Errorf("the watcher's item %q belongs to pid %d (%v), not the app's %d", item, p, err, pid)
	}
}

// waitAlertShows waits up to a minute for the alert about exe, a held program, to show its name.
func waitAlertShows(t *testing.T, s *Session, exe string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for names := s.Names(t); !hasName(names, "label", exe); names = s.Names(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the alert did not show %s; it shows:\n%s", exe, dumpNames(names))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
