// Package holdrig is the rig of the rings that hold real connections (tests/hold, tests/dayone): network
// namespaces with servers in them, a tattled on a private bus with its own netfilter table and queue, the
// settings, pending questions and rules through the D-Bus client, and clients run in the background. One copy
// of what those rings all need; their agents are tests/internal/testagent's.
package holdrig

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
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

// Ring names one ring's own resources, so that rings (run one at a time, but possibly left over from a killed
// run) never share a netfilter table, queue, namespace, link or address.
type Ring struct {
	Table  string // nft table of the ring's tattled
	Queue  string // its netfilter queue number
	Netns  string // name part of its namespaces ("hold": tattle-hold-PID-I)
	Link   string // prefix of its host-side links ("th": thPID-I), short: interface names have 15 bytes
	Subnet int    // namespace i's link is 10.199.(Subnet+i).0/30
}

// Netns is a network namespace with one veth link to the host: the host side has HostAddr, the namespace
// PeerAddr. Servers listen inside it.
type Netns struct {
	Name     string
	HostAddr string
	PeerAddr string
	fd       int
}

// NewNetns makes namespace number i (0, 1, …) of the test, on its own /30 link; it is removed when the test ends.
func (g Ring) NewNetns(t *testing.T, i int) *Netns {
	t.Helper()
	n := &Netns{Name: fmt.Sprintf("tattle-%s-%d-%d", g.Netns, os.Getpid(), i),
		HostAddr: fmt.Sprintf("10.199.%d.1", g.Subnet+i), PeerAddr: fmt.Sprintf("10.199.%d.2", g.Subnet+i)}
	testrig.AddVethNetns(t, n.Name, fmt.Sprintf("%s%d-%d", g.Link, os.Getpid()%100000, i), "eth0", n.HostAddr, n.PeerAddr)
	fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.fd = fd
	t.Cleanup(func() { unix.Close(fd) })
	return n
}

// Inside runs f on a thread switched into the namespace (sockets made there stay in it).
func (n *Netns) Inside(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is never unlocked: it dies with this goroutine rather than going back to the pool in the
		// wrong namespace.
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("enter netns: %v", err)
			return
		}
		f()
	}()
	<-done
}

// TCPServer listens in the namespace and accepts (answering a short HTTP reply, holding connections open
// briefly); it returns host:port.
func (n *Netns) TCPServer(t *testing.T) string { return n.TCPServerOn(t, 0) }

