package gui

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// The alert's notification fallback (issue 17) in the X11 session: openbox keeps a focused fullscreen window
// above every keep-above one, so the alert of a question asked while the user watches a fullscreen editor
// maps below it, as the window manager's own _NET_CLIENT_LIST_STACKING shows. Debian's dunst is the
// session's notification server; what it received is read from the server itself (`dunst -print`, and
// `dunstctl` over its D-Bus interface), and its action is invoked through it (`dunstctl action`).

const (
	notifyBody = "Another window covers Tattle's alert. Show the alert to allow or deny; this notification cannot answer."
	notifyShow = "Show the alert"
)

// TestAlertNotificationWhenRaiseRefused: the user watches a fullscreen editor when a question comes. The
// window manager keeps the alert below the editor; a critical notification names the program and the
// destination, with one action, "Show the alert". Invoking it through the server brings the alert to the
// top and gives it the keyboard, the question still open, and the notification goes away; a click on Allow
// then answers. Another refused question gets a new notification, withdrawn when the user leaves
// fullscreen and answers in the alert. Two questions waiting make one notification, replaced (same ID)
// when the first is settled and the alert shows the second, and withdrawn when the last is.
func TestAlertNotificationWhenRaiseRefused(t *testing.T) {
	r := startRefusedRig(t)
	h, s, app, d, ed := r.h, r.s, r.app, r.d, r.ed

	q1 := question(6001, r.exe, "", "192.0.2.41", 443, "tcp")
	from := d.log.Len()
	c1 := ask(h, app, q1)
	s.WaitFor(t, "push button", "Allow", 20*time.Second)
	r.waitBelow(t)
	n1, _ := d.waitNote(t, "notecheck wants to connect to 192.0.2.41:443", from)
	if n1.AppName != "Tattle" || n1.Body != notifyBody || n1.Urgency != "CRITICAL" {
		t.Errorf("the notification is %+v; want app Tattle, body %q, critical", n1, notifyBody)
	}
	if len(n1.Actions) != 2 || n1.Actions["default"] != notifyShow || n1.Actions["show"] != notifyShow {
		t.Errorf("the notification's actions are %v; want only show (and default), labelled %q", n1.Actions, notifyShow)
	}
	if n := d.displayed(t); n != 1 {
		t.Errorf("dunst displays %d notifications, want 1", n)
	}
	s.Screenshot(t, "x11-en-alert-notification")

	// The user invokes the notification's action through the server.
	d.ctl(t, "action", "0")
	r.waitPresented(t)
	stillOpen(t, c1, "presenting the alert")
	d.waitDisplayed(t, 0, "after the alert came up")
	if !hasNote(d.history(t), n1.ID, n1.Summary) {
		t.Errorf("dunst's history lacks the withdrawn notification %d: %+v", n1.ID, d.history(t))
	}
	s.Screenshot(t, "x11-en-alert-notification-presented")
	time.Sleep(700 * time.Millisecond) // past the arm delay, which presenting started again
	s.RealClick(t, "push button", "Allow")
	answered(t, c1, "allow")

	// Back in the fullscreen editor: the next question's alert is kept below again and notified; the user
	// leaves fullscreen, sees the alert above the editor and answers there: the notification goes.
	r.waitEditorFocused(t)
	q2 := question(6002, r.exe, "", "192.0.2.42", 443, "tcp")
	from = d.log.Len()
	c2 := ask(h, app, q2)
	s.WaitFor(t, "label", "192.0.2.42:443", 20*time.Second)
	r.waitBelow(t)
	n2, _ := d.waitNote(t, "notecheck wants to connect to 192.0.2.42:443", from)
	ed.Cmd.Process.Signal(syscall.SIGUSR2) // unfullscreen
	r.waitAbove(t)
	time.Sleep(700 * time.Millisecond)
	s.RealClick(t, "push button", "Deny")
	answered(t, c2, "deny")
	d.waitDisplayed(t, 0, "after the question was answered")
	if !hasNote(d.history(t), n2.ID, n2.Summary) {
		t.Errorf("dunst's history lacks the notification %d withdrawn on the answer: %+v", n2.ID, d.history(t))
	}

	// Two questions, one notification: replaced when the alert moves to the second, withdrawn at the end.
	ed.Fullscreen(t, s)
	r.waitEditorFocused(t)
	q3 := question(6003, r.exe, "", "192.0.2.43", 443, "tcp")
	q4 := question(6004, r.exe, "", "192.0.2.44", 443, "tcp")
	from = d.log.Len()
	c3 := ask(h, app, q3)
	s.WaitFor(t, "label", "192.0.2.43:443", 20*time.Second)
	c4 := ask(h, app, q4) // after: the app handles each call on its own goroutine, in no set order
	s.WaitFor(t, "label", "1 more waiting", 20*time.Second)
	r.waitBelow(t)
	n3, next := d.waitNote(t, "notecheck wants to connect to 192.0.2.43:443", from)
	cancel(t, h, app, q3.ID, c3) // settled elsewhere (its deadline, say)
	s.WaitFor(t, "label", "192.0.2.44:443", 20*time.Second)
	n4, _ := d.waitNote(t, "notecheck wants to connect to 192.0.2.44:443", next)
	if n4.ID != n3.ID {
		t.Errorf("the second question's notification has ID %d, the first's %d: stacked, not replaced", n4.ID, n3.ID)
	}
	if n := d.displayed(t); n != 1 {
		t.Errorf("dunst displays %d notifications for one alert, want 1", n)
	}
	cancel(t, h, app, q4.ID, c4)
	d.waitDisplayed(t, 0, "after the last question was settled")
}

