package gui

import (
	"strconv"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

const alertTitle = "Tattle: allow this connection?"

// alertOver waits until the compositor shows the alert and checks, from the compositor's own stacking and
// focus, that it is above the window titled below and that below keeps the keyboard.
func alertOver(t *testing.T, s *Session, ed *Editor) {
	below := ed.Title
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		stack := s.ShellStack(t)
		ia, ib := -1, -1
		for i, w := range stack {
			switch w.Title {
			case alertTitle:
				ia = i
			case below:
				ib = i
			}
		}
		if ia >= 0 && ib >= 0 {
			if ia < ib {
				t.Errorf("the alert is below %q: %s", below, titles(stack))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the compositor does not show the alert and %q: %s", below, titles(stack))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The alert shows on Xwayland without taking the keyboard (alert.moveToXwayland): the compositor leaves
	// it with the editor, and GTK in the editor agrees.
	time.Sleep(500 * time.Millisecond)
	if focus := s.ShellFocus(t); focus != below || !ed.Active(t) {
		t.Errorf("the alert took the keyboard: the compositor focuses %q (editor active: %v); stack %s", focus, ed.Active(t), titles(s.ShellStack(t)))
	}
	for _, w := range s.ShellStack(t) {
		if w.Title == alertTitle && !w.X11 {
			t.Errorf("the alert is a Wayland window, not on the session's Xwayland: %+v", w)
		}
	}
}

// keysDoNotAnswer types text with Return and space through the compositor's keyboard, past the alert's arm
// delay, and checks that the question stays open.
func keysDoNotAnswer(t *testing.T, s *Session, call *dbus.Call, text string) {
	t.Helper()
	time.Sleep(700 * time.Millisecond) // past the arm delay: only the keys' meaning matters now
	s.ShellType(t, text)
	if a, answered, _ := answerWithin(call, 1500*time.Millisecond); answered {
		t.Errorf("keys typed while the alert was up answered it: %+v (focus %q)", a, s.ShellFocus(t))
	}
}

// answerWithin waits up to d for the answer to an Ask call; answered is false when none came.
func answerWithin(call *dbus.Call, d time.Duration) (a api.Answer, answered bool, err error) {
	select {
	case c := <-call.Done:
		err = c.Store(&a)
		return a, true, err
	case <-time.After(d):
		return a, false, nil
	}
}

// allowedWithin waits up to d for the answer to an Ask call and checks that it is allow; it reports false
// when no answer came.
func allowedWithin(t *testing.T, call *dbus.Call, d time.Duration) bool {
	t.Helper()
	a, answered, err := answerWithin(call, d)
	if answered && (err != nil || a.Action != "allow") {
		t.Errorf("answer %+v, %v", a, err)
	}
	return answered
}

// editorScene is where the alert meets a focused window: a helper in silent-allow mode (nothing else asks), a
// session of a compositor kind with the app in it, a test client copied as the program that asks, and an
// editor titled "Notes" holding the keyboard.
type editorScene struct {
	h    *Helper
	s    *Session
	app  *App
	exe  string
	ed   *Editor
	shot string // the screenshots' prefix for the kind
}

func startEditorScene(t *testing.T, kind, program string) *editorScene {
	t.Helper()
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, kind)
	app := StartApp(t, s, h, English())
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), program)
	return &editorScene{h: h, s: s, app: app, exe: exe, ed: StartEditor(t, s, "Notes"),
		shot: map[string]string{"gnome": "gnome", "kwin": "kde"}[kind]}
}

// askOverEditor asks question id about a connection to addr:443 and waits until its alert shows above the
// editor, the editor keeping the keyboard (alertOver).
func (sc *editorScene) askOverEditor(t *testing.T, id uint64, addr string) (api.Question, *dbus.Call) {
	t.Helper()
	q := question(id, sc.exe, "", addr, 443, "tcp")
	c := ask(sc.h, sc.app, q)
	sc.s.WaitFor(t, "push button", "Allow", 20*time.Second)
	alertOver(t, sc.s, sc.ed)
	return q, c
}

// TestAlertOverFocusedWindowGnomeShell: in GNOME Shell on Wayland, with an editor focused (text typed with
// the compositor's virtual keyboard lands in its buffer), a question's alert appears above the editor, also
// when the editor is fullscreen, as the compositor stacks them, and the editor keeps the keyboard: what is
// typed while the alert is up, Return and space among it, lands in the editor's buffer and never answers the
// alert; a click on Allow with the compositor's virtual pointer (after the arm delay) does.
func TestAlertOverFocusedWindowGnomeShell(t *testing.T) {
	alertOverFocusedWindow(t, "gnome")
}

// TestAlertOverFocusedWindowKWin: the same in KWin 5.27 on Wayland (stacking and focus from KWin's
// scripting, keys and clicks from its fake input, screenshots from its ScreenShot2).
func TestAlertOverFocusedWindowKWin(t *testing.T) {
	alertOverFocusedWindow(t, "kwin")
}

