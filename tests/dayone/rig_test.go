// Package dayone tests Tattle as a new user meets it on a real machine (issue 10): the system's own traffic keeps
// working, questions reach the right person (system processes: an administrator), one question per
// application, user and host. A real dbus-daemon and polkitd, tattled activated on that bus with its netfilter
// queue, `tattlectl agent` answering as a person would, real clients (curl, getent, python) run as root, as
// system users and as an ordinary user, against servers in a network namespace the test makes.
//
// The rig (netns, agent, clients) follows tests/hold's.
package dayone

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testagent"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const (
	testTable = "tattle_test_dayone"
	testQueue = "7453"
)

// results collects the figures the tests measure, for the report in TATTLE_RESULTS_DIR.
type results struct {
	mu    sync.Mutex
	lines []string
}

var report results

func (r *results) add(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf("%s: %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	lines := strings.Join(r.lines, "\n") + "\n"
	r.mu.Unlock()
	dir := os.Getenv("TATTLE_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join(testrig.RepoRoot(t), "tests", "output")
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "dayone.txt"), []byte(lines), 0o644)
}

// netns is a network namespace with one veth link to the host: the host side has hostAddr, the namespace
// peerAddr. Servers listen inside it.
type netns struct {
	name     string
	hostAddr string
	peerAddr string
	fd       int
}

// newNetns makes namespace number i (0, 1, …) of the test, on its own /30 link.
func newNetns(t *testing.T, i int) *netns {
	t.Helper()
	n := &netns{name: fmt.Sprintf("tattle-d1-%d-%d", os.Getpid(), i),
		hostAddr: fmt.Sprintf("10.199.%d.1", 40+i), peerAddr: fmt.Sprintf("10.199.%d.2", 40+i)}
	hostIf, peerIf := fmt.Sprintf("td%d-%d", os.Getpid()%100000, i), "eth0"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "del", n.name).Run()
	run("netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	run("link", "add", hostIf, "type", "veth", "peer", "name", peerIf, "netns", n.name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	run("addr", "add", n.hostAddr+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", n.name, "addr", "add", n.peerAddr+"/30", "dev", peerIf)
	run("-n", n.name, "link", "set", peerIf, "up")
	run("-n", n.name, "link", "set", "lo", "up")
	fd, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.fd = fd
	t.Cleanup(func() { unix.Close(fd) })
	return n
}

// inside runs f on a thread switched into the namespace (sockets made there stay in it), then switches back.
func (n *netns) inside(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is never unlocked: it dies with this goroutine rather than going back to the pool in the
		// wrong namespace if switching back failed.
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("enter netns: %v", err)
			return
		}
		f()
	}()
	<-done
}

// tcpServer listens in the namespace and accepts (holding connections open briefly); it returns host:port.
func (n *netns) tcpServer(t *testing.T) string {
	t.Helper()
	var ln net.Listener
	n.inside(t, func() {
		var err error
		ln, err = net.Listen("tcp4", n.peerAddr+":0")
		if err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// udpServer echoes datagrams in the namespace; it returns host:port.
func (n *netns) udpServer(t *testing.T) string {
	t.Helper()
	var pc net.PacketConn
	n.inside(t, func() {
		var err error
		pc, err = net.ListenPacket("udp4", n.peerAddr+":0")
		if err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], addr)
		}
	}()
	return pc.LocalAddr().String()
}

// rig is one helper on a private bus, with its own netfilter table and queue.
type rig struct {
	*testrig.TattleBus
	ns  *netns
	api *client.Client
}

func newRig(t *testing.T, name string, st api.Settings, extra ...string) *rig {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip is missing (apt-get install iproute2)")
	}
	netfilter.Uninstall(testTable)
	t.Cleanup(func() { netfilter.Uninstall(testTable) })
	r := &rig{TattleBus: testrig.StartTattleBus(t, name, append([]string{"-nft-table", testTable, "-queue", testQueue}, extra...)...), ns: newNetns(t, 0)}
	c, err := client.Dial(r.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.api = c
	r.setSettings(t, st)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus and helper log:\n%s", r.Log)
		}
	})
	// The test's own servers answer from inside the namespace; their replies are not what is being asked about.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := r.Ctl(t, 0, "rules", "add", "--allow", "--app", self); code != 0 {
		t.Fatalf("allow the test's own servers: %s", errOut)
	}
	return r
}

