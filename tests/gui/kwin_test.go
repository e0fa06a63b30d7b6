package gui

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// The "kwin" session kind: Debian 12's KWin 5.27 (kwin_wayland --virtual: its own virtual output, rendered
// with llvmpipe) on the session's bus with a private system bus of its own. The tests read stacking and
// focus from KWin through its scripting API (org.kde.kwin.Scripting: a script reports back to the test over
// the session bus), drive its fake input protocol (org_kde_kwin_fake_input, the input KWin's own stack
// delivers as real input) and take screenshots through org.kde.KWin.ScreenShot2. Both privileged interfaces
// are granted the way KWin grants them on a desktop: a desktop file whose Exec is the client's executable
// lists them (X-KDE-Wayland-Interfaces, X-KDE-DBUS-Restricted-Interfaces); the client is this test binary.

const kwinSocket = "tattle-kwin"

// kwinRig is the test's side of a KWin session: its bus connection (scripts' reports arrive there) and its
// Wayland connection with the fake input device.
type kwinRig struct {
	conn    *dbus.Conn
	reports chan kwinReport
	input   *fakeInput
	mu      sync.Mutex // serializes script runs (one report channel)
	n       int
	// systemBus is the session's private system bus (KWin's, and Plasma's in the tray test): never the host's.
	systemBus string
}

type kwinReport struct{ token, data string }

// kwinProbe receives what the scripts KWin runs report (callDBus).
type kwinProbe struct{ reports chan kwinReport }

func (p kwinProbe) Report(token, data string) *dbus.Error {
	select {
	case p.reports <- kwinReport{token, data}:
	default: // nobody waits for it: a late report of a script that timed out
	}
	return nil
}

const (
	kwinProbePath  = "/io/github/tattlefw/TattleTest/KWinProbe"
	kwinProbeIface = "io.github.tattlefw.TattleTest.KWinProbe"
)