// alertOverFocusedWindow is the body of the tests above in a session of kind.
func alertOverFocusedWindow(t *testing.T, kind string) {
	sc := startEditorScene(t, kind, "editorcheck")
	s, ed := sc.s, sc.ed
	s.ShellType(t, "before ")
	ed.WaitText(t, "before ")

	// typed checks that the editor kept the keyboard and that the keys typed while the alert was up reached it.
	typed := func(text string) {
		t.Helper()
		if focus := s.ShellFocus(t); focus != ed.Title || !ed.Active(t) {
			t.Errorf("the compositor focuses %q (editor active: %v; the editor holds %q, not %q)", focus, ed.Active(t), ed.Text(t), text)
			return
		}
		ed.WaitText(t, text)
	}
	q1, c1 := sc.askOverEditor(t, 5001, "192.0.2.21")
	keysDoNotAnswer(t, s, c1, "typed while asked\n ")
	typed("before typed while asked\n ")
	t.Logf("the editor holds %q", ed.Text(t))
	s.Screenshot(t, sc.shot+"-alert-over-editor")
	cancel(t, sc.h, sc.app, q1.ID, c1)
	s.WaitForGone(t, "push button", "Allow", 10*time.Second)

	ed.Fullscreen(t, s)
	before := ed.Text(t)
	_, c2 := sc.askOverEditor(t, 5002, "192.0.2.22")
	keysDoNotAnswer(t, s, c2, "and fullscreen\n ")
	typed(before + "and fullscreen\n ")
	s.Screenshot(t, sc.shot+"-alert-over-fullscreen")

	time.Sleep(700 * time.Millisecond) // past the arm delay
	s.ShellClickAccessible(t, alertTitle, "push button", "Allow")
	if !allowedWithin(t, c2, 10*time.Second) {
		s.Screenshot(t, sc.shot+"-alert-click-failed")
		t.Fatalf("a click on Allow with the compositor's virtual pointer did not answer; stack %s", titles(s.ShellStack(t)))
	}

	// A click on the alert (not on a button) gives it the keyboard, and then its shortcut answers.
	_, c3 := sc.askOverEditor(t, 5003, "192.0.2.23")
	time.Sleep(700 * time.Millisecond) // past the arm delay
	s.ShellClickAccessible(t, alertTitle, "label", "editorcheck wants to connect to 192.0.2.23")
	deadline := time.Now().Add(5 * time.Second)
	for s.ShellFocus(t) != alertTitle {
		if time.Now().After(deadline) {
			t.Fatalf("a click on the alert did not give it the keyboard: the compositor focuses %q", s.ShellFocus(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the focus event reaches GTK
	held := ed.Text(t)
	s.ShellAltKey(t, 'a')
	if !allowedWithin(t, c3, 5*time.Second) {
		t.Fatalf("Alt+A in the clicked alert did not answer; focus %q", s.ShellFocus(t))
	}
	if text := ed.Text(t); text != held {
		t.Errorf("Alt+A reached the editor: it holds %q, had %q", text, held)
	}
}

// cancel withdraws a question as tattled does, and waits until Ask returns.
func cancel(t *testing.T, h *Helper, app *App, id uint64, call *dbus.Call) {
	t.Helper()
	if err := h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, id).Err; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	select {
	case <-call.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("Ask did not return after Cancel")
	}
}

// TestAlertIgnoresXTESTGnomeShell: the alert on GNOME Shell's Xwayland is an X window, and any X client of
// the session can fake input there with XTEST (Xwayland 22 delivers it to its X windows itself, the compositor
// never sees it). Such a click on Allow, and Alt+A and Return sent to the alert after giving it the X input
// focus, must not answer; the alert says a program tried. A click through the compositor's pointer then does.
func TestAlertIgnoresXTESTGnomeShell(t *testing.T) {
	alertIgnoresXTEST(t, "gnome")
}

// TestAlertIgnoresXTESTKWin: the same on KWin's Xwayland.
func TestAlertIgnoresXTESTKWin(t *testing.T) {
	alertIgnoresXTEST(t, "kwin")
}

func alertIgnoresXTEST(t *testing.T, kind string) {
	sc := startEditorScene(t, kind, "xtestcheck")
	s, ed := sc.s, sc.ed
	_, c := sc.askOverEditor(t, 5011, "192.0.2.31")
	time.Sleep(700 * time.Millisecond) // past the arm delay
	e := s.appExtents(t, "push button", "Allow")
	notAnswered := func(what string) {
		t.Helper()
		if a, answered, _ := answerWithin(c, 2*time.Second); answered {
			t.Fatalf("%s answered the alert: %+v", what, a)
		}
	}
	// The attack: an XTEST click on Allow, at its place on the X screen.
	s.xdotool(t, "mousemove", strconv.Itoa(e[0]+e[2]/2), strconv.Itoa(e[1]+e[3]/2), "click", "1") // on the compositor's Xwayland
	notAnswered("an XTEST click on Allow")
	// It reached the button (else the check above proves nothing): the alert says a program tried.
	s.WaitForText(t, "label", "A program tried to answer for you", 5*time.Second)
	s.Screenshot(t, sc.shot+"-alert-xtest-ignored")
	if focus := s.ShellFocus(t); focus != ed.Title || !ed.Active(t) {
		t.Errorf("the XTEST click moved the keyboard: the compositor focuses %q (editor active %v)", focus, ed.Active(t))
	}
	// Keys: give the alert the X input focus (any X client may) and send its mnemonic and Return.
	id := s.x11Windows(t, alertTitle)[0]
	s.xdotool(t, "windowfocus", id)
	s.xdotool(t, "key", "--window", id, "alt+a")
	s.xdotool(t, "windowfocus", id)
	s.xdotool(t, "key", "alt+a", "Return", "space")
	notAnswered("XTEST keys sent to the alert")

	// The user's own click, through the compositor's pointer, still answers.
	s.ShellClickAccessible(t, alertTitle, "push button", "Allow")
	if !allowedWithin(t, c, 10*time.Second) {
		t.Fatal("a click on Allow with the compositor's virtual pointer did not answer")
	}
}
