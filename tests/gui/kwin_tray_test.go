package gui

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// Plasma's tray host in the KWin session: Debian 12's plasmashell 5.27 (plasma-workspace, its shell package
// from plasma-desktop-data) with the StatusNotifierWatcher it relies on, kded5's statusnotifierwatcher module,
// and kactivitymanagerd, without which plasmashell refuses to load its shell. Its first run lays out the
// default desktop: a bottom panel with the system tray. Its configuration and caches go to the session's
// directory; its system bus is the session's private one.

// startPlasmaTray starts kded5 with the watcher, kactivitymanagerd and plasmashell in a "kwin" session and
// waits until KWin shows Plasma's panel with the system tray in it.
func startPlasmaTray(t *testing.T, s *Session) {
	t.Helper()
	for _, p := range []string{"/usr/bin/plasmashell", "/usr/bin/kded5", "/usr/lib/x86_64-linux-gnu/libexec/kactivitymanagerd",
		"/usr/share/plasma/shells/org.kde.plasma.desktop"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing (tests/install-deps.sh installs plasma-workspace, plasma-desktop-data, qtwayland5)", p)
		}
	}
	env := append(append([]string{}, s.Env...), "XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"), "XDG_CACHE_HOME="+filepath.Join(s.dir, "cache"),
		"DBUS_SYSTEM_BUS_ADDRESS="+s.kwin.systemBus, "QT_QPA_PLATFORM=wayland", "QT_QUICK_BACKEND=software",
		// Qt's accessibility on: the menu's items are located through AT-SPI, as a screen reader finds them.
		"QT_LINUX_ACCESSIBILITY_ALWAYS_ON=1")
	conn := s.kwin.conn
	waitName := func(name string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var has bool
			if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err == nil && has {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not appear on the session bus:\n%s", name, s.Log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// kded5 loads its autoload modules only in a Plasma session's startup phases (ksmserver's); the watcher
	// is asked for by name, as plasmashell's own session start does through kded's D-Bus API.
	// kactivitymanagerd first: kded's kconf_update scripts ask for it too, and would have the bus activate one
	// (a process no test owns) if it were not there.
	proc(t, s.Log, env, s.dir, nil, "/usr/lib/x86_64-linux-gnu/libexec/kactivitymanagerd")
	waitName("org.kde.ActivityManager")
	proc(t, s.Log, env, s.dir, nil, "/usr/bin/kded5")
	waitName("org.kde.kded5")
	var loaded bool
	if err := conn.Object("org.kde.kded5", "/kded").Call("org.kde.kded5.loadModule", 0, "statusnotifierwatcher").Store(&loaded); err != nil || !loaded {
		t.Fatalf("kded5 did not load its statusnotifierwatcher module (%v, %v):\n%s", loaded, err, s.Log)
	}
	waitName("org.kde.StatusNotifierWatcher")
	proc(t, s.Log, env, s.dir, nil, "/usr/bin/plasmashell", "--no-respawn")
	waitName("org.kde.plasmashell")
	deadline := time.Now().Add(40 * time.Second)
	for {
		panel := plasmaPanel(t, s)
		var widgets []string
		err := plasmaEval(s, `print(panels().map(p => p.widgets().map(w => w.type).join(",")).join(";"))`, &widgets)
		if panel.Found && err == nil && strings.Contains(strings.Join(widgets, ","), "org.kde.plasma.systemtray") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Plasma's panel with its system tray did not come up (KWin: %+v; plasmashell's panels: %q, %v):\n%s", panel, widgets, err, s.Log)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// plasmaEval runs a script in plasmashell's own scripting API (org.kde.PlasmaShell.evaluateScript) and
// returns the lines it printed.
func plasmaEval(s *Session, script string, out *[]string) error {
	var printed string
	if err := s.kwin.conn.Object("org.kde.plasmashell", "/PlasmaShell").Call("org.kde.PlasmaShell.evaluateScript", 0, script).Store(&printed); err != nil {
		return fmt.Errorf("org.kde.PlasmaShell.evaluateScript: %w", err)
	}
	*out = strings.Split(strings.TrimSpace(printed), "\n")
	return nil
}

// kwinWindow is a window as KWin's scripting sees it.
type kwinWindow struct {
	Found   bool   `json:"found"`
	Caption string `json:"caption"`
	X       int    `json:"x"`
	Y       int    `json:"y"`
	W       int    `json:"w"`
	H       int    `json:"h"`
}

// plasmaPanel is Plasma's panel: the dock window plasmashell shows.
func plasmaPanel(t *testing.T, s *Session) kwinWindow {
	t.Helper()
	var w kwinWindow
	s.KWinScript(t, `(() => {
		const w = workspace.clientList().find(w => w.resourceClass == "org.kde.plasmashell" && w.dock);
		if (!w) return {found: false};
		const r = w.frameGeometry;
		return {found: true, caption: w.caption, x: r.x, y: r.y, w: r.width, h: r.height};
	})()`, &w)
	return w
}

// plasmaAccessible finds the accessible of plasmashell with role and name and its extents on the screen.
func plasmaAccessible(t *testing.T, s *Session, role, name string) ([4]int, bool) {
	t.Helper()
	out, err := s.atspi(t, "extents", "plasmashell", role, name)
	var e [4]int
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || e[2] == 0 || e[3] == 0 {
		return e, false
	}
	return e, true
}

// TestTrayOnKWin: KDE Plasma's own tray host (plasmashell's system tray in its default panel, on KWin)
// shows the app's StatusNotifierItem, registered with kded's watcher by the app's own connection, its button
// inside the panel KWin shows. While a question waits and the main window is closed, a right-click with
// KWin's fake pointer on the icon opens the menu Plasma draws from the app's dbusmenu; its third item (the
// question, kde-tray-menu.png shows it named by the program) chosen with KWin's fake keyboard brings the
// alert to the front with the keyboard, and Open Monitor (its mnemonic) brings the main window back.
func TestTrayOnKWin(t *testing.T) {
	h := StartHelper(t)
	if !h.HasPrompts(t) {
		t.Skip("needs Prompts in the helper")
	}
	s := StartSession(t, "kwin")
	startPlasmaTray(t, s)
	app := StartApp(t, s, h, English())
	s.Log.WaitFor(t, "registered as agent", 0)

	// The watcher lists the item, registered by the app's own connection; Plasma's tray shows it.
	conn := s.kwin.conn
	deadline := time.Now().Add(20 * time.Second)
	var items []string
	var icon [4]int
	for {
		v, err := conn.Object("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher").GetProperty("org.kde.StatusNotifierWatcher.RegisteredStatusNotifierItems")
		if err == nil {
			items, _ = v.Value().([]string)
		}
		var ok bool
		icon, ok = plasmaAccessible(t, s, "push button", "Tattle")
		if len(items) > 0 && ok {
			break
		}
		if time.Now().After(deadline) {
			names, _ := s.atspi(t, "names", "plasmashell", "200")
			s.Screenshot(t, "kde-tray-missing")
			t.Fatalf("no tray item in Plasma's panel (watcher lists %q, %v; plasmashell shows %s):\n%s", items, err, names, s.Log)
		}
		time.Sleep(300 * time.Millisecond)
	}
	checkItemOwner(t, conn, items[0], app.Cmd.Process.Pid)
	panel := plasmaPanel(t, s)
	if cx, cy := icon[0]+icon[2]/2, icon[1]+icon[3]/2; cx < panel.X || cx >= panel.X+panel.W || cy < panel.Y || cy >= panel.Y+panel.H {
		t.Fatalf("the tray icon at %v is not inside Plasma's panel %+v", icon, panel)
	}
	s.Screenshot(t, "kde-tray")

	// A connection of a real program held for the answer; its alert and the main window closed.
	servers := testrig.StartServers(t)
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "traycheck")
	result := startClient(exe, servers.TCP4)
	waitAlertShows(t, s, exe)
	closeWindow := func(title string) {
		t.Helper()
		js, _ := json.Marshal(title)
		s.KWinScript(t, `workspace.clientList().filter(w => w.caption === `+string(js)+`).forEach(w => w.closeWindow()), true`, nil)
		deadline := time.Now().Add(10 * time.Second)
		for hasWindow(s.kwinStack(t), title) {
			if time.Now().After(deadline) {
				var closeable []bool
				s.KWinScript(t, `workspace.clientList().filter(w => w.caption === `+string(js)+`).map(w => w.closeable)`, &closeable)
				t.Fatalf("the window %q (closeable to KWin: %v) did not close: %s", title, closeable, titles(s.kwinStack(t)))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// KWin offers no way to close the alert (on Xwayland it is a critical notification, which KWin never
	// lets the user close): it stays up, and the main window is closed.
	closeWindow("Tattle")
	if focus := s.kwinFocus(t); focus == alertTitle {
		t.Fatalf("the alert has the keyboard before anyone turned to it")
	}
	select {
	case r := <-result:
		t.Fatalf("the connection ended before anyone answered: %+v", r)
	default:
	}

	// choose right-clicks the icon (Plasma's tray opens an item's context menu on the secondary button) and
	// picks an item of the menu Plasma draws from the app's dbusmenu with KWin's fake keyboard (Qt on Wayland
	// tells neither KWin's scripting nor AT-SPI where its menu is), until done says it worked.
	choose := func(what string, keys []uint32, shot string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			icon, ok := plasmaAccessible(t, s, "push button", "Tattle")
			if ok {
				s.kwinClickButton(t, icon[0]+icon[2]/2, icon[1]+icon[3]/2, btnRight)
				time.Sleep(time.Second)
				if shot != "" {
					s.Screenshot(t, shot)
				}
				for _, k := range keys {
					s.kwin.input.key(k, true)
					s.kwin.input.key(k, false)
					s.kwin.input.roundtrip()
					time.Sleep(150 * time.Millisecond)
				}
				for wait := time.Now().Add(4 * time.Second); time.Now().Before(wait); time.Sleep(150 * time.Millisecond) {
					if done() {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				s.Screenshot(t, "kde-tray-menu-failed")
				t.Fatalf("%s in Plasma's tray menu did not work: %s\n%s", what, titles(s.kwinStack(t)), s.Log)
			}
		}
	}
	const keyDown, keyO = 108, 24
	// The menu: Open Monitor, Mode, the question, Quit Tattle; the question is the third item.
	choose("the question of traycheck", []uint32{keyDown, keyDown, keyDown, keyEnter}, "kde-tray-menu", func() bool { return s.kwinFocus(t) == alertTitle })
	s.WaitFor(t, "push button", "Allow", 10*time.Second)
	if !hasName(s.Names(t), "label", exe) {
		t.Errorf("the alert brought back from the tray does not name %s", exe)
	}
	s.Screenshot(t, "kde-tray-reopened-alert")
	choose("Open Monitor (its mnemonic O)", []uint32{keyO}, "", func() bool { return hasWindow(s.kwinStack(t), "Tattle") })
	s.Screenshot(t, "kde-tray-opened-monitor")
}