// TestAlertNotificationForgedActions: any program of the user can emit ActionInvoked signals as if from the
// notification server. A separate process on the session bus forges them, broadcast and sent to the app's
// connections alone, for the alert's notification with the keys "allow", "deny", "show" and "default" (one
// question each), and for another notification ID. None answers: the question stays open, no answer reaches
// the helper, and the most a forgery does is bring the alert up, as a new question does by itself. Keys
// typed into the alert it brought up (Return and space on its Deny button, Alt+A) do not answer either: it is
// not engaged.
func TestAlertNotificationForgedActions(t *testing.T) {
	r := startRefusedRig(t)
	h, s, app, d := r.h, r.s, r.app, r.d
	conns := sessionConns(t, s, app.Cmd.Process.Pid)

	for i, key := range []string{"allow", "deny", "show", "default"} {
		r.waitEditorFocused(t)
		addr := "192.0.2." + strconv.Itoa(51+i)
		q := question(uint64(6101+i), r.exe, "", addr, 443, "tcp")
		from := d.log.Len()
		c := ask(h, app, q)
		s.WaitFor(t, "label", addr+":443", 20*time.Second)
		r.waitBelow(t)
		n, _ := d.waitNote(t, "notecheck wants to connect to "+addr+":443", from)

		// Another notification's ID: ignored, the alert stays where it is.
		forge(t, s, "", n.ID+1000, key)
		stillOpen(t, c, "a forged "+key+" for another notification")
		r.waitBelow(t)

		// The alert's own: broadcast for the first two keys, sent to the app alone for the others.
		if i < 2 {
			forge(t, s, "", n.ID, key)
		} else {
			for _, dest := range conns {
				forge(t, s, dest, n.ID, key)
			}
		}
		r.waitPresented(t)
		stillOpen(t, c, "a forged "+key+" for the alert's notification")
		time.Sleep(700 * time.Millisecond) // past the arm delay
		// The keyboard is the alert's now: to Deny (past the two choices), then Return and space on it, which
		// GTK clicks with the key's own event, and Alt+A.
		logged := s.Log.Len()
		s.Keys(t, "Tab", "Tab", "Return", "space", "alt+a")
		stillOpen(t, c, "keys typed into the alert a forged "+key+" brought up")
		// They reached its buttons (else the check above proves nothing), and were ignored as keys pressed
		// before the user turned to the alert.
		s.Log.WaitFor(t, "ignored a key answering the alert before the user turned to it", logged)
		if i == 0 {
			s.Screenshot(t, "x11-en-alert-notification-forged")
		}
		if !hasName(s.Names(t), "push button", "Allow") {
			t.Fatalf("the alert no longer shows its question after a forged %s", key)
		}
		cancel(t, h, app, q.ID, c)
	}
}

