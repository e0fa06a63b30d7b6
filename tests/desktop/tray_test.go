package desktop

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/tray"
	"github.com/tattlefw/tattle/app/tray/traytest"
	"github.com/tattlefw/tattle/tests/testbus"
)

// resultsDir is where screenshots go, beside the GUI tests' ones: $TATTLE_RESULTS_DIR/screenshots (CI
// artifacts), else tests/output/screenshots.
func resultsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TATTLE_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "tests", "output")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProcess runs a program for the test's lifetime, stopping it by its PID at the end; its output goes
// to the test log when the test fails.
func startProcess(t *testing.T, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		testbus.Stop(cmd)
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd
}

// startXvfb starts an X server on a free display (Xvfb picks it and reports it on a pipe) and returns the
// DISPLAY value.
func startXvfb(t *testing.T, size string) string {
	t.Helper()
	xvfb := tool(t, "Xvfb", "xvfb")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// -wr: a white root window, so that only what clients draw is dark.
	cmd := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", size+"x24", "-nolisten", "tcp", "-wr")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Xvfb: %v", err)
	}
	w.Close()
	testbus.StopOnCleanup(t, cmd)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case d := <-line:
		if d == "" {
			t.Fatal("Xvfb reported no display")
		}
		return ":" + d
	case <-time.After(15 * time.Second):
		t.Fatal("Xvfb did not start within 15 s")
	}
	return ""
}

// screenshot saves the whole X screen as a PNG and returns the image.
func screenshot(t *testing.T, env []string, path string) image.Image {
	t.Helper()
	importCmd := tool(t, "import", "imagemagick")
	run(t, "", env, importCmd, "-window", "root", path)
	return decodePNG(t, path)
}

// darkPixels counts pixels darker than mid-grey in a rectangle.
func darkPixels(img image.Image, r image.Rectangle) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if (cr+cg+cb)/3 < 0x6000 {
				n++
			}
		}
	}
	return n
}

