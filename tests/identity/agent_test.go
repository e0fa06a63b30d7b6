package identity

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

// agentEvent is one JSON line of `tattlectl agent --json`.
type agentEvent struct {
	Event    string       `json:"event"`
	ID       uint64       `json:"id"`
	Question api.Question `json:"question"`
}

// agent is a running `tattlectl agent --json`, answered through its standard input as a person would type.
type agent struct {
	r      *rig
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan agentEvent
}

func (r *rig) startAgent(t *testing.T) *agent {
	t.Helper()
	cmd := exec.Command(testrig.Tattlectl(t), "agent", "--json")
	cmd.Env = r.Env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{r: r, cmd: cmd, stdin: stdin, events: make(chan agentEvent, 1024)}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			a.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev agentEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			// Other programs on the machine are held too; they are not what the test is about.
			if ev.Event == "question" && foreign(ev.Question.PID) {
				io.WriteString(stdin, "a 1\n")
				continue
			}
			a.events <- ev
		}
		close(a.events)
	}()
	if ev := a.next(t, "registered", 20*time.Second); ev.Event != "registered" {
		t.Fatalf("agent did not register:\n%s", r.Log)
	}
	return a
}

func (a *agent) next(t *testing.T, kind string, timeout time.Duration) agentEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-a.events:
			if !ok {
				t.Fatalf("agent exited while waiting for %q:\n%s", kind, a.r.Log)
			}
			if ev.Event == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q from the agent within %v\n%s", kind, timeout, a.r.Log)
		}
	}
}

// quiet fails if the agent shows a question within d.
func (a *agent) quiet(t *testing.T, d time.Duration) {
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

func (a *agent) answer(t *testing.T, keys string) {
	t.Helper()
	if _, err := io.WriteString(a.stdin, keys+"\n"); err != nil {
		t.Fatalf("answer: %v", err)
	}
}

// foreign reports whether pid is a live process that this test did not start (directly or through others).
func foreign(pid uint32) bool {
	self := os.Getpid()
	for p, hops := int(pid), 0; p > 1 && hops < 64; hops++ {
		if p == self {
			return false
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return false
		}
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