// refusedRig is the X11 session with dunst, the app, and a focused fullscreen editor over which the window
// manager will not raise the alert.
type refusedRig struct {
	h   *Helper
	s   *Session
	app *App
	d   *dunst
	ed  *Editor
	exe string
}

func startRefusedRig(t *testing.T) *refusedRig {
	t.Helper()
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	d := startDunst(t, s)
	app := StartApp(t, s, h, English())
	r := &refusedRig{h: h, s: s, app: app, d: d,
		exe: testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "notecheck")}
	r.ed = StartEditor(t, s, "Notes")
	s.Type(t, "Watching something fullscreen.")
	r.ed.WaitText(t, "Watching something fullscreen.")
	r.ed.Fullscreen(t, s)
	r.waitEditorFocused(t)
	return r
}

// stack is the window manager's stacking: the indices of the alert and the editor, bottom to top (-1: absent).
func (r *refusedRig) stack(t *testing.T) (alert, editor int, ws []ShellWindow) {
	t.Helper()
	ws = r.s.ShellStack(t)
	alert, editor = -1, -1
	for i, w := range ws {
		switch w.Title {
		case alertTitle:
			alert = i
		case r.ed.Title:
			editor = i
		}
	}
	return alert, editor, ws
}

// waitBelow waits until the window manager stacks the alert below the editor, which has the keyboard: the
// raise refused, as the test needs it.
func (r *refusedRig) waitBelow(t *testing.T) {
	t.Helper()
	r.waitStack(t, "the alert below the focused editor", func(a, e int) bool { return a >= 0 && e > a && r.s.ShellFocus(t) == r.ed.Title })
}

// waitAbove waits until the window manager stacks the alert above the editor.
func (r *refusedRig) waitAbove(t *testing.T) {
	t.Helper()
	r.waitStack(t, "the alert above the editor", func(a, e int) bool { return a > e && e >= 0 })
}

// waitPresented waits until the alert is the window manager's top window and has the keyboard.
func (r *refusedRig) waitPresented(t *testing.T) {
	t.Helper()
	r.waitStack(t, "the alert on top with the keyboard", func(a, e int) bool {
		return a > e && a == len(r.s.ShellStack(t))-1 && r.s.ShellFocus(t) == alertTitle
	})
}

// waitEditorFocused waits until the editor has the keyboard again.
func (r *refusedRig) waitEditorFocused(t *testing.T) {
	t.Helper()
	r.waitStack(t, "the editor focused", func(a, e int) bool { return e >= 0 && r.s.ShellFocus(t) == r.ed.Title })
}

