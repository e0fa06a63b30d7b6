// Package testagent runs `tattlectl agent --json` for test rings and answers its questions as a person types:
// one copy of what the hold, day-one and identity rings all need.
package testagent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// Event is one JSON line of `tattlectl agent --json`.
type Event struct {
	Event    string       `json:"event"`
	ID       uint64       `json:"id"`
	Question api.Question `json:"question"`
	Waiting  int          `json:"waiting"`
}

// Agent is a running `tattlectl agent --json`, answered through its standard input.
type Agent struct {
	log    *testrig.LogTail
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan Event
}

// Start runs cmd (a `tattlectl agent --json` with its environment set; its standard error goes to log) and
// waits until it registers. Questions about processes the test did not start are allowed once, unseen: the
// helper holds every program on the machine, and those are not what the test is about.
func Start(t testing.TB, cmd *exec.Cmd, log *testrig.LogTail) *Agent {
	t.Helper()
	stdin, stdout := testrig.Pipes(t, cmd)
	cmd.Stderr = LogWriter{Log: log, Prefix: "agent: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &Agent{log: log, cmd: cmd, stdin: stdin, events: make(chan Event, 1024)}
	t.Cleanup(a.Stop)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev.Event == "question" && Foreign(ev.Question.PID) {
				io.WriteString(stdin, "a 1\n")
				continue
			}
			a.events <- ev
		}
		close(a.events)
	}()
	if ev := a.Next(t, "registered", 20*time.Second); ev.Event != "registered" {
		t.Fatalf("agent did not register:\n%s", log)
	}
	return a
}

// Stop ends the agent by its PID, if it still runs.
func (a *Agent) Stop() {
	if a.cmd.ProcessState == nil {
		a.cmd.Process.Kill()
		a.cmd.Wait()
	}
}

// PID is the agent process's.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Next returns the next event of kind, skipping others, or fails after timeout.
func (a *Agent) Next(t testing.TB, kind string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-a.events:
			if !ok {
				t.Fatalf("agent exited while waiting for %q:\n%s", kind, a.log)
			}
			if ev.Event == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q from the agent within %v\n%s", kind, timeout, a.log)
		}
	}
}

// Quiet fails if the agent shows a question within d.
func (a *Agent) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-a.events:
			if ev.Event == "question" {
				t.Fatalf("unexpected question: %+v", ev.Question)
			}
		case <-deadline:
			return
		}
	}
}

// CountQuestions returns how many questions the agent shows within d (none answered).
func (a *Agent) CountQuestions(d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-a.events:
			if !ok {
				return n
			}
			if ev.Event == "question" {
				n++
			}
		case <-deadline:
			return n
		}
	}
}

// Answer types keys into the agent and returns when they were sent.
func (a *Agent) Answer(t testing.TB, keys string) time.Time {
	t.Helper()
	at := time.Now()
	if _, err := io.WriteString(a.stdin, keys+"\n"); err != nil {
		t.Fatalf("answer: %v", err)
	}
	return at
}

// Foreign reports whether pid is a live process that this test did not start (directly or through others).
// A process already gone counts as the test's own.
func Foreign(pid uint32) bool {
	self := os.Getpid()
	for p, hops := int(pid), 0; p > 1 && hops < 64; hops++ {
		if p == self {
			return false
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return false
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse after the last ')'.
		rest := string(data[strings.LastIndexByte(string(data), ')')+1:])
		var state string
		var ppid int
		if _, err := fmt.Sscan(rest, &state, &ppid); err != nil {
			return false
		}
		p = ppid
	}
	return true
}

// LogWriter adds each line written to a log, prefixed.
type LogWriter struct {
	Log    *testrig.LogTail
	Prefix string
}

func (w LogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.Log.Add(w.Prefix + line)
	}
	return len(p), nil
}