// TCPServerOn is TCPServer on port (0: any).
func (n *Netns) TCPServerOn(t *testing.T, port int) string {
	t.Helper()
	var ln net.Listener
	n.Inside(t, func() {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", n.PeerAddr, port))
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

// UDPServer echoes datagrams in the namespace on a port of its own; it returns host:port.
func (n *Netns) UDPServer(t *testing.T) string { return n.UDPServerOn(t, 0) }

// UDPServerOn echoes datagrams in the namespace on port (0: any); it returns host:port.
func (n *Netns) UDPServerOn(t *testing.T, port int) string {
	t.Helper()
	var pc net.PacketConn
	n.Inside(t, func() {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", n.PeerAddr, port))
		if err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	t.Cleanup(func() { pc.Close() })
	go testrig.EchoUDP(pc)
	return pc.LocalAddr().String()
}

// Rig is one helper on a private bus, with the ring's netfilter table and queue, and namespace 0 (NS).
type Rig struct {
	*testrig.TattleBus
	NS  *Netns
	API *client.Client
}

// NewRig starts tattled (flags extra) on a private bus in settings st (see SetSettings), makes namespace 0, and
// allows the test binary itself: the test's own servers answer from inside the namespace, and their replies
// are not what is being asked about.
func (g Ring) NewRig(t *testing.T, name string, st api.Settings, extra ...string) *Rig {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip is missing (apt-get install iproute2)")
	}
	netfilter.Uninstall(g.Table)
	t.Cleanup(func() { netfilter.Uninstall(g.Table) })
	flags := append([]string{"-nft-table", g.Table, "-queue", g.Queue}, extra...)
	r := &Rig{TattleBus: testrig.StartTattleBus(t, name, flags...), NS: g.NewNetns(t, 0)}
	c, err := client.Dial(r.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.API = c
	r.SetSettings(t, st)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus and helper log:\n%s", r.Log)
		}
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := r.Ctl(t, 0, "rules", "add", "--allow", "--app", self); code != 0 {
		t.Fatalf("allow the test's own servers: %s", errOut)
	}
	return r
}

// SetSettings sets st; its zero fields take the rig's values (alert mode, default deny, 30 s to answer,
// fail pass, 30 days of history).
func (r *Rig) SetSettings(t *testing.T, st api.Settings) {
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
	full.Protected, full.AllowGUIScripting = st.Protected, st.AllowGUIScripting
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.API.SetSettings(ctx, full); err != nil {
		t.Fatalf("set settings: %v\n%s", err, r.Log)
	}
}

// Pending returns the open questions about this test's own processes (others: testagent.Foreign).
func (r *Rig) Pending(t *testing.T) []api.Question {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qs, err := r.API.Pending(ctx)
	if err != nil {
		t.Fatalf("pending: %v", err)
	}
	own := qs[:0]
	for _, q := range qs {
		if !testagent.Foreign(q.PID) {
			own = append(own, q)
		}
	}
	return own
}

// Rules returns the helper's rules.
func (r *Rig) Rules(t *testing.T) []api.Rule {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := r.API.Rules(ctx)
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs
}

// StartAgent starts root's `tattlectl agent --json` on the rig's bus.
func (r *Rig) StartAgent(t *testing.T) *testagent.Agent {
	t.Helper()
	return r.StartAgentCmd(t, exec.Command(testrig.Tattlectl(t), "agent", "--json"))
}

// StartAgentCmd starts an agent from a prepared command (another user, a controlling terminal…) on the rig's bus.
func (r *Rig) StartAgentCmd(t *testing.T, cmd *exec.Cmd) *testagent.Agent {
	t.Helper()
	cmd.Env = r.Env
	return testagent.Start(t, cmd, r.Log)
}

// Started is a client process running in the background; it is killed if still running when the test ends.
type Started struct {
	Cmd  *exec.Cmd
	End  time.Time // when it exited; set before Exited reports true
	out  lockedBuilder
	done chan struct{}
}

// lockedBuilder collects a process's output while it runs and may be read meanwhile.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs name with args in the background, its standard output and error collected.
func Start(t *testing.T, name string, args ...string) *Started {
	t.Helper()
	s := &Started{Cmd: exec.Command(name, args...), done: make(chan struct{})}
	s.Cmd.Stdout = &s.out
	s.Cmd.Stderr = &s.out
	if err := s.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.Cmd.Process.Kill()
			<-s.done
		}
	})
	go func() {
		s.Cmd.Wait()
		s.End = time.Now()
		close(s.done)
	}()
	return s
}

// Output is what the client wrote so far.
func (s *Started) Output() string { return s.out.String() }

// Wait returns the client's output once it exited, or fails after timeout.
func (s *Started) Wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-s.done:
		return s.out.String()
	case <-time.After(timeout):
		t.Fatalf("client still running after %v: %s", timeout, s.out.String())
	}
	return ""
}

// Exited reports whether the client has exited.
func (s *Started) Exited() bool {
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

// Python starts python3 connecting to addr (host:port) with a connect timeout; see ParsePy for its output.
func Python(t *testing.T, addr string, timeout time.Duration) *Started {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	return Start(t, "python3", "-c", pyConnect, host, port, fmt.Sprint(timeout.Seconds()))
}

// ParsePy returns the python client's outcome word ("ok", "timeout" or the errno's name) and the time its
// connect returned.
func ParsePy(t *testing.T, out string) (string, time.Time) {
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

// RunClient runs a copy of the test client (its own application identity) and returns its report.
func RunClient(t *testing.T, path string, args ...string) testrig.Result {
	t.Helper()
	return testrig.RunApp(t, path, testrig.RunOpts{}, args...)
}