func (r *refusedRig) waitStack(t *testing.T, what string, ok func(alert, editor int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, e, ws := r.stack(t)
		if ok(a, e) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window manager does not show %s: %s (focus %q)", what, titles(ws), r.s.ShellFocus(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stillOpen checks that the question's Ask has not returned (for a second and a half).
func stillOpen(t *testing.T, call *dbus.Call, after string) {
	t.Helper()
	select {
	case c := <-call.Done:
		var a api.Answer
		c.Store(&a)
		t.Fatalf("%s answered the question: %+v (%v)", after, a, c.Err)
	case <-time.After(1500 * time.Millisecond):
	}
}

// answered waits for the question's answer and checks its action.
func answered(t *testing.T, call *dbus.Call, action string) {
	t.Helper()
	select {
	case c := <-call.Done:
		var a api.Answer
		if err := c.Store(&a); err != nil || a.Action != action {
			t.Fatalf("answer %+v, %v; want %s", a, err, action)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the question was not answered (%s)", action)
	}
}

// forge emits org.freedesktop.Notifications.ActionInvoked from a process of its own on the session bus, as
// the notification server would (dest "": broadcast).
func forge(t *testing.T, s *Session, dest string, id uint32, key string) {
	t.Helper()
	args := []string{"emit", "--session", "--object-path", "/org/freedesktop/Notifications",
		"--signal", "org.freedesktop.Notifications.ActionInvoked"}
	if dest != "" {
		args = append(args, "--dest", dest)
	}
	args = append(args, "uint32 "+strconv.FormatUint(uint64(id), 10), "'"+key+"'")
	cmd := exec.Command("gdbus", args...)
	cmd.Env = s.Env
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gdbus %v: %v\n%s", args, err, out)
	}
}

// sessionConns lists the unique names of the process pid's connections to the session bus.
func sessionConns(t *testing.T, s *Session, pid int) []string {
	t.Helper()
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var names, mine []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		var p uint32
		if strings.HasPrefix(n, ":") && conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, n).Store(&p) == nil && int(p) == pid {
			mine = append(mine, n)
		}
	}
	if len(mine) == 0 {
		t.Fatalf("the app (pid %d) has no session bus connection", pid)
	}
	return mine
}

// dunst is Debian's dunst, the session's notification server, printing every notification it gets.
type dunst struct {
	s   *Session
	log *testrig.LogTail // its output: `dunst -print` records
}

