package identity

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// The scripts each interpreter runs: wait for a line on standard input (so the test can first see that the
// kernel knows the script), connect once to HOST PORT, print "ok" or the error.
const (
	pyScript = `import socket, sys, errno
sys.stdin.readline()
s = socket.socket()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok")
except OSError as e:
    print("error", errno.errorcode.get(e.errno, e.errno))
`
	nodeScript = `const net = require('net');
process.stdin.once('data', () => {
  const s = net.connect({host: process.argv[2], port: +process.argv[3]});
  s.on('connect', () => { console.log('ok'); s.destroy(); process.exit(0); });
  s.on('error', (e) => { console.log('error', e.code); process.exit(0); });
});
`
	// bash's /dev/tcp: the connect(2) is bash's own.
	bashScript = `#!/bin/bash
read line
if exec 3<>/dev/tcp/$1/$2; then echo ok; else echo error; fi
`
)

// TestScriptsAreSeparateApplications: two scripts of one interpreter are two applications, decided in the
// kernel. For python3, node and a bash script run by its #! line: one script is allowed and one denied the
// same destination, while the interpreter itself is allowed everything there. The denied script gets EPERM
// from the kernel, its flow shows no undecided attempt (no userspace decision on its path), and `python3 -c`
// is the interpreter itself.
func TestScriptsAreSeparateApplications(t *testing.T) {
	for _, bin := range []string{"/usr/bin/python3", "/usr/bin/node", "/bin/bash"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing (tests/install-deps.sh installs python3, nodejs and bash)", bin)
		}
	}
	r := newRig(t, "identity-scripts", "-hold=false", "-names=false")
	srv := testrig.StartServers(t)
	host, port, _ := net.SplitHostPort(srv.TCP4)
	dir := testrig.AppDir(t)

	type lang struct {
		name, interp string
		script       string
		ext          string
		run          func(script string) (string, []string) // command line for a script
	}
	langs := []lang{
		{"python", "/usr/bin/python3", pyScript, ".py", func(s string) (string, []string) {
			return "/usr/bin/python3", []string{"-u", s, host, port} // -u: an option before the script
		}},
		{"node", "/usr/bin/node", nodeScript, ".js", func(s string) (string, []string) {
			return "/usr/bin/node", []string{s, host, port}
		}},
		{"bash", "/bin/bash", bashScript, ".sh", func(s string) (string, []string) {
			return s, []string{host, port} // run by the kernel through its #! line
		}},
	}
	for _, l := range langs {
		good := writeFile(t, filepath.Join(dir, "good-"+l.name+l.ext), l.script, 0o755)
		evil := writeFile(t, filepath.Join(dir, "evil-"+l.name+l.ext), l.script, 0o755)
		interp, err := filepath.EvalSymlinks(l.interp)
		if err != nil {
			t.Fatal(err)
		}
		// The interpreter itself may reach the server; the good script too; the evil script may not.
		r.ctl(t, "rules", "add", "--allow", "--app", interp, "--remote", host, "--port", port, "--id", "bare-"+l.name)
		r.ctl(t, "rules", "add", "--allow", "--app", interp, "--via", good, "--remote", host, "--port", port, "--id", "good-"+l.name)
		r.ctl(t, "rules", "add", "--deny", "--app", interp, "--via", evil, "--remote", host, "--port", port, "--id", "evil-"+l.name)

		run := func(script string) (string, time.Duration, uint32) {
			name, args := l.run(script)
			p := startProc(t, name, args...)
			v, took := r.awaitScript(t, p)
			if !v.App.IsScript() {
				t.Errorf("%s %v: the kernel identifies it as %v, not as a script", l.name, args, v.App)
			}
			return p.release(t), took, uint32(p.cmd.Process.Pid)
		}
		goodOut, goodTook, _ := run(good)
		evilOut, evilTook, evilPID := run(evil)
		if goodOut != "ok" {
			t.Errorf("%s: the allowed script got %q, want ok", l.name, goodOut)
		}
		wantEvil := "error EPERM"
		if l.name == "bash" {
			wantEvil = "Operation not permitted"
		}
		if !strings.Contains(evilOut, wantEvil) {
			t.Errorf("%s: the denied script got %q, want %q (EPERM from the kernel)", l.name, evilOut, wantEvil)
		}
		// The kernel decided the denied script's attempt: its flow has the deny rule and no undecided attempt.
		var evilFlow *flowLine
		for _, f := range r.flows(t) {
			if f.Via == evil && f.Destination == srv.TCP4 {
				evilFlow = &f
			}
		}
		if evilFlow == nil {
			t.Errorf("%s: no flow shows %s via %s", l.name, interp, evil)
		} else if evilFlow.Denied == 0 || evilFlow.Undecided != 0 || evilFlow.RuleID != "evil-"+l.name || evilFlow.Exe != interp {
			t.Errorf("%s: the denied script's flow is %+v; want denied by rule evil-%s in the kernel, nothing undecided", l.name, *evilFlow, l.name)
		}
		report.Add(t, "%s: %s via good -> %s, via evil -> %s (pid %d, kernel flow: denied %d, undecided %d, rule %s); script identified %v and %v after start",
			l.name, filepath.Base(interp), goodOut, evilOut, evilPID, flowField(evilFlow, "denied"), flowField(evilFlow, "undecided"),
			flowRule(evilFlow), goodTook.Round(time.Millisecond), evilTook.Round(time.Millisecond))
	}

	// python3 -c runs no script: it is the interpreter itself, and the interpreter's own rule applies.
	py, _ := filepath.EvalSymlinks("/usr/bin/python3")
	out, err := exec.Command("/usr/bin/python3", "-c", fmt.Sprintf(`import socket
s = socket.socket()
try:
    s.connect((%q, %s)); print("ok")
except OSError as e:
    print("error", e)`, host, port)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("python3 -c (the interpreter itself, allowed): %s %v", out, err)
	}
	var bare *flowLine
	for _, f := range r.flows(t) {
		if f.Exe == py && f.Via == "" && f.Destination == srv.TCP4 {
			bare = &f
		}
	}
	if bare == nil || bare.Allowed == 0 || bare.RuleID != "bare-python" {
		t.Errorf("python3 -c: no flow of the interpreter itself allowed by bare-python: %+v", bare)
	}
	report.Add(t, "python3 -c -> %s (flow %s without via, rule %s)", strings.TrimSpace(string(out)), filepath.Base(py), flowRule(bare))

	// What a person sees: the monitor names the script.
	table := r.ctl(t, "monitor", "--once")
	want := py + " via " + filepath.Join(dir, "evil-python.py")
	if !strings.Contains(table, want) {
		t.Errorf("tattlectl monitor does not show %q:\n%s", want, table)
	}
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, " via ") {
			report.Add(t, "tattlectl monitor: %s", strings.Join(strings.Fields(line), " "))
		}
	}
}

func flowField(f *flowLine, which string) uint64 {
	if f == nil {
		return 0
	}
	if which == "denied" {
		return f.Denied
	}
	return f.Undecided
}

func flowRule(f *flowLine) string {
	if f == nil {
		return "(no flow)"
	}
	return f.RuleID
}
