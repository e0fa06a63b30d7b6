// Package gui tests the GTK app `tattle` as a user meets it: a real session (session bus, accessibility
// bus, an X server with a window manager or a headless Wayland compositor), the real system bus with polkitd
// and the real tattled, real client programs making connections on loopback, and the app driven and read
// through the accessibility tree (AT-SPI). Screenshots go to $TATTLE_RESULTS_DIR/screenshots.
package gui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/app/i18n/i18ntest"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
	"github.com/tattlefw/tattle/tests/testbus"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// proc starts a process with env, logging its output to log, and stops it by PID when the test ends.
func proc(t testing.TB, log *testrig.LogTail, env []string, dir string, extra []*os.File, name string, args ...string) *exec.Cmd {
	t.Helper()
	return procAs(t, nil, log, env, dir, extra, name, args...)
}

// procAs is proc for a process running as another user (cred nil: as the test).
func procAs(t testing.TB, cred *syscall.Credential, log *testrig.LogTail, env []string, dir string, extra []*os.File, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.ExtraFiles = extra
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	testbus.StartLogged(t, cmd, log)
	return cmd
}

func waitFile(t testing.TB, path string, what string, log *testrig.LogTail) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not start (no %s):\n%s", what, path, log)
}

// Session is a desktop session of one display kind: "x11" (Xvfb + openbox), "wayland" (weston headless) or
// "gnome" (GNOME Shell headless on Wayland, gnome_test.go) or "kwin" (KWin's virtual backend on Wayland,
// kwin_test.go).
type Session struct {
	Kind string
	Env  []string // for processes of the session (the app, the AT-SPI script)
	Log  *testrig.LogTail
	dir  string
	cred *syscall.Credential // the session's user, nil for root
	kwin *kwinRig            // "kwin" only
	// monitors is how many monitors of 1280x800 the compositor shows, side by side ("gnome", "kwin" and
	// "x11"; the others have one).
	monitors int
}

// StartSession starts a session bus, the accessibility bus and the display server.
func StartSession(t *testing.T, kind string) *Session {
	t.Helper()
	return StartSessionAs(t, kind, 0)
}

// StartSessionAs starts a session of the user uid (0: root): its session and accessibility buses and the
// app run as that user; the display server and window manager run as root.
func StartSessionAs(t *testing.T, kind string, uid uint32) *Session {
	t.Helper()
	return startSession(t, kind, uid, 1)
}

// StartSessionMonitors starts a session of kind "gnome", "kwin" or "x11" whose compositor (X server) shows n
// monitors.
func StartSessionMonitors(t *testing.T, kind string, n int) *Session {
	t.Helper()
	if n != 1 && kind != "gnome" && kind != "kwin" && kind != "x11" {
		t.Fatalf("a %q session has one monitor", kind)
	}
	return startSession(t, kind, 0, n)
}