func startDunst(t *testing.T, s *Session) *dunst {
	t.Helper()
	if _, err := exec.LookPath("dunst"); err != nil {
		t.Fatal("dunst is missing (tests/install-deps.sh installs it)")
	}
	conf := filepath.Join(s.dir, "dunstrc")
	// Top centre, clear of the alert at the top right; critical ones stay until closed.
	if err := os.WriteFile(conf, []byte(`[global]
    font = DejaVu Sans 10
    origin = top-center
    offset = 0x40
    width = 420
    frame_width = 2
    format = "<b>%a</b>\n<b>%s</b>\n%b"
[urgency_critical]
    timeout = 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &dunst{s: s, log: &testrig.LogTail{}}
	procAs(t, s.cred, d.log, s.Env, s.dir, nil, "dunst", "-print", "-conf", conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dunst:\n%s", d.log)
		}
	})
	// Up when it owns the name (asked of the bus: a call to the name before would start the session's
	// activatable dunst, without a display).
	conn, err := dbus.Connect(s.SessionBus())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var has bool
		if conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.Notifications").Store(&has) == nil && has {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("dunst did not come up:\n%s", d.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *dunst) ctlErr(args ...string) (string, error) {
	cmd := exec.Command("dunstctl", args...)
	cmd.Env = d.s.Env
	if d.s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: d.s.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("dunstctl %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

func (d *dunst) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.ctlErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// displayed is how many notifications dunst shows now.
func (d *dunst) displayed(t *testing.T) int {
	t.Helper()
	out := strings.TrimSpace(d.ctl(t, "count", "displayed"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("dunstctl count displayed: %q", out)
	}
	return n
}

func (d *dunst) waitDisplayed(t *testing.T, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.displayed(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("dunst displays %d notifications %s, want %d", d.displayed(t), when, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// note is a notification as dunst reports it.
type note struct {
	ID                     uint32
	AppName, Summary, Body string
	Urgency                string
	Actions                map[string]string
}

var (
	printField  = regexp.MustCompile(`^dunst: \t([a-z_ ]+): (.*)$`)
	printAction = regexp.MustCompile(`^dunst: \t\t"([^"]*)": "([^"]*)"$`)
)

// waitNote waits for dunst to print a notification with that summary after the first from lines of its
// output, and returns it and the line count up to it.
func (d *dunst) waitNote(t *testing.T, summary string, from int) (note, int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var cur *note
		lines := d.log.Since(from)
		for i, l := range lines {
			switch {
			case l == "dunst: {":
				cur = &note{Actions: map[string]string{}}
			case l == "dunst: }" && cur != nil:
				if cur.Summary == summary {
					return *cur, from + i + 1
				}
				cur = nil
			case cur != nil:
				if m := printAction.FindStringSubmatch(l); m != nil {
					cur.Actions[m[1]] = m[2]
				} else if m := printField.FindStringSubmatch(l); m != nil {
					v := strings.Trim(m[2], "'")
					switch m[1] {
					case "appname":
						cur.AppName = v
					case "summary":
						cur.Summary = v
					case "body":
						cur.Body = v
					case "urgency":
						cur.Urgency = v
					case "id":
						id, _ := strconv.ParseUint(v, 10, 32)
						cur.ID = uint32(id)
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dunst got no notification %q; it printed:\n%s", summary, strings.Join(d.log.Since(from), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history is dunst's history: the notifications closed, newest first.
func (d *dunst) history(t *testing.T) []note {
	t.Helper()
	var h struct {
		Data [][]map[string]struct {
			Data any `json:"data"`
		} `json:"data"`
	}
	out := d.ctl(t, "history")
	if err := json.Unmarshal([]byte(out), &h); err != nil || len(h.Data) != 1 {
		t.Fatalf("dunstctl history: %v: %q", err, out)
	}
	var notes []note
	for _, e := range h.Data[0] {
		n := note{}
		if v, ok := e["id"].Data.(float64); ok {
			n.ID = uint32(v)
		}
		n.Summary, _ = e["summary"].Data.(string)
		n.Body, _ = e["body"].Data.(string)
		n.AppName, _ = e["appname"].Data.(string)
		notes = append(notes, n)
	}
	return notes
}

func hasNote(notes []note, id uint32, summary string) bool {
	for _, n := range notes {
		if n.ID == id && n.Summary == summary {
			return true
		}
	}
	return false
}

// x11Stack is the X window manager's stacking of its client windows, bottom to top, and its active window,
// from its EWMH properties on the root window.
func (s *Session) x11Stack(t *testing.T) []ShellWindow {
	t.Helper()
	ids := xpropWindows(t, s, "-root", "_NET_CLIENT_LIST_STACKING")
	active := xpropWindows(t, s, "-root", "_NET_ACTIVE_WINDOW")
	var ws []ShellWindow
	for _, id := range ids {
		cmd := exec.Command("xprop", "-id", id, "_NET_WM_NAME", "_NET_WM_STATE")
		cmd.Env = s.Env
		out, err := cmd.Output()
		if err != nil {
			continue // gone meanwhile
		}
		w := ShellWindow{X11: true, Focused: len(active) == 1 && active[0] == id}
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "_NET_WM_NAME(UTF8_STRING) = "); ok {
				w.Title, _ = strconv.Unquote(v)
			}
			if strings.HasPrefix(l, "_NET_WM_STATE(ATOM)") {
				w.Fullscreen = strings.Contains(l, "_NET_WM_STATE_FULLSCREEN")
				w.Above = strings.Contains(l, "_NET_WM_STATE_ABOVE")
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// x11Focus is the title of the window manager's active window ("" for none).
func (s *Session) x11Focus(t *testing.T) string {
	t.Helper()
	for _, w := range s.x11Stack(t) {
		if w.Focused {
			return w.Title
		}
	}
	return ""
}

// xpropWindows reads a property of window type (ids in hex).
func xpropWindows(t *testing.T, s *Session, where, prop string) []string {
	t.Helper()
	args := append(strings.Fields(where), prop)
	cmd := exec.Command("xprop", args...)
	cmd.Env = s.Env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xprop %v: %v", args, err)
	}
	_, list, ok := strings.Cut(string(out), "# ")
	if !ok {
		return nil
	}
	var ids []string
	for _, f := range strings.Split(strings.TrimSpace(list), ",") {
		if f = strings.TrimSpace(f); f != "" && f != "0x0" {
			ids = append(ids, f)
		}
	}
	return ids
}
