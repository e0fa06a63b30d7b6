package gui

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// The "gnome" session kind: Debian 12's GNOME Shell 43 as a headless Wayland compositor with a virtual
// monitor, in a mount namespace where /run/systemd is an empty tmpfs (so it uses its dummy login manager
// instead of logind seats), on the session's own bus with a private system bus of its own (its panel
// indicators read UPower and others there), and the AppIndicator extension enabled in the session's private
// dconf. --unsafe-mode opens org.gnome.Shell.Eval: the tests read stacking and focus from the compositor and
// drive its own virtual input devices (Clutter's seat), which reach the apps as real input.

// gnomeExtension is Debian's AppIndicator/StatusNotifierItem host extension.
const gnomeExtension = "ubuntu-appindicators@ubuntu.com"

func startGnomeShell(t *testing.T, s *Session, base []string) {
	t.Helper()
	if _, err := exec.LookPath("gnome-shell"); err != nil {
		t.Fatal("gnome-shell is missing (tests/install-deps.sh installs it)")
	}
	for _, kv := range [][2]string{{"disable-user-extensions", "false"}, {"enabled-extensions", "['" + gnomeExtension + "']"},
		{"welcome-dialog-last-shown-version", "'99'"}} {
		cmd := exec.Command("gsettings", "set", "org.gnome.shell", kv[0], kv[1])
		cmd.Env = base
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gsettings set org.gnome.shell %s: %v\n%s", kv[0], err, out)
		}
	}
	sys := testrig.StartSystemBus(t, testrig.BusOptions{})
	env := append(append([]string{}, base...), "DBUS_SYSTEM_BUS_ADDRESS="+sys.Address)
	hide := "if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd || exit 1; fi; "
	// Mutter starts Xwayland only if /tmp/.X11-unix is root's and mode 1777; a machine's may not be (here it
	// was 1755). Its own, in the namespace: X clients outside reach the display by its abstract socket.
	hide += "mkdir -p /tmp/.X11-unix && mount -t tmpfs -o mode=1777 tmpfs /tmp/.X11-unix || exit 1; "
	monitors := strings.Repeat(" --virtual-monitor 1280x800", max(s.monitors, 1))
	proc(t, s.Log, env, s.dir, nil, "unshare", "-m", "sh", "-c", hide+
		"exec gnome-shell --headless --wayland"+monitors+" --unsafe-mode")
	waitFile(t, filepath.Join(s.dir, "wayland-0"), "gnome-shell", s.Log)
	s.Env = append(base, "WAYLAND_DISPLAY=wayland-0", "GDK_BACKEND=wayland")
	// Started: Eval answers and the startup animation is over. Leave the overview it opens on.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var starting bool
		if err := s.evalErr(`Main.layoutManager._startingUp`, &starting); err == nil && !starting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnome-shell did not finish starting:\n%s", s.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Mutter runs Xwayland (without --no-x11) and exports its display and authority in its own environment,
	// as a GNOME session hands them to the apps it starts. GDK_BACKEND stays wayland: the app is a Wayland
	// client that opens the X display for its alert alone.
	var xenv [2]string
	s.Eval(t, `[imports.gi.GLib.getenv("DISPLAY") || "", imports.gi.GLib.getenv("XAUTHORITY") || ""]`, &xenv)
	if xenv[0] == "" {
		t.Fatalf("gnome-shell exports no DISPLAY (no Xwayland):\n%s", s.Log)
	}
	s.Env = append(s.Env, "DISPLAY="+xenv[0], "XAUTHORITY="+xenv[1])
	// The virtual devices, made once: a device just made drops the first events sent to it.
	s.Eval(t, `const C = imports.gi.Clutter, seat = C.get_default_backend().get_default_seat();
		global._tattleKeyboard = seat.create_virtual_device(C.InputDeviceType.KEYBOARD_DEVICE);
		global._tattlePointer = seat.create_virtual_device(C.InputDeviceType.POINTER_DEVICE);
		Main.overview.hide(); true`, nil)
	deadline = time.Now().Add(10 * time.Second)
	for {
		var visible bool
		s.Eval(t, `Main.overview.visible`, &visible)
		if !visible {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GNOME Shell overview did not close")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Eval runs JavaScript in GNOME Shell (org.gnome.Shell.Eval) and stores its value, passed through
// JSON.stringify, into out (nil: ignored).
func (s *Session) Eval(t *testing.T, js string, out any) {
	t.Helper()
	if err := s.evalErr(js, out); err != nil {
		t.Fatal(err)
	}
}

func (s *Session) evalErr(js string, out any) error {
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		return fmt.Errorf("connect to the session bus: %w", err)
	}
	defer conn.Close()
	var ok bool
	var res string
	code, _ := json.Marshal(js)
	wrapped := "JSON.stringify(eval(" + string(code) + ") ?? null)"
	if err := conn.Object("org.gnome.Shell", "/org/gnome/Shell").Call("org.gnome.Shell.Eval", 0, wrapped).Store(&ok, &res); err != nil {
		return fmt.Errorf("org.gnome.Shell.Eval: %w", err)
	}
	if !ok {
		return fmt.Errorf("org.gnome.Shell.Eval %q failed: %s", js, res)
	}
	// Eval hands back the JSON of its value: our JSON string.
	var inner string
	if err := json.Unmarshal([]byte(res), &inner); err != nil {
		return fmt.Errorf("org.gnome.Shell.Eval %q returned %q: %w", js, res, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal([]byte(inner), out); err != nil {
		return fmt.Errorf("org.gnome.Shell.Eval %q returned %q: %w", js, inner, err)
	}
	return nil
}

// gnomeScreenshot saves the screen through org.gnome.Shell.Screenshot.
func (s *Session) gnomeScreenshot(t *testing.T, dst string) {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ok bool
	var used string
	if err := conn.Object("org.gnome.Shell.Screenshot", "/org/gnome/Shell/Screenshot").Call("org.gnome.Shell.Screenshot.Screenshot", 0,
		false, false, dst).Store(&ok, &used); err != nil || !ok {
		t.Fatalf("org.gnome.Shell.Screenshot: %v %v", ok, err)
	}
}

// ShellWindow is a window as the compositor (GNOME Shell or KWin) sees it.
type ShellWindow struct {
	Title      string `json:"title"`
	Focused    bool   `json:"focused"`
	Fullscreen bool   `json:"fullscreen"`
	Above      bool   `json:"above"`
	Layer      int    `json:"layer"`
	X          int    `json:"x"` // the buffer's origin on the screen (where the client's coordinates start)
	Y          int    `json:"y"`
	W          int    `json:"w"`
	H          int    `json:"h"`
	X11        bool   `json:"x11"` // an X11 client (on Xwayland)
}

// ShellStack returns the windows of the active workspace bottom to top, as Mutter (or KWin, or the X11
// session's window manager) stacks them.
func (s *Session) ShellStack(t *testing.T) []ShellWindow {
	t.Helper()
	switch s.Kind {
	case "kwin":
		return s.kwinStack(t)
	case "x11":
		return s.x11Stack(t)
	}
	var ws []ShellWindow
	s.Eval(t, `global.display.sort_windows_by_stacking(global.workspace_manager.get_active_workspace().list_windows()).map(w => {
		const r = w.get_buffer_rect();
		return {title: w.get_title() || "", focused: w.has_focus(), fullscreen: w.is_fullscreen(), above: w.is_above(),
			layer: w.get_layer(), x: r.x, y: r.y, w: r.width, h: r.height, x11: w.get_client_type() === 1};
	})`, &ws)
	return ws
}

// ShellFocus is the title of the window GNOME Shell (or KWin, or the X11 window manager) gives the keyboard
// ("" for none).
func (s *Session) ShellFocus(t *testing.T) string {
	t.Helper()
	switch s.Kind {
	case "kwin":
		return s.kwinFocus(t)
	case "x11":
		return s.x11Focus(t)
	}
	var title string
	s.Eval(t, `global.display.focus_window ? global.display.focus_window.get_title() : ""`, &title)
	return title
}

// ShellType types text ("\n": Return) with the compositor's virtual keyboard (Clutter's seat, or KWin's fake
// input: the real input path; on X11 the X server's XTEST keyboard).
func (s *Session) ShellType(t *testing.T, text string) {
	t.Helper()
	if s.Kind == "x11" {
		// xdotool type drops "\n": Return is pressed as a key.
		for i, line := range strings.Split(text, "\n") {
			if i > 0 {
				s.Keys(t, "Return")
			}
			if line != "" {
				s.Type(t, line)
			}
		}
		return
	}
	if s.Kind == "kwin" {
		s.kwinType(t, text)
		return
	}
	js, _ := json.Marshal(text)
	s.Eval(t, `(() => {
		const C = imports.gi.Clutter, G = imports.gi.GLib;
		const d = global._tattleKeyboard;
		for (const c of `+string(js)+`) {
			const k = c === "\n" ? C.KEY_Return : C.unicode_to_keysym(c.codePointAt(0));
			d.notify_keyval(G.get_monotonic_time(), k, C.KeyState.PRESSED);
			d.notify_keyval(G.get_monotonic_time(), k, C.KeyState.RELEASED);
		}
		return true;
	})()`, nil)
}

// ShellAltKey presses Alt+c with the compositor's virtual keyboard.
func (s *Session) ShellAltKey(t *testing.T, c rune) {
	t.Helper()
	if s.Kind == "kwin" {
		code, _, ok := evdevKey(c)
		if !ok {
			t.Fatalf("no key for %q", c)
		}
		in := s.kwin.input
		in.key(keyLeftAlt, true)
		in.key(code, true)
		in.key(code, false)
		in.key(keyLeftAlt, false)
		if err := in.roundtrip(); err != nil {
			t.Fatalf("KWin's fake input: %v", err)
		}
		return
	}
	s.Eval(t, `(() => {
		const C = imports.gi.Clutter, G = imports.gi.GLib;
		const d = global._tattleKeyboard, k = C.unicode_to_keysym(`+strconv.Itoa(int(c))+`);
		d.notify_keyval(G.get_monotonic_time(), C.KEY_Alt_L, C.KeyState.PRESSED);
		d.notify_keyval(G.get_monotonic_time(), k, C.KeyState.PRESSED);
		d.notify_keyval(G.get_monotonic_time(), k, C.KeyState.RELEASED);
		d.notify_keyval(G.get_monotonic_time(), C.KEY_Alt_L, C.KeyState.RELEASED);
		return true;
	})()`, nil)
}

// ShellClick moves the compositor's virtual pointer (on X11 the X server's XTEST pointer) to x, y on the
// screen and clicks the primary button.
func (s *Session) ShellClick(t *testing.T, x, y int) {
	t.Helper()
	if s.Kind == "x11" {
		s.xdotool(t, "mousemove", "--sync", strconv.Itoa(x), strconv.Itoa(y), "click", "1")
		return
	}
	if s.Kind == "kwin" {
		s.kwinClick(t, x, y)
		return
	}
	s.Eval(t, `(() => {
		const C = imports.gi.Clutter, G = imports.gi.GLib;
		const d = global._tattlePointer;
		d.notify_absolute_motion(G.get_monotonic_time(), `+strconv.Itoa(x)+`, `+strconv.Itoa(y)+`);
		return true;
	})()`, nil)
	time.Sleep(100 * time.Millisecond) // a hand moves, then presses
	s.Eval(t, `(() => {
		const C = imports.gi.Clutter, G = imports.gi.GLib;
		const d = global._tattlePointer;
		d.notify_button(G.get_monotonic_time(), C.BUTTON_PRIMARY, C.ButtonState.PRESSED);
		d.notify_button(G.get_monotonic_time(), C.BUTTON_PRIMARY, C.ButtonState.RELEASED);
		return true;
	})()`, nil)
}

// ShellClickAccessible clicks the middle of the app's accessible with role and name in the window titled
// window: GTK on Wayland reports extents from its window's origin, which the compositor knows; on X11
// (Xwayland) they are on the screen already.
func (s *Session) ShellClickAccessible(t *testing.T, window, role, name string) {
	t.Helper()
	e := s.appExtents(t, role, name)
	for _, w := range s.ShellStack(t) {
		if w.Title == window {
			if w.X11 {
				s.ShellClick(t, e[0]+e[2]/2, e[1]+e[3]/2)
			} else {
				s.ShellClick(t, w.X+e[0]+e[2]/2, w.Y+e[1]+e[3]/2)
			}
			return
		}
	}
	t.Fatalf("GNOME Shell shows no window titled %q: %+v", window, s.ShellStack(t))
}

// Editor is a small GTK text window (tests/gui/editor.py) whose buffer the test reads back.
type Editor struct {
	Title string
	Cmd   *exec.Cmd
	buf   string
}

// StartEditor opens the editor in the session and waits until the compositor (or window manager) gives it
// the keyboard.
func StartEditor(t *testing.T, s *Session, title string) *Editor {
	t.Helper()
	e := &Editor{Title: title, buf: filepath.Join(s.dir, "editor-buffer")}
	e.Cmd = procAs(t, s.cred, s.Log, s.Env, s.dir, nil, "/usr/bin/python3", filepath.Join(testrig.RepoRoot(t), "tests", "gui", "editor.py"), title, e.buf)
	deadline := time.Now().Add(20 * time.Second)
	for s.ShellFocus(t) != title {
		if time.Now().After(deadline) {
			t.Fatalf("the editor did not get the focus (focus: %q):\n%s", s.ShellFocus(t), s.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Shell's focus is set; the client gets the keyboard focus event just after.
	for !e.Active(t) {
		if time.Now().After(deadline) {
			t.Fatal("GNOME Shell focused the editor but its window never became active")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// Text is what the editor's buffer holds.
func (e *Editor) Text(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(e.buf)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

// Active reports whether the editor's window has the keyboard, as GTK in the editor sees it.
func (e *Editor) Active(t *testing.T) bool {
	t.Helper()
	data, _ := os.ReadFile(e.buf + ".active")
	return string(data) == "yes"
}

// WaitText waits until the editor's buffer holds want.
func (e *Editor) WaitText(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Text(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the editor holds %q, want %q", e.Text(t), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Fullscreen asks the editor to fullscreen itself (SIGUSR1) and waits until Shell shows it so.
func (e *Editor) Fullscreen(t *testing.T, s *Session) {
	t.Helper()
	e.Cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, w := range s.ShellStack(t) {
			if w.Title == e.Title && w.Fullscreen {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the editor did not go fullscreen: %+v", s.ShellStack(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func titles(ws []ShellWindow) string {
	var b []string
	for _, w := range ws {
		b = append(b, fmt.Sprintf("%q(focus=%v fullscreen=%v layer=%d)", w.Title, w.Focused, w.Fullscreen, w.Layer))
	}
	return strings.Join(b, " < ")
}
