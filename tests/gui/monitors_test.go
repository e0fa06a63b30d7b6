package gui

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// Rect is a rectangle on the compositor's screen (its global coordinates).
type Rect struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

func (r Rect) String() string { return fmt.Sprintf("%dx%d+%d+%d", r.W, r.H, r.X, r.Y) }

// within reports whether r lies wholly on m.
func (r Rect) within(m Rect) bool {
	return r.W > 0 && r.H > 0 && r.X >= m.X && r.Y >= m.Y && r.X+r.W <= m.X+m.W && r.Y+r.H <= m.Y+m.H
}

// ShellMonitors is the geometry of each monitor, as GNOME Shell or KWin numbers them.
func (s *Session) ShellMonitors(t *testing.T) []Rect {
	t.Helper()
	var ms []Rect
	switch s.Kind {
	case "gnome":
		s.Eval(t, `Array.from({length: global.display.get_n_monitors()}, (_, i) => {
			const r = global.display.get_monitor_geometry(i);
			return {x: r.x, y: r.y, w: r.width, h: r.height};
		})`, &ms)
	case "kwin":
		// 7: KWin::ScreenArea, the output's whole geometry.
		s.KWinScript(t, `Array.from({length: workspace.numScreens}, (_, i) => {
			const r = workspace.clientArea(7, i, workspace.currentDesktop);
			return {x: r.x, y: r.y, w: r.width, h: r.height};
		})`, &ms)
	case "x11":
		return s.x11Monitors(t)
	default:
		t.Fatalf("no monitors read from a %q session", s.Kind)
	}
	return ms
}

// ShellFrame is the frame of the window titled title (its decorations included) as the compositor places
// it; false when it shows no such window.
func (s *Session) ShellFrame(t *testing.T, title string) (Rect, bool) {
	t.Helper()
	if s.Kind == "x11" {
		return s.x11Frame(t, title)
	}
	var r *Rect
	js, _ := json.Marshal(title)
	switch s.Kind {
	case "gnome":
		s.Eval(t, `(() => {
			const w = global.display.list_all_windows().find(w => w.get_title() === `+string(js)+`);
			if (!w) return null;
			const r = w.get_frame_rect();
			return {x: r.x, y: r.y, w: r.width, h: r.height};
		})()`, &r)
	case "kwin":
		s.KWinScript(t, `(() => {
			const w = workspace.clientList().find(w => w.caption === `+string(js)+`);
			if (!w) return null;
			const r = w.frameGeometry;
			return {x: r.x, y: r.y, w: r.width, h: r.height};
		})()`, &r)
	default:
		t.Fatalf("no frames read from a %q session", s.Kind)
	}
	if r == nil {
		return Rect{}, false
	}
	return *r, true
}

// ShellSendToMonitor has the compositor move the window titled title to its monitor i, as the user does with
// its keyboard shortcut or window menu.
func (s *Session) ShellSendToMonitor(t *testing.T, title string, i int) {
	t.Helper()
	js, _ := json.Marshal(title)
	var ok bool
	switch s.Kind {
	case "gnome":
		s.Eval(t, fmt.Sprintf(`(() => {
			const w = global.display.list_all_windows().find(w => w.get_title() === %s);
			if (!w) return false;
			w.move_to_monitor(%d);
			return true;
		})()`, js, i), &ok)
	case "kwin":
		s.KWinScript(t, fmt.Sprintf(`(() => {
			const w = workspace.clientList().find(w => w.caption === %s);
			if (!w) return false;
			workspace.sendClientToScreen(w, %d);
			return true;
		})()`, js, i), &ok)
	}
	if !ok {
		t.Fatalf("the compositor shows no window %q to move", title)
	}
}

// ShellPointer is where the compositor has its pointer.
func (s *Session) ShellPointer(t *testing.T) (x, y int) {
	t.Helper()
	var p struct{ X, Y int }
	switch s.Kind {
	case "x11":
		return s.x11Pointer(t)
	case "gnome":
		var xy []int
		s.Eval(t, `global.get_pointer()`, &xy)
		if len(xy) < 2 {
			t.Fatalf("global.get_pointer() = %v", xy)
		}
		return xy[0], xy[1]
	case "kwin":
		s.KWinScript(t, `({x: workspace.cursorPos.x, y: workspace.cursorPos.y})`, &p)
	}
	return p.X, p.Y
}