// The tray item in a real panel: Debian's status-notifier-watcher (an independent implementation of the
// watcher) and gtk-sni-tray-standalone (a GTK panel that draws items and shows their menus with
// libdbusmenu-gtk3, the reference dbusmenu client) run on a private X server and session bus. The panel
// must draw Tattle's icon, a click on it must reach the app, its menu must open and a chosen entry must run
// the app's callback. Screenshots land in tests/output/screenshots (x11-tray-*.png).
func TestTrayInRealPanel(t *testing.T) {
	xdotool := tool(t, "xdotool", "xdotool")
	out := resultsDir(t)
	env, conn := startPanel(t, true)

	available := make(chan bool, 8)
	clicked := make(chan string, 8)
	tr, err := tray.New(context.Background(), conn, tray.Options{
		ID: appID, Title: "Tattle",
		OnActivate:  func() { clicked <- "activate" },
		OnAvailable: func(ok bool) { available <- ok },
	})
	if err != nil {
		t.Fatalf("tray.New: %v", err)
	}
	defer tr.Close()
	err = tr.SetMenu([]tray.Item{
		{Label: "Open Monitor", OnClick: func() { clicked <- "open" }},
		{Separator: true},
		{Label: "Mode", Children: []tray.Item{
			{Label: "Alert", Toggle: tray.Radio, Checked: true},
			{Label: "Silent (allow)", Toggle: tray.Radio},
		}},
		{Label: "Quit", OnClick: func() { clicked <- "quit" }},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The panel registers as host; once it has, the item counts as shown.
	deadline := time.After(20 * time.Second)
	for shown := false; !shown; {
		select {
		case shown = <-available:
		case <-deadline:
			t.Fatal("the panel never became the tray host for the item (OnAvailable(true) not called)")
		}
	}

	// The panel (no window manager places it: top left) draws the icon: dark pixels of the symbolic shield
	// on white.
	bar := image.Rect(0, 0, 480, 320)
	var img image.Image
	for i := 0; ; i++ {
		img = screenshot(t, env, filepath.Join(out, "x11-tray-normal.png"))
		if darkPixels(img, bar) > 40 {
			break
		}
		if i == 100 {
			t.Fatalf("the panel shows no icon after 10 s (%d dark pixels in the bar); see %s", darkPixels(img, bar),
				filepath.Join(out, "x11-tray-normal.png"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let the first draw finish
	img = screenshot(t, env, filepath.Join(out, "x11-tray-normal.png"))
	normal := darkPixels(img, bar)
	if err := tr.SetState(tray.Question); err != nil {
		t.Fatal(err)
	}
	// The question icon adds a filled badge: more dark pixels once the panel has redrawn.
	for i := 0; ; i++ {
		img = screenshot(t, env, filepath.Join(out, "x11-tray-question.png"))
		if n := darkPixels(img, bar); n > normal+10 {
			t.Logf("icon pixels: normal %d, question waiting %d", normal, n)
			break
		}
		if i == 100 {
			t.Fatalf("the panel did not redraw for the question state (%d dark pixels, %d before)", darkPixels(img, bar), normal)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Silent mode: the eye closes (fewer dark pixels than either other state).
	if err := tr.SetState(tray.Silent); err != nil {
		t.Fatal(err)
	}
	question := darkPixels(img, bar)
	for i := 0; ; i++ {
		silent := screenshot(t, env, filepath.Join(out, "x11-tray-silent.png"))
		if n := darkPixels(silent, bar); n < normal-10 {
			t.Logf("icon pixels: silent %d", n)
			img = silent
			break
		}
		if i == 100 {
			t.Fatalf("the panel did not redraw for silent mode (%d dark pixels; normal %d, question %d)",
				darkPixels(silent, bar), normal, question)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Find the icon and click it like a user.
	x, y := centre(img, bar)
	run(t, "", env, xdotool, "mousemove", fmt.Sprint(x), fmt.Sprint(y), "click", "1")
	select {
	case c := <-clicked:
		if c != "activate" {
			t.Fatalf("a left click ran %q, want activate", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a left click on the icon did not reach OnActivate")
	}
	// The right button opens the menu the panel built from GetLayout; the first entry is chosen by keyboard.
	run(t, "", env, xdotool, "mousemove", fmt.Sprint(x), fmt.Sprint(y), "click", "3")
	time.Sleep(700 * time.Millisecond)
	menuShot := screenshot(t, env, filepath.Join(out, "x11-tray-menu.png"))
	if darkPixels(menuShot, bar) < darkPixels(img, bar)+50 {
		t.Errorf("no menu under the icon after a right click; see %s", filepath.Join(out, "x11-tray-menu.png"))
	}
	run(t, "", env, xdotool, "key", "Down", "Return")
	select {
	case c := <-clicked:
		if c != "open" {
			t.Fatalf("choosing the first menu entry ran %q, want open", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("choosing \"Open Monitor\" in the panel's menu did not run its callback")
	}
}

// startPanel starts a private X server and session bus with a real watcher and panel on them, and returns
// the environment of that session and a connection to its bus. installIcons puts Tattle's icons where the
// panel looks for themed icons (XDG_DATA_DIRS), as an installed app would have them.
func startPanel(t *testing.T, installIcons bool) ([]string, *dbus.Conn) {
	t.Helper()
	watcherBin := tool(t, "status-notifier-watcher", "haskell-status-notifier-item-utils")
	panelBin := tool(t, "gtk-sni-tray-standalone", "haskell-gtk-sni-tray-utils")
	root := repoRoot(t)
	share := filepath.Join(t.TempDir(), "share")
	if installIcons {
		for _, dir := range []string{"scalable/apps", "symbolic/apps"} {
			src := filepath.Join(root, "data", "icons", "hicolor", dir)
			dst := filepath.Join(share, "icons", "hicolor", dir)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				data, err := os.ReadFile(filepath.Join(src, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// The tray runs in this process and offers fallback pixmaps only for icons it cannot find: let it look
	// where the panel looks (and nowhere this machine may have Tattle installed).
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	if installIcons {
		t.Setenv("XDG_DATA_DIRS", share)
	} else {
		t.Setenv("XDG_DATA_DIRS", t.TempDir())
	}
	display := startXvfb(t, "480x320")
	bus := traytest.SessionBus(t)
	env := append(os.Environ(), "DISPLAY="+display, "DBUS_SESSION_BUS_ADDRESS="+bus, "GDK_BACKEND=x11",
		"NO_AT_BRIDGE=1", "XDG_DATA_DIRS="+share+":/usr/local/share:/usr/share", "GTK_THEME=Adwaita")
	conn := traytest.Connect(t, bus)
	startProcess(t, env, watcherBin)
	waitForName(t, conn, tray.WatcherName)
	startProcess(t, env, panelBin, "--log-level", "DEBUG", "--top", "--beginning", "--size", "40",
		"--color", "#ffffff", "--no-strut")
	return env, conn
}

// Where the panel cannot find the themed icon (the app runs uninstalled), it draws the item's fallback
// pixmaps: blue, with an orange badge while a question waits.
func TestTrayPixmapFallbackInRealPanel(t *testing.T) {
	out := resultsDir(t)
	env, conn := startPanel(t, false)
	available := make(chan bool, 8)
	tr, err := tray.New(context.Background(), conn, tray.Options{ID: appID, Title: "Tattle",
		OnAvailable: func(ok bool) { available <- ok }})
	if err != nil {
		t.Fatalf("tray.New: %v", err)
	}
	defer tr.Close()
	screen := image.Rect(0, 0, 480, 320)
	blue := func(r, g, b uint32) bool { return b > 0xb000 && r < 0x8000 }
	orange := func(r, g, b uint32) bool { return r > 0xc000 && g < 0x8000 && b < 0x4000 }
	waitFor := func(name string, what func(r, g, b uint32) bool, min int) {
		t.Helper()
		path := filepath.Join(out, name)
		for i := 0; ; i++ {
			n := countPixels(screenshot(t, env, path), screen, what)
			if n >= min {
				t.Logf("%s: %d matching pixels", name, n)
				return
			}
			if i == 100 {
				t.Fatalf("the panel did not draw the fallback pixmap within 10 s (%d matching pixels); see %s", n, path)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("x11-tray-pixmap-normal.png", blue, 200)
	if err := tr.SetState(tray.Question); err != nil {
		t.Fatal(err)
	}
	waitFor("x11-tray-pixmap-question.png", orange, 200)
}

// countPixels counts the pixels in r whose colour satisfies match (16-bit channels).
func countPixels(img image.Image, r image.Rectangle, match func(r, g, b uint32) bool) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if match(cr, cg, cb) {
				n++
			}
		}
	}
	return n
}

func waitForName(t *testing.T, conn *dbus.Conn, name string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err == nil && has {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear on the session bus within 10 s", name)
}

// centre is the middle of the dark pixels in r.
func centre(img image.Image, r image.Rectangle) (int, int) {
	var sx, sy, n int
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if (cr+cg+cb)/3 < 0x6000 {
				sx, sy, n = sx+x, sy+y, n+1
			}
		}
	}
	if n == 0 {
		return r.Min.X + r.Dx()/2, r.Min.Y + r.Dy()/2
	}
	return sx / n, sy / n
}
