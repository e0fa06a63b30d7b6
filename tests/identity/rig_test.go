// Package identity tests identity as people know their applications (issue 12) end to end: tattled on a
// private bus with polkitd, rules made with tattlectl, and real interpreters (python3, node, bash) running
// scripts the test writes, connecting to loopback servers.
package identity

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/rules"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// report collects the figures the tests measure, for tests/output/identity.txt.
var report = testrig.NewReport("identity.txt")

// rig is one helper on a private bus.
type rig struct {
	*testrig.TattleBus
	enf *enforce.Enforcer // the helper's pinned maps, to see what the kernel knows
}

func newRig(t *testing.T, name string, extra ...string) *rig {
	t.Helper()
	r := &rig{TattleBus: testrig.StartTattleBus(t, name, extra...)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus and helper log:\n%s", r.Log)
		}
	})
	// The first call activates tattled; its programs are pinned once it answers.
	r.ctl(t, "status")
	deadline := time.Now().Add(20 * time.Second)
	for {
		enf, err := enforce.OpenPinned(r.Tattled.PinDir, nil)
		if err == nil {
			r.enf = enf
			t.Cleanup(func() { enf.Close() })
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tattled pinned nothing: %v\n%s", err, r.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

// ctl runs tattlectl as root and fails the test when it fails.
func (r *rig) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := r.Ctl(t, 0, args...)
	if code != 0 {
		t.Fatalf("tattlectl %v: exit %d: %s%s\n%s", args, code, out, errOut, r.Log)
	}
	return out
}

// rules lists the rules as JSON.
func (r *rig) rules(t *testing.T) []rules.Rule {
	t.Helper()
	var rs []rules.Rule
	out := r.ctl(t, "rules", "list", "--json")
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("rules list --json: %v: %s", err, out)
	}
	return rs
}

// flowLine is one flow of `tattlectl monitor --once --json`.
type flowLine struct {
	Exe         string `json:"exe"`
	Via         string `json:"via"`
	Destination string `json:"destination"`
	Attempts    uint64 `json:"attempts"`
	Allowed     uint64 `json:"allowed"`
	Denied      uint64 `json:"denied"`
	Undecided   uint64 `json:"undecided"`
	Verdict     string `json:"verdict"`
	RuleID      string `json:"rule_id"`
	LastPID     uint32 `json:"last_pid"`
}

func (r *rig) flows(t *testing.T) []flowLine {
	t.Helper()
	out := r.ctl(t, "monitor", "--once", "--json")
	var fl []flowLine
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &fl); err != nil {
		t.Fatalf("monitor --once --json: %v: %s", err, out)
	}
	return fl
}

// proc is a program started with a pipe on its standard input: it waits for a line before it connects.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   chan string
	start time.Time
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), out: make(chan string, 1)}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	p.cmd.Stderr = &stderr
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		b, _ := io.ReadAll(bufio.NewReader(stdout))
		p.cmd.Wait()
		p.out <- strings.Join(strings.Fields(string(b)+" "+stderr.String()), " ")
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
	})
	return p
}

// go lets the program connect and returns what it printed.
func (p *proc) release(t *testing.T) string {
	t.Helper()
	io.WriteString(p.stdin, "go\n")
	p.stdin.Close()
	select {
	case s := <-p.out:
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not finish", p.cmd.Args)
	}
	return ""
}

// awaitScript waits until the kernel identifies the process by its script and returns how long that took
// from the start of the process.
func (r *rig) awaitScript(t *testing.T, p *proc) (enforce.Via, time.Duration) {
	t.Helper()
	pid := uint32(p.cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := r.enf.ViaOf(pid)
		if ok && v.State == enforce.ViaResolved {
			return v, time.Since(p.start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d (%v): the kernel never identified its script (entry %+v, %v)\n%s", pid, p.cmd.Args, v, ok, r.Log)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}