// ShellPointTo moves the compositor's virtual pointer to x, y without clicking.
func (s *Session) ShellPointTo(t *testing.T, x, y int) {
	t.Helper()
	if s.Kind == "x11" {
		s.xdotool(t, "mousemove", "--sync", strconv.Itoa(x), strconv.Itoa(y))
		return
	}
	if s.Kind == "kwin" {
		s.kwin.input.send(fakeInputMotionAbsolute, fixed(x), fixed(y))
		if err := s.kwin.input.roundtrip(); err != nil {
			t.Fatalf("KWin's fake input: %v", err)
		}
		return
	}
	s.Eval(t, fmt.Sprintf(`(() => {
		global._tattlePointer.notify_absolute_motion(imports.gi.GLib.get_monotonic_time(), %d, %d);
		return true;
	})()`, x, y), nil)
}

// monitorOf is the index of the monitor r lies wholly on, -1 for none.
// alertOnMonitor checks that the alert shows above the editor and lies wholly on monitor want of mons; how
// names the case, px, py are where the pointer was when the question came.
func alertOnMonitor(t *testing.T, s *Session, ed *Editor, how string, mons []Rect, want, px, py int) {
	t.Helper()
	alertOver(t, s, ed)
	er, _ := s.ShellFrame(t, ed.Title)
	ar, ok := s.ShellFrame(t, alertTitle)
	if !ok {
		t.Fatalf("%s: the window manager shows no alert", how)
	}
	t.Logf("%s: pointer at %d,%d; the editor's frame %v (monitor %d); the alert's %v (monitor %d)", how, px, py,
		er, monitorOf(er, mons), ar, monitorOf(ar, mons))
	if got := monitorOf(ar, mons); got != want {
		t.Errorf("%s: the alert's frame %v is on monitor %d, want wholly on %d %v (monitors %v, the editor's frame %v, pointer at %d,%d)",
			how, ar, got, want, mons[want], mons, er, px, py)
	}
}

func monitorOf(r Rect, ms []Rect) int {
	for i, m := range ms {
		if r.within(m) {
			return i
		}
	}
	return -1
}

// TestAlertOnActiveMonitorGnomeShell: GNOME Shell with two monitors side by side, the editor moved by the
// compositor to the second and focused there by the user's click: a question's alert appears wholly on the
// second monitor, as the compositor places it, and the editor keeps the keyboard. Mutter places a new window
// on the monitor with the pointer (meta_window_place puts a dialog on
// meta_backend_get_current_logical_monitor, the pointer's), and no Wayland client can learn where another
// client's window is: with the pointer parked on the first monitor the alert appears there, wholly.
func TestAlertOnActiveMonitorGnomeShell(t *testing.T) {
	alertOnActiveMonitor(t, "gnome")
}

// TestAlertOnActiveMonitorKWin: the same in KWin 5.27 with two virtual outputs. KWin places a new window on
// its active output: the pointer's by default ("Active screen follows mouse", ActiveMouseScreen), the active
// window's when the user turned that off; with it off the alert appears on the editor's monitor though the
// pointer is on the other.
func TestAlertOnActiveMonitorKWin(t *testing.T) {
	alertOnActiveMonitor(t, "kwin")
}

