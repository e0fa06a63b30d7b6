package security

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// The ring's own netfilter table and queue (other rings use their own).
const (
	secTable = "tattle_test_security"
	secQueue = "7471"
)

// agentEvent is one JSON line of `tattlectl agent --json`.
type agentEvent struct {
	Event    string       `json:"event"`
	Question api.Question `json:"question"`
	Here     bool         `json:"here"`
	PID      uint32       `json:"pid"`
}

// realAgent is `tattlectl agent --json` run by the user, answered through its standard input.
type realAgent struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan agentEvent
	out    *testrig.LogTail
}

// startAgent runs argv (an agent) as u with extra environment; it returns the agent once it says it is
// registered, or nil and what it printed when it exits first.
func startAgent(t *testing.T, b *testrig.TattleBus, u testrig.User, extraEnv []string, argv ...string) (*realAgent, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append([]string{}, b.Env...), extraEnv...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.UID}}
	stdin, stdout := testrig.Pipes(t, cmd)
	a := &realAgent{cmd: cmd, stdin: stdin, events: make(chan agentEvent, 64), out: &testrig.LogTail{}}
	cmd.Stderr = logWriter{a.out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			a.out.Add(sc.Text())
			var ev agentEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event != "" {
				a.events <- ev
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(a.stop)
	select {
	case ev := <-a.events:
		if ev.Event == "registered" {
			return a, ""
		}
		return nil, fmt.Sprintf("unexpected first event %+v", ev)
	case <-exited:
		return nil, a.out.String()
	case <-time.After(20 * time.Second):
		a.stop()
		return nil, "neither registered nor refused within 20 s: " + a.out.String()
	}
}

func (a *realAgent) stop() {
	if a.cmd.ProcessState == nil && a.cmd.Process != nil {
		a.cmd.Process.Kill()
	}
}

type logWriter struct{ l *testrig.LogTail }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.l.Add(line)
	}
	return len(p), nil
}

// question runs app as u against srv and returns the agent event of the question about it, answering
// allow once; want is the agent expected to be asked, the others must stay silent.
func question(t *testing.T, u testrig.User, app, srv string, want *realAgent, others ...*realAgent) bool {
	t.Helper()
	done := make(chan testrig.Result, 1)
	go func() { done <- testrig.RunApp(t, app, testrig.RunOpts{UID: u.UID}, "tcp", srv) }()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-want.events:
			if ev.Event != "question" {
				continue
			}
			if ev.Question.UID != u.UID || ev.Question.Exe != app {
				io.WriteString(want.stdin, "a 1\n") // another program of the machine: not this test's
				continue
			}
			io.WriteString(want.stdin, "a 1\n")
			if r := <-done; !r.OK {
				t.Errorf("the connection allowed by the real agent failed: %+v", r)
			}
			for _, o := range others {
				for len(o.events) > 0 {
					if ev := <-o.events; ev.Event == "question" && ev.Question.Exe == app {
						t.Errorf("another agent was asked too: %+v", ev)
						return false
					}
				}
			}
			return true
		case <-deadline:
			t.Errorf("the real agent was not asked about %s within 15 s", app)
			<-done
			return false
		}
	}
}