func startKWin(t *testing.T, s *Session, base []string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/kwin_wayland"); err != nil {
		t.Fatal("kwin_wayland is missing (tests/install-deps.sh installs kwin-wayland)")
	}
	// Debian ships kwin_wayland with the file capability cap_sys_resource=ep; where that capability is not in
	// the bounding set (containers, this machine) exec fails with EPERM. A copy without the capability runs
	// the same; its name must still end in kwin_wayland (KWin's QPA plugin refuses other executables).
	bin := filepath.Join(s.dir, "bin")
	os.MkdirAll(bin, 0o755)
	kwin := filepath.Join(bin, "kwin_wayland")
	data, err := os.ReadFile("/usr/bin/kwin_wayland")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kwin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The privileges KWin gives this test binary: its fake input and its screenshots.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	apps := filepath.Join(s.dir, "data", "applications")
	os.MkdirAll(apps, 0o755)
	desktop := "[Desktop Entry]\nType=Application\nName=Tattle GUI test\nNoDisplay=true\nExec=" + self +
		"\nX-KDE-Wayland-Interfaces=org_kde_kwin_fake_input\nX-KDE-DBUS-Restricted-Interfaces=org.kde.KWin.ScreenShot2\n"
	if err := os.WriteFile(filepath.Join(apps, "tattle-gui-test.desktop"), []byte(desktop), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := testrig.StartSystemBus(t, testrig.BusOptions{})
	env := append(append([]string{}, base...), "DBUS_SYSTEM_BUS_ADDRESS="+sys.Address, "XDG_CACHE_HOME="+filepath.Join(s.dir, "cache"),
		"KWIN_XKB_DEFAULT_KEYMAP=1", "XKB_DEFAULT_LAYOUT=us")
	// --xwayland: KWin runs Xwayland and starts the applications it is given, once that is up, with its
	// DISPLAY and XAUTHORITY (as Plasma's session gets them): here one that writes them down for the test.
	xenv := filepath.Join(s.dir, "kwin-x11-env")
	proc(t, s.Log, env, s.dir, nil, kwin, "--virtual", "--width", "1280", "--height", "800", "--output-count", strconv.Itoa(max(s.monitors, 1)), "--socket", kwinSocket,
		"--no-lockscreen", "--no-global-shortcuts", "--no-kactivities", "--xwayland",
		"sh -c 'printf \"%s\\n%s\\n\" \"$DISPLAY\" \"$XAUTHORITY\" >"+xenv+".tmp && mv "+xenv+".tmp "+xenv+"'")
	waitFile(t, filepath.Join(s.dir, kwinSocket), "kwin_wayland", s.Log)
	waitFile(t, xenv, "KWin's Xwayland", s.Log)
	data, err = os.ReadFile(xenv)
	if err != nil {
		t.Fatal(err)
	}
	x := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(x) != 2 || x[0] == "" {
		t.Fatalf("KWin started its applications with DISPLAY and XAUTHORITY %q:\n%s", data, s.Log)
	}
	// GDK_BACKEND stays wayland: the app is a Wayland client that opens the X display for its alert alone.
	s.Env = append(base, "WAYLAND_DISPLAY="+kwinSocket, "GDK_BACKEND=wayland", "DISPLAY="+x[0])
	if x[1] != "" { // kwin_wayland started without its wrapper makes no authority file
		s.Env = append(s.Env, "XAUTHORITY="+x[1])
	}

	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rig := &kwinRig{conn: conn, reports: make(chan kwinReport, 16), systemBus: sys.Address}
	if err := conn.Export(kwinProbe{rig.reports}, kwinProbePath, kwinProbeIface); err != nil {
		t.Fatal(err)
	}
	s.kwin = rig
	// Started: its scripting answers (the object is there once the workspace is).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var focus string
		if err := s.kwinScriptErr(`workspace.activeClient ? workspace.activeClient.caption : ""`, &focus); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("KWin scripting did not answer: %v\n%s", err, s.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	in, err := dialFakeInput(filepath.Join(s.dir, kwinSocket))
	if err != nil {
		t.Fatalf("KWin's fake input: %v\n%s", err, s.Log)
	}
	t.Cleanup(func() { in.Close() })
	rig.input = in
}

// KWinScript runs JavaScript in KWin's scripting engine and stores the JSON of the value of expr into out
// (nil: ignored). The script reports back over the session bus with callDBus.
func (s *Session) KWinScript(t *testing.T, expr string, out any) {
	t.Helper()
	if err := s.kwinScriptErr(expr, out); err != nil {
		t.Fatal(err)
	}
}

var errNoReport = errors.New("the KWin script did not report")

func (s *Session) kwinScriptErr(expr string, out any) error {
	k := s.kwin
	k.mu.Lock()
	defer k.mu.Unlock()
	k.n++
	token := strconv.Itoa(k.n)
	plugin := "tattle-probe-" + token
	tok, _ := json.Marshal(token)
	js := fmt.Sprintf("callDBus(%q, %q, %q, \"Report\", %s, JSON.stringify((() => (%s))() ?? null));\n",
		k.conn.Names()[0], kwinProbePath, kwinProbeIface, tok, expr)
	file := filepath.Join(s.dir, plugin+".js")
	if err := os.WriteFile(file, []byte(js), 0o644); err != nil {
		return err
	}
	defer os.Remove(file)
	obj := k.conn.Object("org.kde.KWin", "/Scripting")
	var id int32
	if err := obj.Call("org.kde.kwin.Scripting.loadScript", 0, file, plugin).Store(&id); err != nil {
		return fmt.Errorf("org.kde.kwin.Scripting.loadScript: %w", err)
	}
	if id < 0 {
		return fmt.Errorf("org.kde.kwin.Scripting.loadScript %s: id %d", file, id)
	}
	defer obj.Call("org.kde.kwin.Scripting.unloadScript", 0, plugin)
	// start runs the scripts loaded and not yet running: this one.
	if err := obj.Call("org.kde.kwin.Scripting.start", 0).Err; err != nil {
		return fmt.Errorf("org.kde.kwin.Scripting.start: %w", err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-k.reports:
			if r.token != token {
				continue
			}
			if out == nil {
				return nil
			}
			if err := json.Unmarshal([]byte(r.data), out); err != nil {
				return fmt.Errorf("KWin script %q reported %q: %w", expr, r.data, err)
			}
			return nil
		case <-timeout:
			return fmt.Errorf("%w: %q (its errors are in KWin's log)", errNoReport, expr)
		}
	}
}

// kwinStack is ShellStack for KWin: its managed windows bottom to top in its stacking order.
func (s *Session) kwinStack(t *testing.T) []ShellWindow {
	t.Helper()
	var ws []ShellWindow
	s.KWinScript(t, `workspace.clientList().sort((a, b) => a.stackingOrder - b.stackingOrder).map(w => {
		const r = w.bufferGeometry;
		return {title: w.caption, focused: w.active, fullscreen: w.fullScreen, above: w.keepAbove, layer: w.layer,
			x: r.x, y: r.y, w: r.width, h: r.height, x11: w.windowId > 0};
	})`, &ws)
	return ws
}

func (s *Session) kwinFocus(t *testing.T) string {
	t.Helper()
	var title string
	s.KWinScript(t, `workspace.activeClient ? workspace.activeClient.caption : ""`, &title)
	return title
}

// kwinScreenshot saves the whole workspace through org.kde.KWin.ScreenShot2 (raw pixels on a pipe).
func (s *Session) kwinScreenshot(t *testing.T, dst string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	type read struct {
		data []byte
		err  error
	}
	got := make(chan read, 1)
	go func() { data, err := io.ReadAll(r); got <- read{data, err} }() // ends at EOF: KWin closes its end
	var res map[string]dbus.Variant
	err = s.kwin.conn.Object("org.kde.KWin.ScreenShot2", "/org/kde/KWin/ScreenShot2").Call("org.kde.KWin.ScreenShot2.CaptureWorkspace", 0,
		map[string]dbus.Variant{"native-resolution": dbus.MakeVariant(true)}, dbus.UnixFD(w.Fd())).Store(&res)
	w.Close()
	if err != nil {
		t.Fatalf("org.kde.KWin.ScreenShot2.CaptureWorkspace: %v", err)
	}
	var rd read
	select {
	case rd = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("KWin did not finish writing the screenshot")
	}
	if rd.err != nil {
		t.Fatal(rd.err)
	}
	num := func(k string) int {
		switch v := res[k].Value().(type) {
		case uint32:
			return int(v)
		case int32:
			return int(v)
		}
		t.Fatalf("ScreenShot2 result %s = %v (%v)", k, res[k], res)
		return 0
	}
	width, height, stride, format := num("width"), num("height"), num("stride"), num("format")
	if width == 0 || height == 0 || len(rd.data) < stride*height {
		t.Fatalf("ScreenShot2: %dx%d stride %d, %d bytes", width, height, stride, len(rd.data))
	}
	img := image.NewNRGBA(image.Rect(0, 0, width, height))
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			p := rd.data[y*stride+4*x:]
			var c color.NRGBA
			switch format {
			case 4, 5, 6: // QImage::Format_RGB32, ARGB32, ARGB32_Premultiplied: 0xAARRGGBB, little endian
				c = color.NRGBA{p[2], p[1], p[0], 255}
			case 16, 17, 18: // RGBX8888, RGBA8888, RGBA8888_Premultiplied: bytes R G B A
				c = color.NRGBA{p[0], p[1], p[2], 255}
			default:
				t.Fatalf("ScreenShot2: QImage format %d not handled", format)
			}
			img.SetNRGBA(x, y, c)
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// kwinType types text ("\n": Return) with KWin's fake input keyboard (evdev key codes, US layout).
func (s *Session) kwinType(t *testing.T, text string) {
	t.Helper()
	for _, c := range text {
		code, shift, ok := evdevKey(c)
		if !ok {
			t.Fatalf("no key for %q on a US keyboard here", c)
		}
		if shift {
			s.kwin.input.key(keyLeftShift, true)
		}
		s.kwin.input.key(code, true)
		s.kwin.input.key(code, false)
		if shift {
			s.kwin.input.key(keyLeftShift, false)
		}
	}
	if err := s.kwin.input.roundtrip(); err != nil {
		t.Fatalf("KWin's fake input: %v", err)
	}
}

// kwinClick moves KWin's fake pointer to x, y on the screen and clicks the primary button.
func (s *Session) kwinClick(t *testing.T, x, y int) {
	t.Helper()
	s.kwinClickButton(t, x, y, btnLeft)
}

// kwinClickButton moves KWin's fake pointer to x, y and clicks button (btnLeft, btnRight).
func (s *Session) kwinClickButton(t *testing.T, x, y int, button uint32) {
	t.Helper()
	in := s.kwin.input
	in.send(fakeInputMotionAbsolute, fixed(x), fixed(y))
	if err := in.roundtrip(); err != nil {
		t.Fatalf("KWin's fake input: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // a hand moves, then presses
	in.send(fakeInputButton, button, 1)
	in.send(fakeInputButton, button, 0)
	if err := in.roundtrip(); err != nil {
		t.Fatalf("KWin's fake input: %v", err)
	}
}

const (
	keyLeftShift = 42
	keyLeftAlt   = 56
	keyEnter     = 28
	keySpace     = 57
	btnLeft      = 0x110
	btnRight     = 0x111
)

// evdevKey is the Linux key code typing c on a US keyboard, and whether it needs Shift.
func evdevKey(c rune) (code uint32, shift bool, ok bool) {
	const rows = "qwertyuiop" + "asdfghjkl" + "zxcvbnm"
	starts := []struct {
		from, to int
		code     uint32
	}{{0, 10, 16}, {10, 19, 30}, {19, 26, 44}} // KEY_Q, KEY_A, KEY_Z
	lower := c
	if c >= 'A' && c <= 'Z' {
		lower, shift = c-'A'+'a', true
	}
	if i := strings.IndexRune(rows, lower); i >= 0 {
		for _, r := range starts {
			if i >= r.from && i < r.to {
				return r.code + uint32(i-r.from), shift, true
			}
		}
	}
	switch {
	case c == ' ':
		return keySpace, false, true
	case c == '\n':
		return keyEnter, false, true
	case c == '0':
		return 11, false, true
	case c >= '1' && c <= '9':
		return 2 + uint32(c-'1'), false, true
	}
	return 0, false, false
}

// fakeInput is a Wayland client of its own, written on the wire protocol, bound to KWin's
// org_kde_kwin_fake_input: what KWin receives there it feeds into its input stack as a device's events.
type fakeInput struct {
	c      *net.UnixConn
	mu     sync.Mutex
	nextID uint32
	dev    uint32
}

// Requests of org_kde_kwin_fake_input (version 4).
const (
	fakeInputAuthenticate   = 0
	fakeInputButton         = 2
	fakeInputMotionAbsolute = 9
	fakeInputKeyboardKey    = 10
)

var errNoFakeInput = errors.New("KWin offers this client no org_kde_kwin_fake_input (is it named in X-KDE-Wayland-Interfaces?)")

func dialFakeInput(socket string) (*fakeInput, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", socket, err)
	}
	f := &fakeInput{c: c, nextID: 2}
	registry := f.newID()
	f.send1(1, 1, u32(registry)) // wl_display.get_registry
	var name, version uint32
	err = f.sync(func(obj, op uint32, args []byte) {
		if obj == registry && op == 0 { // wl_registry.global(name, interface, version)
			n := binary.LittleEndian.Uint32(args)
			iface, rest := wlString(args[4:])
			if iface == "org_kde_kwin_fake_input" && len(rest) >= 4 {
				name, version = n, binary.LittleEndian.Uint32(rest)
			}
		}
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	if version < 4 {
		c.Close()
		if version == 0 {
			return nil, errNoFakeInput
		}
		return nil, fmt.Errorf("org_kde_kwin_fake_input version %d, keyboard keys need 4", version)
	}
	f.dev = f.newID()
	args := append(append(u32(name), wlStr("org_kde_kwin_fake_input")...), append(u32(4), u32(f.dev)...)...)
	f.send1(registry, 0, args) // wl_registry.bind
	f.send1(f.dev, fakeInputAuthenticate, append(wlStr("Tattle GUI test"), wlStr("drives the desktop tests")...))
	if err := f.roundtrip(); err != nil {
		c.Close()
		return nil, err
	}
	return f, nil
}

func (f *fakeInput) Close() error { return f.c.Close() }

func (f *fakeInput) newID() uint32 { id := f.nextID; f.nextID++; return id }

func (f *fakeInput) key(code uint32, pressed bool) {
	state := uint32(0)
	if pressed {
		state = 1
	}
	f.send(fakeInputKeyboardKey, code, state)
}

// send sends a request of the fake input device with uint/fixed arguments.
func (f *fakeInput) send(op uint32, args ...uint32) {
	var b []byte
	for _, a := range args {
		b = append(b, u32(a)...)
	}
	f.send1(f.dev, op, b)
}

func (f *fakeInput) send1(obj, op uint32, args []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := append(u32(obj), u32(uint32(8+len(args))<<16|op)...)
	f.c.Write(append(msg, args...)) // a failed write shows in the next roundtrip
}

// roundtrip waits until KWin has handled every request sent so far (wl_display.sync), failing on a
// protocol error it reports.
func (f *fakeInput) roundtrip() error { return f.sync(nil) }

func (f *fakeInput) sync(event func(obj, op uint32, args []byte)) error {
	cb := f.newID()
	f.send1(1, 0, u32(cb)) // wl_display.sync
	f.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(f.c, hdr); err != nil {
			return fmt.Errorf("read from KWin: %w", err)
		}
		obj, size, op := binary.LittleEndian.Uint32(hdr), binary.LittleEndian.Uint32(hdr[4:])>>16, binary.LittleEndian.Uint32(hdr[4:])&0xffff
		args := make([]byte, size-8)
		if _, err := io.ReadFull(f.c, args); err != nil {
			return fmt.Errorf("read from KWin: %w", err)
		}
		switch {
		case obj == 1 && op == 0: // wl_display.error(object, code, message)
			msg, _ := wlString(args[8:])
			return fmt.Errorf("KWin: Wayland protocol error on object %d, code %d: %s", binary.LittleEndian.Uint32(args), binary.LittleEndian.Uint32(args[4:]), msg)
		case obj == cb && op == 0: // wl_callback.done
			return nil
		case event != nil:
			event(obj, op, args)
		}
	}
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// fixed is a Wayland fixed-point number (24.8).
func fixed(v int) uint32 { return uint32(int32(v * 256)) }

func wlStr(s string) []byte {
	b := append(u32(uint32(len(s)+1)), s...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func wlString(b []byte) (string, []byte) {
	if len(b) < 4 {
		return "", nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	padded := (n + 3) &^ 3
	if n == 0 || len(b) < 4+padded {
		return "", nil
	}
	return string(b[4 : 4+n-1]), b[4+padded:]
}