func startSession(t *testing.T, kind string, uid uint32, monitors int) *Session {
	t.Helper()
	s := &Session{Kind: kind, Log: &testrig.LogTail{}, monitors: monitors}
	if uid != 0 {
		s.cred = &syscall.Credential{Uid: uid, Gid: uid}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("session log:\n%s", s.Log)
		}
	})
	dir, err := os.MkdirTemp("", "tattle-gui-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700) // XDG_RUNTIME_DIR must be private
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.dir = dir
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.MkdirAll(home, 0o700)
	if uid != 0 {
		for _, p := range []string{dir, home, filepath.Join(dir, "data")} {
			if err := os.Chown(p, int(uid), int(uid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := []string{}
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "GDK_BACKEND", "NO_AT_BRIDGE",
			"LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE", "XDG_DATA_HOME", "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME":
			continue
		}
		base = append(base, e)
	}
	busAddr := "unix:path=" + filepath.Join(dir, "session-bus")
	base = append(base, "XDG_RUNTIME_DIR="+dir, "DBUS_SESSION_BUS_ADDRESS="+busAddr, "XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"HOME="+home, "GTK_THEME=Adwaita", "LANG=C.UTF-8")
	procAs(t, s.cred, s.Log, base, dir, nil, "dbus-daemon", "--session", "--nofork", "--nopidfile", "--nosyslog", "--address="+busAddr)
	waitFile(t, filepath.Join(dir, "session-bus"), "the session bus", s.Log)
	procAs(t, s.cred, s.Log, base, dir, nil, "/usr/libexec/at-spi-bus-launcher", "--launch-immediately")

	switch kind {
	case "x11":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		server := "Xvfb"
		if monitors > 1 {
			// Xvfb has one RandR output, and GDK 3 counts a monitor per output (x11monitors_test.go).
			server = "Xorg"
			proc(t, s.Log, base, dir, []*os.File{w}, "Xorg", xorgDummyArgs(t, s, monitors)...)
		} else {
			proc(t, s.Log, base, dir, []*os.File{w}, "Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset")
		}
		w.Close()
		num, err := bufio.NewReader(r).ReadString('\n')
		r.Close()
		if err != nil {
			t.Fatalf("%s did not report its display: %v\n%s", server, err, s.Log)
		}
		display := ":" + strings.TrimSpace(num)
		s.Env = append(base, "DISPLAY="+display, "GDK_BACKEND=x11")
		if monitors > 1 {
			s.x11SetMonitors(t, monitors) // before openbox, which reads the monitors as it starts
		}
		proc(t, s.Log, s.Env, dir, nil, "openbox", "--sm-disable")
		time.Sleep(300 * time.Millisecond) // openbox takes over the root window
	case "wayland":
		proc(t, s.Log, base, dir, nil, "weston", "--backend=headless-backend.so", "--use-pixman", "--width=1280", "--height=800",
			"--socket=tattle-wayland", "--idle-time=0", "--debug") // --debug: allows weston-screenshooter
		waitFile(t, filepath.Join(dir, "tattle-wayland"), "weston", s.Log)
		s.Env = append(base, "WAYLAND_DISPLAY=tattle-wayland", "GDK_BACKEND=wayland")
	case "gnome":
		startGnomeShell(t, s, base)
	case "kwin":
		startKWin(t, s, base)
	default:
		t.Fatalf("unknown session kind %q", kind)
	}
	return s
}

// Screenshot saves the whole screen as results/screenshots/name.png and returns its path.
func (s *Session) Screenshot(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(testrig.ResultsDir(t), "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name+".png")
	time.Sleep(700 * time.Millisecond) // let the last frame be drawn
	switch s.Kind {
	case "x11":
		cmd := exec.Command("import", "-window", "root", dst)
		cmd.Env = s.Env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("screenshot: %v\n%s", err, out)
		}
	case "wayland":
		tmp := t.TempDir()
		cmd := exec.Command("weston-screenshooter")
		cmd.Env, cmd.Dir = s.Env, tmp
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd = exec.CommandContext(ctx, "weston-screenshooter")
		cmd.Env, cmd.Dir = s.Env, tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("screenshot: %v\n%s", err, out)
		}
		files, _ := filepath.Glob(filepath.Join(tmp, "*.png"))
		if len(files) != 1 {
			t.Fatalf("weston-screenshooter wrote %v", files)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	case "gnome":
		s.gnomeScreenshot(t, dst)
	case "kwin":
		s.kwinScreenshot(t, dst)
	}
	t.Logf("screenshot %s", dst)
	return dst
}

// atspi runs tests/gui/atspi.py in the session.
func (s *Session) atspi(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{filepath.Join(testrig.RepoRoot(t), "tests", "gui", "atspi.py")}, args...)...)
	cmd.Env = s.Env
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("atspi.py %v: %v: %s", args, err, stderr.String())
	}
	return string(out), nil
}

// WaitFor waits until the app shows an accessible with role and name.
func (s *Session) WaitFor(t *testing.T, role, name string, timeout time.Duration) {
	t.Helper()
	if _, err := s.atspi(t, "wait", "tattle", role, name, strconv.Itoa(int(timeout/time.Second))); err != nil {
		names, _ := s.atspi(t, "names", "tattle", "200")
		t.Fatalf("the app did not show %s %q: %v\nshowing: %s\nlog:\n%s", role, name, err, names, s.Log)
	}
}