func (r *rig) setSettings(t *testing.T, st api.Settings) {
	t.Helper()
	full := api.Settings{Mode: api.ModeAlert, DefaultAction: api.DefaultDeny, QuestionTimeout: 30, FailPolicy: api.FailPass, HistoryDays: 30}
	if st.Mode != "" {
		full.Mode = st.Mode
	}
	if st.DefaultAction != "" {
		full.DefaultAction = st.DefaultAction
	}
	if st.QuestionTimeout != 0 {
		full.QuestionTimeout = st.QuestionTimeout
	}
	if st.FailPolicy != "" {
		full.FailPolicy = st.FailPolicy
	}
	if st.SystemDefault != "" {
		full.SystemDefault = st.SystemDefault
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.api.SetSettings(ctx, full); err != nil {
		t.Fatalf("set settings: %v\n%s", err, r.Log)
	}
}

func (r *rig) pending(t *testing.T) []api.Question {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qs, err := r.api.Pending(ctx)
	if err != nil {
		t.Fatalf("pending: %v", err)
	}
	// Only the questions about this test's own processes (see foreign).
	own := qs[:0]
	for _, q := range qs {
		if !testagent.Foreign(q.PID) {
			own = append(own, q)
		}
	}
	return own
}

func (r *rig) rules(t *testing.T) []api.Rule {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := r.api.Rules(ctx)
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs
}

// agent is a running `tattlectl agent --json` (tests/internal/testagent).
type agent = testagent.Agent

func (r *rig) startAgent(t *testing.T) *agent {
	t.Helper()
	return r.startAgentCmd(t, exec.Command(testrig.Tattlectl(t), "agent", "--json"))
}

// startAgentCmd starts an agent from a prepared command (another user, a controlling terminal…).
func (r *rig) startAgentCmd(t *testing.T, cmd *exec.Cmd) *agent {
	t.Helper()
	cmd.Env = r.Env
	return testagent.Start(t, cmd, r.Log)
}

// started is a client process running in the background.
type started struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan struct{}
	end  time.Time
}

func start(t *testing.T, name string, args ...string) *started {
	t.Helper()
	s := &started{cmd: exec.Command(name, args...), done: make(chan struct{})}
	s.cmd.Stdout = &s.out
	s.cmd.Stderr = &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	go func() {
		s.cmd.Wait()
		s.end = time.Now()
		close(s.done)
	}()
	return s
}

// wait returns the client's output once it exited, or fails after timeout.
func (s *started) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-s.done:
		return s.out.String()
	case <-time.After(timeout):
		t.Fatalf("client still running after %v: %s", timeout, s.out.String())
	}
	return ""
}

// exited reports whether the client has exited.
func (s *started) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// pyConnect is a python client: it connects (timeout seconds), prints "ok <time>" or "error <errno> <time>"
// with the wall-clock time connect() returned.
const pyConnect = `
import socket, sys, time, errno
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((host, port))
    print("ok %.6f" % time.time())
except socket.timeout:
    print("timeout %.6f" % time.time())
except OSError as e:
    print("error %s %.6f" % (errno.errorcode.get(e.errno, e.errno), time.time()))
`

func python(t *testing.T, addr string, timeout time.Duration) *started {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	return start(t, "python3", "-c", pyConnect, host, port, fmt.Sprint(timeout.Seconds()))
}

// parsePy returns the outcome word and the time connect returned.
func parsePy(t *testing.T, out string) (string, time.Time) {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("python client said %q", out)
	}
	var sec float64
	fmt.Sscan(f[len(f)-1], &sec)
	word := f[0]
	if word == "error" && len(f) == 3 {
		word = f[1]
	}
	return word, time.Unix(0, int64(sec*1e9))
}

// testClient runs a copy of the test client (its own application identity) and returns its report.
func testClient(t *testing.T, path string, args ...string) testrig.Result {
	t.Helper()
	return testrig.RunApp(t, path, testrig.RunOpts{}, args...)
}
