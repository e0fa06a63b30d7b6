package gui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// An X11 session with several monitors runs Xorg with the dummy video driver, whose outputs (DUMMY0..15) RandR
// lays side by side. Xvfb has a single RandR output; RandR 1.5 monitors set on halves of it (xrandr
// --setmonitor) have no output of their own, and GDK 3 makes a monitor of each output only (init_randr15 skips
// monitors without one), so an app there still sees one monitor.

// xorgDummyArgs writes the dummy driver's configuration into the session's directory and returns Xorg's
// arguments for it (the display number written to fd 3).
func xorgDummyArgs(t *testing.T, s *Session, monitors int) []string {
	t.Helper()
	conf := filepath.Join(s.dir, "xorg-dummy.conf")
	// The virtual screen holds the monitors side by side; 64 MiB of "video memory" hold its frame buffer.
	cfg := fmt.Sprintf(`Section "Device"
	Identifier "dummy"
	Driver "dummy"
	VideoRam 65536
EndSection
Section "Screen"
	Identifier "screen"
	Device "dummy"
	DefaultDepth 24
	SubSection "Display"
		Depth 24
		Virtual %d 800
	EndSubSection
EndSection
Section "ServerFlags"
	Option "AutoAddDevices" "false"
	Option "AutoAddGPU" "false"
	Option "DontVTSwitch" "true"
EndSection
`, 1280*monitors)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// No input devices of the machine's (AutoAddDevices off): the pointer and keyboard are the X server's
	// XTEST devices, as under Xvfb. -keeptty and -novtswitch: no virtual terminal is taken.
	return []string{"-displayfd", "3", "-config", conf, "-logfile", filepath.Join(s.dir, "xorg.log"),
		"-nolisten", "tcp", "-noreset", "-keeptty", "-novtswitch"}
}

// x11SetMonitors turns on the dummy driver's first n outputs at 1280x800, side by side.
func (s *Session) x11SetMonitors(t *testing.T, n int) {
	t.Helper()
	const mode = "1280x800_60.00"
	s.xrandr(t, "--newmode", mode, "83.50", "1280", "1352", "1480", "1680", "800", "803", "809", "831", "-hsync", "+vsync")
	args := []string{"--fb", fmt.Sprintf("%dx800", 1280*n)}
	for i := 0; i < n; i++ {
		out := "DUMMY" + strconv.Itoa(i)
		s.xrandr(t, "--addmode", out, mode)
		args = append(args, "--output", out, "--mode", mode, "--pos", fmt.Sprintf("%dx0", 1280*i))
	}
	s.xrandr(t, args...)
}

func (s *Session) xrandr(t *testing.T, args ...string) string {
	t.Helper()
	return s.runX(t, "xrandr", args...)
}

// x11Monitors is the X server's RandR monitors (what GDK and openbox place windows by).
func (s *Session) x11Monitors(t *testing.T) []Rect {
	t.Helper()
	var ms []Rect
	// " 1: +DUMMY1 1280/339x800/212+1280+0  DUMMY1"
	re := regexp.MustCompile(`(\d+)/\d+x(\d+)/\d+\+(\d+)\+(\d+)`)
	for _, m := range re.FindAllStringSubmatch(s.xrandr(t, "--listmonitors"), -1) {
		w, _ := strconv.Atoi(m[1])
		h, _ := strconv.Atoi(m[2])
		x, _ := strconv.Atoi(m[3])
		y, _ := strconv.Atoi(m[4])
		ms = append(ms, Rect{X: x, Y: y, W: w, H: h})
	}
	return ms
}

// x11Window is the id of the mapped X window titled title ("" for none).
func (s *Session) x11Window(t *testing.T, title string) string {
	t.Helper()
	cmd := exec.Command("xdotool", "search", "--onlyvisible", "--name", "^"+regexp.QuoteMeta(title)+"$")
	cmd.Env = s.Env
	out, _ := cmd.Output() // exit 1: none
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// x11Frame is the frame of the window titled title on the root window: the client window's place
// (xwininfo) with the window manager's decorations around it (_NET_FRAME_EXTENTS).
func (s *Session) x11Frame(t *testing.T, title string) (Rect, bool) {
	t.Helper()
	id := s.x11Window(t, title)
	if id == "" {
		return Rect{}, false
	}
	cmd := exec.Command("xwininfo", "-id", id)
	cmd.Env = s.Env
	out, err := cmd.Output()
	if err != nil {
		return Rect{}, false // gone meanwhile
	}
	var r Rect
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			continue
		}
		switch k {
		case "Absolute upper-left X":
			r.X = n
		case "Absolute upper-left Y":
			r.Y = n
		case "Width":
			r.W = n
		case "Height":
			r.H = n
		}
	}
	cmd = exec.Command("xprop", "-id", id, "_NET_FRAME_EXTENTS")
	cmd.Env = s.Env
	if out, err := cmd.Output(); err == nil {
		if _, v, ok := strings.Cut(string(out), "= "); ok {
			var e [4]int // left, right, top, bottom
			if n, _ := fmt.Sscanf(strings.TrimSpace(v), "%d, %d, %d, %d", &e[0], &e[1], &e[2], &e[3]); n == 4 {
				r = Rect{X: r.X - e[0], Y: r.Y - e[2], W: r.W + e[0] + e[1], H: r.H + e[2] + e[3]}
			}
		}
	}
	return r, true
}

// x11Move moves the window titled title so that its client window's top left is at x, y, as the user
// dragging it there (the window manager places it on its ConfigureRequest).
func (s *Session) x11Move(t *testing.T, title string, x, y int) {
	t.Helper()
	id := s.x11Window(t, title)
	if id == "" {
		t.Fatalf("no X window titled %q to move", title)
	}
	s.xdotool(t, "windowmove", id, strconv.Itoa(x), strconv.Itoa(y))
}

// x11Pointer is where the X server has its pointer.
func (s *Session) x11Pointer(t *testing.T) (x, y int) {
	t.Helper()
	out := s.xdotool(t, "getmouselocation", "--shell")
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "X="); ok {
			x, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(l, "Y="); ok {
			y, _ = strconv.Atoi(v)
		}
	}
	return x, y
}