// WaitForGone waits until the app no longer shows an accessible with role and name.
func (s *Session) WaitForGone(t *testing.T, role, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for hasName(s.Names(t), role, name) {
		if time.Now().After(deadline) {
			t.Fatalf("the app still shows %s %q after %v", role, name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitForText waits until the app shows an accessible with role whose name contains text.
func (s *Session) WaitForText(t *testing.T, role, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var names [][2]string
	for time.Now().Before(deadline) {
		names = s.Names(t)
		if hasName(names, role, text) {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("the app did not show a %s with %q; it shows:\n%s", role, text, dumpNames(names))
}

// x11Windows are the ids of the X windows titled title, in xdotool's order; the test fails when there is none.
func (s *Session) x11Windows(t *testing.T, title string) []string {
	t.Helper()
	find := exec.Command("xdotool", "search", "--name", "^"+regexp.QuoteMeta(title)+"$")
	find.Env = s.Env
	out, err := find.Output() // not runX's combined output: only the ids
	ids := strings.Fields(string(out))
	if err != nil || len(ids) == 0 {
		t.Fatalf("no X11 window titled %q: %v", title, err)
	}
	return ids
}

// ClickWindow clicks into the X11 window with that title (a real pointer click through the X server).
func (s *Session) ClickWindow(t *testing.T, title string) {
	t.Helper()
	ids := s.x11Windows(t, title)
	s.xdotool(t, "mousemove", "--window", ids[len(ids)-1], "20", "20", "click", "1")
}

// xdotool runs xdotool in the session (XTEST input, window lookups) and returns its output.
func (s *Session) xdotool(t *testing.T, args ...string) string {
	t.Helper()
	return s.runX(t, "xdotool", args...)
}

// runX runs the X client name with args in the session's environment (its DISPLAY) and returns its output;
// a failure fails the test.
func (s *Session) runX(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = s.Env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// Keys presses keys in the X11 session's focused window ("ctrl+l", "Return").
func (s *Session) Keys(t *testing.T, keys ...string) {
	t.Helper()
	s.xdotool(t, append([]string{"key", "--delay", "50"}, keys...)...)
}

// Type types text into the X11 session's focused window.
func (s *Session) Type(t *testing.T, text string) {
	t.Helper()
	s.xdotool(t, "type", "--delay", "20", text)
}

// States returns the AT-SPI states of the accessible with role and name ("active", "showing"...).
func (s *Session) States(t *testing.T, role, name string) []string {
	t.Helper()
	out, err := s.atspi(t, "states", "tattle", role, name)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	if err := json.Unmarshal([]byte(out), &states); err != nil {
		t.Fatalf("atspi.py states: %v: %q", err, out)
	}
	return states
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// appExtents is the screen box (x, y, width, height) of the app's accessible with role and name, which
// the clicks aim at; the test fails while it has no area.
func (s *Session) appExtents(t *testing.T, role, name string) [4]int {
	t.Helper()
	out, err := s.atspi(t, "extents", "tattle", role, name)
	if err != nil {
		t.Fatal(err)
	}
	var e [4]int
	if err := json.Unmarshal([]byte(out), &e); err != nil || e[2] == 0 || e[3] == 0 {
		t.Fatalf("atspi.py extents %s %q: %q (%v)", role, name, out, err)
	}
	return e
}

// RealClick clicks the middle of the accessible with role and name with the X server's pointer (XTEST, as
// a person's mouse: X11 delivers it as real input). X11 sessions only.
func (s *Session) RealClick(t *testing.T, role, name string) {
	t.Helper()
	e := s.appExtents(t, role, name)
	s.xdotool(t, "mousemove", "--sync", strconv.Itoa(e[0]+e[2]/2), strconv.Itoa(e[1]+e[3]/2), "click", "1")
}

// Options returns the choices of the combo box named name, whether its menu is open or not.
func (s *Session) Options(t *testing.T, name string) []string {
	t.Helper()
	out, err := s.atspi(t, "options", "tattle", "combo box", name)
	if err != nil {
		t.Fatal(err)
	}
	var opts []string
	if err := json.Unmarshal([]byte(out), &opts); err != nil {
		t.Fatalf("atspi.py options: %v: %q", err, out)
	}
	return opts
}

// Click activates the accessible with role and name.
func (s *Session) Click(t *testing.T, role, name string) {
	t.Helper()
	if _, err := s.atspi(t, "click", "tattle", role, name); err != nil {
		t.Fatal(err)
	}
}

// ShowPage switches the app's window to a page through its "show-page" action on the session bus
// (org.gtk.Actions, as `gapplication action` or the tray would).
func (s *Session) ShowPage(t *testing.T, page string) {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatalf("connect to the session bus: %v", err)
	}
	defer conn.Close()
	call := conn.Object("io.github.tattlefw.Tattle", "/io/github/tattlefw/Tattle").Call("org.gtk.Actions.Activate", 0,
		"show-page", []dbus.Variant{dbus.MakeVariant(page)}, map[string]dbus.Variant{})
	if call.Err != nil {
		t.Fatalf("activate show-page(%s): %v", page, call.Err)
	}
}

// SessionBus is the session bus address.
func (s *Session) SessionBus() string {
	for _, e := range s.Env {
		if v, ok := strings.CutPrefix(e, "DBUS_SESSION_BUS_ADDRESS="); ok {
			return v
		}
	}
	return ""
}

// Names returns [role, name] of everything the app shows.
func (s *Session) Names(t *testing.T) [][2]string {
	t.Helper()
	out, err := s.atspi(t, "names", "tattle", "4000")
	if err != nil {
		t.Fatal(err)
	}
	var names [][2]string
	if err := json.Unmarshal([]byte(out), &names); err != nil {
		t.Fatalf("atspi.py names: %v: %q", err, out)
	}
	return names
}

// Helper is the real tattled on a private system bus with polkitd.
type Helper struct {
	*testrig.SystemBus
	Conn *dbus.Conn
}

// StartHelper starts the system bus, polkitd and tattled (private pins, state and rules; no factory rules
// unless extra, further tattled flags, gives -factory-dir).
func StartHelper(t *testing.T, extra ...string) *Helper {
	t.Helper()
	if _, err := os.Stat("/usr/lib/polkit-1/polkitd"); err != nil {
		t.Fatal("polkitd is missing (apt-get install polkitd)")
	}
	root := testrig.RepoRoot(t)
	policy := "/usr/share/polkit-1/actions/io.github.tattlefw.tattle.policy"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		data, err := os.ReadFile(filepath.Join(root, "data", "io.github.tattlefw.tattle.policy"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(policy, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(policy) })
	}
	bus := testrig.StartSystemBus(t, testrig.BusOptions{
		Policies: []string{"/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf", filepath.Join(root, "data", "io.github.tattlefw.Tattle1.conf")},
	})
	h := &Helper{SystemBus: bus}
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.Conn = conn
	bus.Start(t, "/usr/lib/polkit-1/polkitd", "--no-debug")
	h.waitName(t, "org.freedesktop.PolicyKit1")

	dir := t.TempDir()
	pins := testrig.PinDir("gui")
	enforce.Uninstall(pins)
	t.Cleanup(func() { enforce.Uninstall(pins) })
	// Its own netfilter table and queue, removed afterwards: a table left behind would keep sending marked
	// packets to a queue nobody reads.
	netfilter.Uninstall(guiTable)
	t.Cleanup(func() { netfilter.Uninstall(guiTable) })
	args := []string{"-backend", "auto", "-pin-dir", pins, "-nft-table", guiTable, "-queue", guiQueue,
		"-state-dir", filepath.Join(dir, "state"),
		"-rules-dir", filepath.Join(dir, "rules.d"), "-factory-dir", "none", "-lock-file", filepath.Join(dir, "tattled.lock"), "-bus", "system", "-log-level", "info",
		// This checkout's app and tattlectl, built root-owned into directories only root may write: the
		// agent programs tattled trusts.
		"-gui-agents", appBinary(t), "-terminal-agents", testrig.Tattlectl(t)}
	bus.Start(t, testrig.Build(t).Tattled, append(args, extra...)...)
	h.waitName(t, api.BusName)
	return h
}

func (h *Helper) waitName(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var has bool
		h.Conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
		if has {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear on the system bus:\n%s", name, h.Log)
}

// StartScriptableHelper starts a helper whose administrator allows GUI scripting: tests that drive the pages
// through AT-SPI change nothing otherwise (TestForgedInputChangesNothing shows it refused).
func StartScriptableHelper(t *testing.T, extra ...string) *Helper {
	t.Helper()
	h := StartHelper(t, extra...)
	h.SetGUIScripting(t, true)
	return h
}

// Dial connects a client to the helper, closed when the test ends.
func (h *Helper) Dial(t *testing.T) *client.Client {
	t.Helper()
	cl, err := client.Dial(h.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// SetMode switches the helper's mode.
func (h *Helper) SetMode(t *testing.T, mode string) {
	t.Helper()
	if err := h.Conn.Object(api.BusName, api.ObjectPath).Call(api.DaemonInterface+".SetMode", 0, mode).Err; err != nil {
		t.Fatalf("SetMode %s: %v", mode, err)
	}
}

// SetGUIScripting sets whether the alert acts on accessibility actions and synthetic input
// (Settings.AllowGUIScripting): on, tests may press its buttons through AT-SPI.
func (h *Helper) SetGUIScripting(t *testing.T, on bool) {
	t.Helper()
	obj := h.Conn.Object(api.BusName, api.ObjectPath)
	var st api.Settings
	if err := obj.Call(api.DaemonInterface+".Settings", 0).Store(&st); err != nil {
		t.Fatalf("Settings: %v", err)
	}
	st.AllowGUIScripting = on
	if err := obj.Call(api.DaemonInterface+".SetSettings", 0, st).Err; err != nil {
		t.Fatalf("SetSettings: %v", err)
	}
}

// The GUI tests' netfilter table and queue (other rings use their own).
const (
	guiTable = "tattle_test_gui"
	guiQueue = "7461"
)

// HasPrompts reports whether the helper implements the Prompts interface (connection holding and agents).
func (h *Helper) HasPrompts(t *testing.T) bool {
	var xml string
	if err := h.Conn.Object(api.BusName, api.ObjectPath).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml); err != nil {
		t.Fatalf("introspect tattled: %v", err)
	}
	return strings.Contains(xml, api.PromptsInterface)
}

// AppOwner returns the unique bus name the process pid uses on the system bus.
func (h *Helper) AppOwner(t *testing.T, pid int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var names []string
		h.Conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names)
		for _, n := range names {
			if !strings.HasPrefix(n, ":") {
				continue
			}
			var p uint32
			if h.Conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, n).Store(&p) == nil && int(p) == pid {
				return n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the app (pid %d) is not on the system bus", pid)
	return ""
}

var appBuild = testrig.TrustedBuild{Env: "TATTLE_APP", Pkg: "github.com/tattlefw/tattle/app/tattle", BuildEnv: []string{"CGO_ENABLED=1"}}

// appBinary builds the app once per test binary.
func appBinary(t *testing.T) string { return appBuild.Path(t) }

// Lang is how the app is localized in a test.
type Lang struct {
	Name string              // "en" or "de"
	Env  []string            // LANG, LOCPATH, TATTLE_LOCALEDIR
	T    func(string) string // the translation the app should show
}

// English is the untranslated app.
func English() Lang {
	return Lang{Name: "en", Env: []string{"LANG=C.UTF-8"}, T: func(s string) string { return s }}
}

// German compiles de_DE.UTF-8 and po/de.po for the app; it skips the test when po/de.po is not there yet.
func German(t *testing.T) Lang {
	t.Helper()
	po := filepath.Join(testrig.RepoRoot(t), "po", "de.po")
	if _, err := os.Stat(po); err != nil {
		t.Skipf("no German translation yet (%s): %v", po, err)
	}
	locpath := i18ntest.Locale(t, "de_DE.UTF-8")
	cat := i18ntest.Catalog(t, "", "tattle", "de", po)
	msgs := readPO(t, po)
	return Lang{Name: "de", Env: []string{"LANG=de_DE.UTF-8", "LANGUAGE=de", "LOCPATH=" + locpath, "TATTLE_LOCALEDIR=" + cat},
		T: func(s string) string {
			if m := msgs[s]; m != "" {
				return m
			}
			return s
		}}
}

// readPO reads the singular msgid -> msgstr pairs of a .po file (enough to know what the app should show).
func readPO(t *testing.T, path string) map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var id, str *strings.Builder
	var cur *strings.Builder
	flush := func() {
		if id != nil && str != nil {
			out[id.String()] = str.String()
		}
		id, str, cur = nil, nil, nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "msgid "):
			flush()
			id = &strings.Builder{}
			cur = id
			line = strings.TrimPrefix(line, "msgid ")
		case strings.HasPrefix(line, "msgstr "):
			str = &strings.Builder{}
			cur = str
			line = strings.TrimPrefix(line, "msgstr ")
		case strings.HasPrefix(line, "msgid_plural"), strings.HasPrefix(line, "msgstr["):
			cur = nil
			continue
		case strings.HasPrefix(line, "\""):
		default:
			continue
		}
		if cur != nil {
			if s, err := strconv.Unquote(line); err == nil {
				cur.WriteString(s)
			}
		}
	}
	flush()
	return out
}

// App is a running tattle.
type App struct {
	Cmd   *exec.Cmd
	Owner string // its unique name on the system bus
}

// StartApp runs the app in the session against the helper's bus, with extra environment.
func StartApp(t *testing.T, s *Session, h *Helper, lang Lang, extra ...string) *App {
	t.Helper()
	env := append(append(append([]string{}, s.Env...), "DBUS_SYSTEM_BUS_ADDRESS="+h.Address), lang.Env...)
	env = append(env, extra...)
	cmd := procAs(t, s.cred, s.Log, env, s.dir, nil, appBinary(t))
	a := &App{Cmd: cmd}
	s.WaitFor(t, "frame", lang.T("Tattle"), 30*time.Second)
	a.Owner = h.AppOwner(t, cmd.Process.Pid)
	return a
}

// hasName reports whether names holds an accessible with that role whose name contains want.
func hasName(names [][2]string, role, want string) bool {
	for _, n := range names {
		if (role == "" || n[0] == role) && strings.Contains(n[1], want) {
			return true
		}
	}
	return false
}

func dumpNames(names [][2]string) string {
	var b strings.Builder
	seen := map[string]bool{}
	var lines []string
	for _, n := range names {
		l := n[0] + ": " + n[1]
		if !seen[l] {
			seen[l] = true
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

var _ = io.EOF
