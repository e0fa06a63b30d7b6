package gui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// startClient runs the application at path connecting to addr, in the background; its report arrives on
// the channel (a zero Result with Error set when it could not run).
func startClient(path, addr string) <-chan testrig.Result {
	out := make(chan testrig.Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var stderr strings.Builder
		cmd := exec.CommandContext(ctx, path, "tcp", addr)
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		var r testrig.Result
		if err != nil {
			r.Error = fmt.Sprintf("%v: %s", err, stderr.String())
		} else if err := json.Unmarshal(data, &r); err != nil {
			r.Error = fmt.Sprintf("bad report %q: %v", data, err)
		}
		out <- r
	}()
	return out
}

// TestAllowForeverEndToEnd is the whole path of a first connection: the app registers as the agent of the
// real helper; a real program connects to a destination no rule covers and its connection is held; the
// alert appears; Allow pressed through the accessibility tree (as any program could) is ignored; Allow
// (forever) clicked with the pointer completes the SAME connection;
// the new rule is listed in the app's Rules page and by tattlectl.
func TestAllowForeverEndToEnd(t *testing.T) {
	allowForeverEndToEnd(t, "x11", "x11-en-alert-end-to-end", "x11-en-alert-scripted-press-ignored", "x11-en-rules-after-allow")
}

// TestAllowForeverEndToEndGnomeShell: the same in GNOME Shell 43 on Wayland, Allow clicked with the
// compositor's virtual pointer.
func TestAllowForeverEndToEndGnomeShell(t *testing.T) {
	allowForeverEndToEnd(t, "gnome", "gnome-e2e-alert", "gnome-e2e-scripted-press-ignored", "gnome-e2e-rules-after-allow")
}

// allowForeverEndToEnd is the body of the tests above in a session of kind, with its screenshots' names.
func allowForeverEndToEnd(t *testing.T, kind, shotAlert, shotIgnored, shotRules string) {
	h := StartHelper(t)
	if !h.HasPrompts(t) {
		t.Skip("needs Prompts in the helper")
	}
	s := StartSession(t, kind)
	StartApp(t, s, h, English())
	s.Log.WaitFor(t, "registered as agent", 0)

	servers := testrig.StartServers(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "newapp")
	asked := time.Now()
	result := startClient(app, servers.TCP4)

	// The alert names the program and where it connects. (The helper's programs see every process on the
	// machine: when other root processes connect at the same time, their questions may come first; this
	// question's turn comes when they are answered or expire.)
	deadline := time.Now().Add(60 * time.Second)
	var names [][2]string
	for {
		names = s.Names(t)
		if hasName(names, "label", app) && hasName(names, "label", servers.TCP4) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the alert did not show %s connecting to %s; it shows:\n%s", app, servers.TCP4, dumpNames(names))
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case r := <-result:
		t.Fatalf("the connection ended before anyone answered: %+v", r)
	default:
	}
	s.Screenshot(t, shotAlert)

	// The attack: another program of the user presses Allow through the accessibility tree. Not the user's
	// hand, so ignored, and the alert says so; the connection stays held.
	s.Click(t, "push button", "Allow")
	s.WaitFor(t, "label", "A program tried to answer for you; it was ignored. Use your mouse or keyboard.", 10*time.Second)
	select {
	case r := <-result:
		t.Fatalf("an AT-SPI press of Allow answered the question: %+v", r)
	case <-time.After(2 * time.Second):
	}
	s.Screenshot(t, shotIgnored)
	// The attack's line, in the security ring's form (tests/security writes security.txt).
	os.MkdirAll(testrig.ResultsDir(t), 0o755)
	os.WriteFile(filepath.Join(testrig.ResultsDir(t), "security-gui.txt"), []byte("tried: AT-SPI doAction on the alert's Allow, GUI scripting off / stopped: "+
		"the connection stayed held, the alert said \"A program tried to answer for you; it was ignored.\"\n"), 0o644)
	// The user clicks Allow with the mouse.
	if kind == "gnome" {
		time.Sleep(700 * time.Millisecond) // past the arm delay
		s.ShellClickAccessible(t, alertTitle, "push button", "Allow")
	} else {
		s.RealClick(t, "push button", "Allow")
	}

	select {
	case r := <-result:
		if !r.OK {
			t.Fatalf("the held connection did not complete after Allow: %+v", r)
		}
		t.Logf("the held connect() completed %v after it started (it waited for the answer)", r.Elapsed().Round(time.Millisecond))
		if r.Elapsed() < 200*time.Millisecond {
			t.Errorf("connect() took %v: it was not held for the answer", r.Elapsed())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the client did not finish %v after the question:\n%s\n%s", time.Since(asked), s.Log, h.Log)
	}

	// The rule is in the app's Rules page ...
	s.ShowPage(t, "rules")
	s.WaitFor(t, "table cell", "newapp  ("+app+")", 20*time.Second)
	names = s.Names(t)
	for _, want := range []string{"Allow", "Forever"} {
		if !hasName(names, "table cell", want) {
			t.Errorf("the Rules page does not show %q for the new rule; it shows:\n%s", want, dumpNames(names))
		}
	}
	s.Screenshot(t, shotRules)

	// ... and tattlectl lists it.
	cmd := exec.Command(testrig.Tattlectl(t), "rules", "list")
	cmd.Env = h.Env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tattlectl rules list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), app) {
		t.Errorf("tattlectl rules list does not list a rule for %s:\n%s", app, out)
	}
	// A second connection is decided in the kernel, without a question.
	if r := testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", servers.TCP4); !r.OK || r.Elapsed() > 100*time.Millisecond {
		t.Errorf("the second connection after Allow forever: %+v (took %v)", r, r.Elapsed())
	}
}
