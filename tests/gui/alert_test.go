package gui

import (
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestAlertShowsWhatTheAnswerCovers: a system process's question of many ports to a host under a public
// suffix of two labels (co.uk). The alert marks it as a system process, names the ports, offers the
// registrable domain the helper computed (the rule an answer makes says the same), and the host scope says
// it covers any port, as the rule made for a question of several ports does.
func TestAlertShowsWhatTheAnswerCovers(t *testing.T) {
	h, s, app := startAlertScene(t)
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "updater")
	q := question(2001, exe, "www.example.co.uk", "192.0.2.7", 80, "tcp")
	q.System, q.User = true, "root"
	q.Ports, q.PortCount = []uint16{80, 443, 8080, 8443, 21, 22, 23, 25}, 3000
	q.Domain = rules.RegistrableDomain(q.Host)
	if q.Domain != "example.co.uk" {
		t.Fatalf("registrable domain of %s = %q, want example.co.uk", q.Host, q.Domain)
	}
	call := ask(h, app, q)
	s.WaitFor(t, "label", "www.example.co.uk · 3,000 ports (80, 443, 8080, 8443, 21, 22, …)", 20*time.Second)
	names := s.Names(t)
	for _, want := range []string{"System process. Your answer makes a rule for all users.", "root (system)",
		"On X11, other programs can fake clicks and keys; a Wayland session prevents that."} {
		if !hasName(names, "label", want) {
			t.Errorf("the alert does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	opts := s.Options(t, "Scope")
	for _, want := range []string{"To any host in example.co.uk", "To www.example.co.uk on any port"} {
		if !contains(opts, want) {
			t.Errorf("the alert's scopes have no %q: %q", want, opts)
		}
	}
	s.Screenshot(t, "x11-en-alert-system-ports")
	cancel(t, h, app, q.ID, call)
}

// TestAlertIgnoresClicksAsItAppears: a user clicking away where the alert then appears must not answer it.
// The pointer clicks every 40 ms at the spot where the alert's Allow button appears (learnt from a first
// question) from before the question is asked: the first clicks that land on Allow are ignored, and the
// answer comes no earlier than half a second after the question was asked.
func TestAlertIgnoresClicksAsItAppears(t *testing.T) {
	h, s, app := startAlertScene(t)
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "clicked")

	first := question(3001, exe, "", "192.0.2.8", 443, "tcp")
	c1 := ask(h, app, first)
	s.WaitFor(t, "push button", "Allow", 20*time.Second)
	time.Sleep(700 * time.Millisecond)
	e := s.appExtents(t, "push button", "Allow")
	s.RealClick(t, "push button", "Allow")
	select {
	case <-c1.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("the first question was not answered by a click")
	}
	s.WaitForGone(t, "push button", "Allow", 10*time.Second)

	x, y := strconv.Itoa(e[0]+e[2]/2), strconv.Itoa(e[1]+e[3]/2)
	stop := make(chan struct{})
	clicking := make(chan int, 1)
	go func() {
		n := 0
		defer func() { clicking <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			click := exec.Command("xdotool", "mousemove", x, y, "click", "1")
			click.Env = s.Env
			click.Run()
			n++
			time.Sleep(40 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond) // clicking already, on whatever is there
	asked := time.Now()
	c2 := ask(h, app, question(3002, exe, "", "192.0.2.9", 443, "tcp"))
	var took time.Duration
	select {
	case call := <-c2.Done:
		took = time.Since(asked)
		var a api.Answer
		if err := call.Store(&a); err != nil || a.Action != "allow" {
			t.Errorf("answer %+v, %v", a, err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the clicks never answered the second question")
	}
	close(stop)
	n := <-clicking
	t.Logf("clicks every 40 ms at Allow's spot from before the question: answered %v after it was asked (%d clicks)", took.Round(time.Millisecond), n)
	if took < 500*time.Millisecond {
		t.Errorf("a click landing as the alert appeared answered it %v after it was asked (want no answer in its first 500 ms)", took)
	}
}

// TestAlertShowsTheScript: a question about an interpreter running a script names the script (Via), as the
// helper identifies it; one about an interpreter without a script says the answer is about the interpreter
// itself; a program that is no interpreter shows no Via row.
func TestAlertShowsTheScript(t *testing.T) {
	h, s, app := startAlertScene(t)
	q := question(4001, "/usr/bin/python3.11", "", "192.0.2.10", 443, "tcp")
	q.Via = "/home/someone/bin/sync-photos.py"
	call := ask(h, app, q)
	s.WaitFor(t, "label", q.Via, 20*time.Second)
	s.WaitForText(t, "label", "sync-photos.py via ", 5*time.Second) // the title names the script first
	if !hasName(s.Names(t), "label", "Via") {
		t.Errorf("the alert shows the script without its caption:\n%s", dumpNames(s.Names(t)))
	}
	s.Screenshot(t, "x11-en-alert-via")
	if err := h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, q.ID).Err; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	<-call.Done
	bare := question(4002, "/usr/bin/python3.11", "", "192.0.2.11", 443, "tcp")
	call = ask(h, app, bare)
	s.WaitFor(t, "label", "192.0.2.11:443", 20*time.Second)
	if names := s.Names(t); !hasName(names, "label", "no script: the interpreter itself (a command line, a REPL or standard input)") || hasName(names, "label", q.Via) {
		t.Errorf("an interpreter's question without a script does not say so:\n%s", dumpNames(names))
	}
	h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, bare.ID)
	<-call.Done
	plain := question(4003, "/usr/bin/curl", "", "192.0.2.12", 443, "tcp")
	call = ask(h, app, plain)
	s.WaitFor(t, "label", "192.0.2.12:443", 20*time.Second)
	if names := s.Names(t); hasName(names, "label", "Via") {
		t.Errorf("a question about a program that is no interpreter shows a Via row:\n%s", dumpNames(names))
	}
	h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, plain.ID)
	<-call.Done
}

// startAlertScene starts a helper in silent-allow mode (only the test's own questions come up), an X11
// session and the app in it, for the tests that look at an alert.
func startAlertScene(t *testing.T) (*Helper, *Session, *App) {
	t.Helper()
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	return h, s, StartApp(t, s, h, English())
}