func alertOnActiveMonitor(t *testing.T, kind string) {
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSessionMonitors(t, kind, 2)
	mons := s.ShellMonitors(t)
	if len(mons) != 2 || mons[0] == mons[1] {
		t.Fatalf("the compositor shows monitors %v, want two", mons)
	}
	t.Logf("monitors %v", mons)
	if kind == "kwin" {
		// KWin's own word on which output it takes for the active one, where it places new windows.
		var info string
		if err := s.kwin.conn.Object("org.kde.KWin", "/KWin").Call("org.kde.KWin.supportInformation", 0).Store(&info); err == nil {
			for _, l := range strings.Split(info, "\n") {
				if strings.Contains(l, "follows mouse") {
					t.Logf("KWin: %s", strings.TrimSpace(l))
				}
			}
		}
	}
	app := StartApp(t, s, h, English())
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "monitorcheck")
	shot := map[string]string{"gnome": "gnome", "kwin": "kde"}[kind]
	ed := StartEditor(t, s, "Notes")
	s.ShellSendToMonitor(t, ed.Title, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, ok := s.ShellFrame(t, ed.Title); ok && monitorOf(r, mons) == 1 {
			t.Logf("the editor's frame %v", r)
			break
		}
		if time.Now().After(deadline) {
			r, _ := s.ShellFrame(t, ed.Title)
			t.Fatalf("the compositor did not move the editor to the second monitor: its frame %v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitEditorFocused(t, s, ed, "moved to the second monitor")

	// alertOn asks a question and checks that its alert lies wholly on monitor want, above the editor, which
	// keeps the keyboard: what is typed while the alert is up lands there and does not answer.
	n := 0
	alertOn := func(how string, want int, screenshot string) {
		t.Helper()
		n++
		px, py := s.ShellPointer(t)
		q := question(uint64(5020+n), exe, "", fmt.Sprintf("192.0.2.%d", 40+n), 443, "tcp")
		c := ask(h, app, q)
		s.WaitFor(t, "push button", "Allow", 20*time.Second)
		alertOnMonitor(t, s, ed, how, mons, want, px, py)
		before := ed.Text(t)
		keysDoNotAnswer(t, s, c, "asked "+strconv.Itoa(n)+"\n ")
		waitEditorFocused(t, s, ed, how)
		ed.WaitText(t, before+"asked "+strconv.Itoa(n)+"\n ")
		if screenshot != "" {
			s.Screenshot(t, screenshot)
		}
		cancel(t, h, app, q.ID, c)
		s.WaitForGone(t, "push button", "Allow", 10*time.Second)
	}

	// The user clicked into the editor: the pointer is on its monitor, and so is the alert.
	er, _ := s.ShellFrame(t, ed.Title)
	s.ShellClick(t, er.X+er.W/2, er.Y+er.H/2)
	waitEditorFocused(t, s, ed, "clicked into the editor")
	s.ShellType(t, "on the second monitor ")
	ed.WaitText(t, "on the second monitor ")
	alertOn("pointer on the editor", 1, shot+"-two-monitors")

	// The pointer parked on the first monitor while the user types into the editor on the second: both
	// compositors (KWin by its default) place new windows on the pointer's monitor, the alert too.
	s.ShellPointTo(t, mons[0].X+mons[0].W/2, mons[0].Y+mons[0].H/2)
	time.Sleep(200 * time.Millisecond)
	alertOn("pointer on the other monitor", 0, "")

	if kind == "kwin" {
		// KWin's "Active screen follows mouse" off: its active output is the active window's.
		cfg := filepath.Join(s.dir, "home", ".config")
		if err := os.MkdirAll(cfg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg, "kwinrc"), []byte("[Windows]\nActiveMouseScreen=false\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.kwin.conn.Object("org.kde.KWin", "/KWin").Call("org.kde.KWin.reconfigure", 0).Err; err != nil {
			t.Fatalf("org.kde.KWin.reconfigure: %v", err)
		}
		var follows bool
		deadline := time.Now().Add(5 * time.Second)
		for s.KWinScript(t, `options.activeMouseScreen`, &follows); follows; s.KWinScript(t, `options.activeMouseScreen`, &follows) {
			if time.Now().After(deadline) {
				t.Fatal("KWin still has the active screen follow the mouse after reconfigure")
			}
			time.Sleep(100 * time.Millisecond)
		}
		alertOn("pointer on the other monitor, active screen not following it", 1, shot+"-two-monitors-active-window")
	}
}

// TestAlertOnActiveMonitorX11: on X11 the app places the alert itself, on the monitor of the window the user
// works in (_NET_ACTIVE_WINDOW), not the pointer's. Two monitors side by side (Xorg's dummy driver; openbox),
// the editor on the second focused by a click, then the pointer moved to the first while the user types on:
// a real held connection's alert appears wholly on the second monitor, above the editor, which keeps the
// keyboard. And the reverse: the editor on the first, the pointer on the second, the alert on the first.
func TestAlertOnActiveMonitorX11(t *testing.T) {
	h := StartHelper(t)
	if !h.HasPrompts(t) {
		t.Skip("needs Prompts in the helper")
	}
	s := StartSessionMonitors(t, "x11", 2)
	mons := s.ShellMonitors(t)
	if len(mons) != 2 || mons[0] == mons[1] {
		t.Fatalf("the X server shows monitors %v, want two", mons)
	}
	t.Logf("monitors %v", mons)
	StartApp(t, s, h, English())
	s.Log.WaitFor(t, "registered as agent", 0)
	servers := testrig.StartServers(t)
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "monitorcheck")
	ed := StartEditor(t, s, "Notes")

	// work puts the editor on monitor edMon, clicks into it, types, and parks the pointer on monitor ptrMon.
	n := 0
	work := func(edMon, ptrMon int) {
		t.Helper()
		m := mons[edMon]
		s.x11Move(t, ed.Title, m.X+200, m.Y+150)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if r, ok := s.ShellFrame(t, ed.Title); ok && monitorOf(r, mons) == edMon {
				break
			}
			if time.Now().After(deadline) {
				r, _ := s.ShellFrame(t, ed.Title)
				t.Fatalf("the window manager did not move the editor to monitor %d %v: its frame %v", edMon, m, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		er, _ := s.ShellFrame(t, ed.Title)
		s.ShellClick(t, er.X+er.W/2, er.Y+er.H/2)
		waitEditorFocused(t, s, ed, "clicked into the editor")
		n++
		before := ed.Text(t)
		s.ShellType(t, "typing "+strconv.Itoa(n)+" ")
		ed.WaitText(t, before+"typing "+strconv.Itoa(n)+" ")
		p := mons[ptrMon]
		s.ShellPointTo(t, p.X+p.W/2, p.Y+p.H/2)
	}
	// alertOn has a real program connect to addr, held, and checks that its alert lies wholly on monitor want,
	// above the editor, which keeps the keyboard; then the user allows it with a click.
	alertOn := func(how, addr string, want int, screenshot string) {
		t.Helper()
		px, py := s.ShellPointer(t)
		result := startClient(exe, addr)
		deadline := time.Now().Add(60 * time.Second)
		for names := s.Names(t); !hasName(names, "label", addr); names = s.Names(t) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the alert did not show %s connecting to %s; it shows:\n%s", how, exe, addr, dumpNames(names))
			}
			time.Sleep(200 * time.Millisecond)
		}
		alertOnMonitor(t, s, ed, how, mons, want, px, py)
		before := ed.Text(t)
		time.Sleep(700 * time.Millisecond) // past the arm delay: only the keys' meaning matters now
		s.ShellType(t, "asked\n ")
		waitEditorFocused(t, s, ed, how)
		ed.WaitText(t, before+"asked\n ")
		select {
		case r := <-result:
			t.Fatalf("%s: the connection ended before anyone answered (keys typed into the editor answered?): %+v", how, r)
		default:
		}
		if screenshot != "" {
			s.Screenshot(t, screenshot)
		}
		s.RealClick(t, "push button", "Allow")
		select {
		case r := <-result:
			if !r.OK {
				t.Fatalf("%s: the held connection did not complete after Allow: %+v", how, r)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the client did not finish after Allow", how)
		}
		s.WaitForGone(t, "push button", "Allow", 10*time.Second)
	}

	work(1, 0)
	alertOn("the editor on the second monitor, the pointer on the first", servers.TCP4, 1, "x11-en-alert-active-monitor")
	work(0, 1)
	alertOn("the editor on the first monitor, the pointer on the second", servers.TCP4b, 0, "")
}

// waitEditorFocused waits up to 5 s until the window manager (the compositor, on Wayland) gives the editor
// the keyboard and the editor knows itself active; what names the step after which it must be so.
func waitEditorFocused(t *testing.T, s *Session, ed *Editor, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.ShellFocus(t) != ed.Title || !ed.Active(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the keyboard focus is on %q (editor active: %v)", what, s.ShellFocus(t), ed.Active(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