// Must show 2: rogue agents are refused at RegisterAgent, while the real agent keeps getting every question.
func TestRogueAgentsAreRefused(t *testing.T) {
	u := testrig.TestUser(t)
	netfilter.Uninstall(secTable)
	t.Cleanup(func() { netfilter.Uninstall(secTable) })
	b := testrig.StartTattleBus(t, "security-agents", "-nft-table", secTable, "-queue", secQueue)
	root, err := client.Dial(b.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	// Programs of other users (other tests on the machine) are let through at once: nobody asks about them.
	if err := root.SetSettings(context.Background(), api.Settings{Mode: api.ModeAlert, DefaultAction: api.DefaultAllow,
		QuestionTimeout: 30, FailPolicy: api.FailPass, HistoryDays: 7}); err != nil {
		t.Fatal(err)
	}
	srv := testrig.StartServers(t)
	dir := testrig.AppDir(t)
	ctl := testrig.Tattlectl(t)
	n := 0
	nextApp := func() string {
		n++
		return testrig.CopyApp(t, testrig.Build(t).Client, dir, fmt.Sprintf("app-%d", n))
	}

	real, out := startAgent(t, b, u, nil, ctl, "agent", "--json")
	if real == nil {
		t.Fatalf("the real tattlectl agent was refused:\n%s\n%s", out, b.Log)
	}
	if !question(t, u, nextApp(), srv.TCP4, real) {
		t.Fatalf("the real agent does not get questions:\n%s", b.Log)
	}
	attacks.note(t, "the real tattlectl agent of %s registered and answered a held connection", u.Name)

	// Each attack: it must not register, and the next question still goes to the real agent.
	userDir := filepath.Join(dir, "home")
	os.MkdirAll(userDir, 0o755)
	os.Chown(userDir, int(u.UID), int(u.UID))
	copied := filepath.Join(userDir, "tattlectl")
	if out, err := exec.Command("cp", ctl, copied).CombinedOutput(); err != nil {
		t.Fatalf("copy tattlectl: %v %s", err, out)
	}
	os.Chown(copied, int(u.UID), int(u.UID))
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatal("python3 is missing (apt-get install python3 python3-dbus)")
	}
	for _, tool := range []string{"strace", "gdbus"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (tests/install-deps.sh installs it)", tool)
		}
	}
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	rogues := []struct {
		what string
		env  []string
		argv []string
	}{
		{"a copy of tattlectl in the user's own directory", nil, []string{copied, "agent", "--json"}},
		{"a python D-Bus client (python3-dbus)", nil, []string{python, filepath.Join(testrig.RepoRoot(t), "tests", "security", "testdata", "rogue_agent.py")}},
		{"gdbus calling RegisterAgent", nil, []string{"gdbus", "call", "--address", b.Address, "--dest", api.BusName, "--object-path", string(api.ObjectPath), "--method", api.PromptsInterface + ".RegisterAgent", "/rogue"}},
		{"a Go program with Tattle's own client library", nil, []string{callerBinary(t), "agent"}},
		{"tattlectl with LD_PRELOAD", []string{"LD_PRELOAD=" + libc}, []string{ctl, "agent", "--json"}},
		{"tattlectl with LD_LIBRARY_PATH", []string{"LD_LIBRARY_PATH=/tmp"}, []string{ctl, "agent", "--json"}},
		{"tattlectl with GTK_MODULES and GIO_EXTRA_MODULES", []string{"GTK_MODULES=/tmp/evil.so", "GIO_EXTRA_MODULES=/tmp"}, []string{ctl, "agent", "--json"}},
		{"tattlectl traced by strace (ptrace)", nil, []string{"strace", "-f", "-o", "/dev/null", ctl, "agent", "--json"}},
		{"tattlectl agent --replace without the user's password", nil, []string{ctl, "agent", "--replace", "--json"}},
	}
	for _, r := range rogues {
		ag, out := startAgent(t, b, u, r.env, r.argv...)
		if ag != nil {
			ag.stop()
			attacks.attack(t, "rogue agent: "+r.what, false, "registered")
			continue
		}
		refused := strings.Contains(out, "refused as an agent") || strings.Contains(out, "not authorized")
		stillReal := question(t, u, nextApp(), srv.TCP4, real)
		attacks.attack(t, "rogue agent: "+r.what, refused && stillReal, out)
	}

	// The issue's own attack: a second, genuine tattlectl agent fed answers by a script. It registers (it
	// is the real program, unaltered) but is not asked: the first agent is, until the user takes over.
	second, out := startAgent(t, b, u, nil, ctl, "agent", "--json")
	if second == nil {
		t.Fatalf("a second genuine agent was refused: %s", out)
	}
	attacks.attack(t, "a second genuine tattlectl agent fed by a script (no --replace)", question(t, u, nextApp(), srv.TCP4, real, second),
		"registered, but the question went to the first agent")

	// Attaching to the running real agent after it registered: it is not dumpable, so its user cannot.
	trace := exec.Command("timeout", "5", "strace", "-p", fmt.Sprint(real.cmd.Process.Pid), "-o", "/dev/null")
	trace.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.UID}}
	traceOut, _ := trace.CombinedOutput()
	attached := !strings.Contains(string(traceOut), "Operation not permitted")
	attacks.attack(t, "ptrace attach (strace -p) to the running real agent", !attached && question(t, u, nextApp(), srv.TCP4, real),
		strings.TrimSpace(string(traceOut)))

	// A ninth agent: the user has two; six more genuine ones fill the quota of eight.
	for i := 0; i < 6; i++ {
		if ag, out := startAgent(t, b, u, nil, ctl, "agent", "--json"); ag == nil {
			t.Fatalf("genuine agent %d of 8 refused: %s", i+3, out)
		}
	}
	ninth, out := startAgent(t, b, u, nil, ctl, "agent", "--json")
	if ninth != nil {
		ninth.stop()
	}
	attacks.attack(t, "a ninth agent of the same user", ninth == nil && strings.Contains(out, "agents registered already") &&
		question(t, u, nextApp(), srv.TCP4, real), lastLine(out))
}

// An agent that passed the check when it registered and then loaded code its user wrote (as the app would a
// GTK module that XSETTINGS names later) is not believed: the helper checks the agent's process again before
// an answer counts, so its Allow is refused and the question gets the default (deny).
func TestAgentThatLoadsCodeLaterIsNotBelieved(t *testing.T) {
	u := testrig.TestUser(t)
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatal("python3 is missing (apt-get install python3 python3-dbus python3-gi)")
	}
	netfilter.Uninstall(secTable)
	t.Cleanup(func() { netfilter.Uninstall(secTable) })
	b := testrig.StartTattleBus(t, "security-late-code", "-nft-table", secTable, "-queue", secQueue, "-terminal-agents", python)
	root, err := client.Dial(b.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := root.SetSettings(context.Background(), api.Settings{Mode: api.ModeAlert, DefaultAction: api.DefaultDeny,
		QuestionTimeout: 10, FailPolicy: api.FailPass, HistoryDays: 7}); err != nil {
		t.Fatal(err)
	}
	srv := testrig.StartServers(t)
	dir := testrig.AppDir(t)

	// The library it loads: a copy of a small system library, owned by the user.
	data, err := os.ReadFile("/lib/x86_64-linux-gnu/libBrokenLocale.so.1")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "late-home")
	os.MkdirAll(home, 0o755)
	os.Chown(home, int(u.UID), int(u.UID))
	lib := filepath.Join(home, "libmodule.so")
	if err := os.WriteFile(lib, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(lib, int(u.UID), int(u.UID))

	cmd := exec.Command(python, filepath.Join(testrig.RepoRoot(t), "tests", "security", "testdata", "late_module_agent.py"), lib)
	cmd.Env = b.Env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.UID}}
	out := &testrig.LogTail{}
	cmd.Stderr = logWriter{out}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Add(sc.Text())
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || l != want {
				t.Fatalf("the agent printed %q, want %q:\n%s\n%s", l, want, out, b.Log)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the agent did not print %q:\n%s\n%s", want, out, b.Log)
		}
	}
	expect("registered")

	// Unaltered, its Allow counts: the held connection goes through.
	r := testrig.RunApp(t, testrig.CopyApp(t, testrig.Build(t).Client, dir, "late-1"), testrig.RunOpts{UID: u.UID}, "tcp", srv.TCP4)
	expect("answered 1")
	if !r.OK {
		t.Fatalf("the unaltered agent's Allow did not let the connection through: %+v\n%s", r, b.Log)
	}
	// With the user's library loaded, its Allow is refused: the default denies.
	r = testrig.RunApp(t, testrig.CopyApp(t, testrig.Build(t).Client, dir, "late-2"), testrig.RunOpts{UID: u.UID}, "tcp", srv.TCP4)
	expect("answered 2")
	refused := !r.OK && strings.Contains(b.Log.String(), "runs code from "+lib)
	attacks.attack(t, "an agent that loads code of its user after it registered answers Allow", refused,
		fmt.Sprintf("connection ok=%v errno=%s", r.OK, r.Errno))
	if !refused {
		t.Errorf("the changed agent's Allow: connection %+v; the helper's log:\n%s", r, b.Log)
	}
}
