// Package holdingkernel proves connection holding at the kernel level, without the helper or D-Bus: the
// kernel programs mark an undecided application's sockets, helper/netfilter's rules queue their new packets,
// and verdicts given on the queue decide the very connect() or datagram that was held. It runs on the host
// (where the kernel lacks nft_queue, so the xtables NFQUEUE target must be used) and inside Debian's 6.1 and
// 6.12 kernels booted by tests/vm (where the native nftables queue expression must be used).
//
// Environment: TATTLE_BACKEND (auto, lsm or cgroup; default auto), TATTLE_EXPECT_NFT_QUEUE (native or
// xtables: fail unless that method was installed), TATTLE_VM_BOOT (names the report; default "host"),
// TATTLE_RESULTS_DIR (where holding-kernel-<boot>.txt is written), TATTLE_CLIENT (a prebuilt tests/client),
// TATTLE_REQUIRE_ROOT=1 (fail instead of skip without root).
package holdingkernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) {
	// A copy of this binary runs as a second application (see udpclient.go).
	if mode := os.Getenv(clientModeEnv); mode != "" {
		os.Exit(udpClient(mode, os.Args[1:]))
	}
	if testrig.Setup() == nil {
		if os.Getenv(netnsEnv) == "" {
			os.Remove(reportPath()) // each run writes a fresh report
			os.Exit(inPrivateNetns())
		}
		if err := loopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(testrig.Main(m))
}

// netnsEnv marks the copy of the test binary running in its own network namespace.
const netnsEnv = "TATTLE_HK_NETNS"

// inPrivateNetns runs the tests again in a new network namespace, and returns their exit status. The kernel
// programs of any other Tattle helper on the machine mark every process's sockets too (they attach at the
// cgroup root); in the machine's own namespace that helper's table would queue our clients' packets to it.
// Netfilter tables and queues belong to a namespace, so in our own only this test's rules apply.
func inPrivateNetns() int {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "run the tests in a new network namespace: %v\n", err)
		return 1
	}
}

// loopbackUp brings up lo, which starts down in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: read flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// testMarks keep this test's bits apart from DefaultMarks (0x7fff0000), so that a helper running on the same
// machine never queues our packets, nor our rules its packets.
var testMarks = enforce.Marks{Held: 0x00000010, Strict: 0x00000020, Deny: 0x00000040, Token: 0x0000ff80}

// How long a packet is held before the verdict, and how long a dropped connect is watched.
const (
	holdFor     = 500 * time.Millisecond
	watchFor    = 1500 * time.Millisecond
	packetWait  = 10 * time.Second // TCG guests are slow
	refuseLimit = time.Second
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func bootName() string { return envOr("TATTLE_VM_BOOT", "host") }

func reportPath() string {
	return filepath.Join(envOr("TATTLE_RESULTS_DIR", filepath.Join("..", "output")), "holding-kernel-"+bootName()+".txt")
}

// reportLine records one outcome: in the test log, in the report file, and on stdout with a prefix tests/vm
// collects from the guest's console.
func reportLine(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Printf("TATTLE-HOLDING %s\n", line)
	if err := os.MkdirAll(filepath.Dir(reportPath()), 0o755); err != nil {
		t.Errorf("report: %v", err)
		return
	}
	f, err := os.OpenFile(reportPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s\n", t.Name(), line)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// app is a copy of the test client with its own identity.
type app struct {
	path string
	id   identity.Executable
}

// rig is one test's kernel state: private programs and pins, a private nftables table and queue number.
type rig struct {
	enf    *enforce.Enforcer
	rules  netfilter.Rules
	method netfilter.Method
	held   app // undecided everywhere
	strict app // undecided here, but with a deny rule elsewhere: strictly held
	// Copies of this test binary acting as UDP clients (udpclient_test.go), held and strictly held.
	udp, strictUDP app
}

// newRig attaches the programs with every application allowed except two copies of the test client, which
// stay undecided, and installs the hold rules. idx keeps queue numbers apart between the tests of one run.
func newRig(t *testing.T, name string, idx uint16, passWhenAbsent bool) *rig {
	t.Helper()
	backend, err := enforce.ParseBackend(envOr("TATTLE_BACKEND", "auto"))
	if err != nil {
		t.Fatal(err)
	}
	pin := testrig.PinDir("hk-" + name)
	enforce.Uninstall(pin) // leftovers of a crashed run
	enf, err := enforce.Open(enforce.Options{Backend: backend, PinDir: pin, Marks: testMarks, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("attach programs: %v", err)
	}
	t.Cleanup(func() {
		enf.Close()
		if err := enforce.Uninstall(pin); err != nil {
			t.Errorf("remove programs and pins: %v", err)
		}
		if _, err := os.Stat(pin); !os.IsNotExist(err) {
			t.Errorf("pin directory %s left behind (%v)", pin, err)
		}
	})
	r := &rig{enf: enf}

	dir := testrig.AppDir(t)
	client := testrig.Build(t).Client
	for _, a := range []struct {
		dst  *app
		name string
		src  string
	}{{&r.held, "held-app", client}, {&r.strict, "strict-app", client}, {&r.udp, "udp-app", os.Args[0]},
		{&r.strictUDP, "strict-udp-app", os.Args[0]}} {
		a.dst.path = testrig.CopyApp(t, a.src, dir, a.name)
		if a.dst.id, err = identity.Stat(a.dst.path); err != nil {
			t.Fatal(err)
		}
	}
	// Everything else is allowed, so that no other process on the machine is marked by these programs.
	if err := enf.SetDefault(enforce.Scope{App: identity.Any, UID: identity.AnyUID}, enforce.Allow, 1); err != nil {
		t.Fatal(err)
	}
	for i, a := range []app{r.held, r.strict, r.udp, r.strictUDP} {
		if err := enf.SetDefault(enforce.Scope{App: a.id, UID: identity.AnyUID}, enforce.Ask, uint32(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	// A deny rule for a destination the tests never use makes the strict application strictly held.
	for _, a := range []app{r.strict, r.strictUDP} {
		deny := enforce.Destination{Scope: enforce.Scope{App: a.id, UID: identity.AnyUID},
			Prefix: netip.MustParsePrefix("127.0.0.9/32"), Port: 9, Proto: enforce.AnyProtocol}
		if err := enf.SetDestination(deny, enforce.Deny, 20); err != nil {
			t.Fatal(err)
		}
	}

	r.rules = netfilter.Rules{
		Table:          fmt.Sprintf("tattle-hk-%d-%d", os.Getpid(), idx),
		Queue:          uint16(20000 + (os.Getpid()%10000)*4 + int(idx)),
		Held:           testMarks.Held,
		Strict:         testMarks.Strict,
		Deny:           testMarks.Deny,
		PassWhenAbsent: passWhenAbsent,
	}
	netfilter.Uninstall(r.rules.Table)
	// Install may also report a working method with ErrNoSocketMark (no nft_socket): the rings' kernels all have
	// it, so that too fails here.
	r.method, err = netfilter.Install(r.rules)
	if err != nil {
		t.Fatalf("install netfilter rules (method %q): %v", r.method, err)
	}
	t.Cleanup(func() {
		if err := netfilter.Uninstall(r.rules.Table); err != nil {
			t.Errorf("remove table: %v", err)
		}
		if ok, err := netfilter.Installed(r.rules.Table); err != nil || ok {
			t.Errorf("table inet %s still installed (%v)", r.rules.Table, err)
		}
	})
	return r
}

// token is the mark token the kernel must put on a's sockets when run by root.
func (r *rig) token(a app) uint32 { return testMarks.TokenOf(a.id, 0) }

// queue is an open, bound netfilter queue delivering packets on a channel.
type queue struct {
	q       *netfilter.Queue
	packets chan netfilter.Packet
}

func (r *rig) openQueue(t *testing.T) *queue {
	t.Helper()
	q, err := netfilter.OpenQueue(r.rules.Queue)
	if err != nil {
		t.Fatal(err)
	}
	qu := &queue{q: q, packets: make(chan netfilter.Packet, 256)}
	ctx, cancel := context.WithCancel(context.Background())
	err = q.Start(ctx, quietLogger(), func(p netfilter.Packet) {
		select {
		case qu.packets <- p:
		default:
			q.Drop(p.ID) // never reached in these tests: a full channel means a flood, not a held connect
		}
	})
	if err != nil {
		cancel()
		q.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		q.Close()
	})
	return qu
}

// next waits for the packet of proto to dst; packets of anything else are accepted and reported.
func (qu *queue) next(t *testing.T, proto uint8, dst string) netfilter.Packet {
	t.Helper()
	want := netip.MustParseAddrPort(dst)
	deadline := time.After(packetWait)
	for {
		select {
		case p := <-qu.packets:
			if p.Headers.Proto == proto && p.Headers.Dst == want {
				return p
			}
			t.Errorf("unexpected packet queued: %+v (accepted)", p.Headers)
			qu.q.Accept(p.ID)
		case <-deadline:
			t.Fatalf("no packet to %s (proto %d) was queued within %v", dst, proto, packetWait)
		}
	}
}

// checkMark asserts that a queued packet carries the marks the kernel programs put on a's sockets.
func (r *rig) checkMark(t *testing.T, p netfilter.Packet, a app, strict bool) {
	t.Helper()
	if p.Mark&testMarks.Held == 0 {
		t.Errorf("queued packet mark %#x lacks the held bit %#x", p.Mark, testMarks.Held)
	}
	if got, want := testMarks.TokenIn(p.Mark), r.token(a); got != want {
		t.Errorf("queued packet token %#x, want %#x (the token of %s run by root)", got, want, filepath.Base(a.path))
	}
	if got := p.Mark&testMarks.Strict != 0; got != strict {
		t.Errorf("queued packet mark %#x: strict bit set = %v, want %v", p.Mark, got, strict)
	}
	if !p.HasUID || p.UID != 0 {
		t.Errorf("queued packet owner: uid %d (known %v), want root", p.UID, p.HasUID)
	}
}

// running is a client process started in the background.
type running struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	exited time.Time
}

func startApp(t *testing.T, a app, args ...string) *running {
	t.Helper()
	return startAppEnv(t, a, nil, args...)
}

// startUDPApp runs the UDP client copy of this binary in mode (udpclient_test.go).
func startUDPApp(t *testing.T, a app, mode, addr string, wait time.Duration, addr2 string) *running {
	t.Helper()
	return startAppEnv(t, a, []string{clientModeEnv + "=" + mode}, addr, wait.String(), addr2)
}

func startAppEnv(t *testing.T, a app, env []string, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(a.path, args...), done: make(chan struct{})}
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		r.exited = time.Now()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill() // our own child, by PID
			<-r.done
		}
	})
	return r
}

// exitedWithin reports whether the process ended within d.
func (r *running) exitedWithin(d time.Duration) bool {
	select {
	case <-r.done:
		return true
	case <-time.After(d):
		return false
	}
}

// result waits for the client's report.
func (r *running) result(t *testing.T) testrig.Result {
	t.Helper()
	if !r.exitedWithin(packetWait) {
		t.Fatalf("client still running after %v", packetWait)
	}
	var res testrig.Result
	if err := json.Unmarshal(bytes.TrimSpace(r.stdout.Bytes()), &res); err != nil {
		t.Fatalf("client report %q (stderr %q): %v", r.stdout.String(), r.stderr.String(), err)
	}
	return res
}

// udpResult waits for the UDP client's report.
func (r *running) udpResult(t *testing.T) udpReport {
	t.Helper()
	if !r.exitedWithin(packetWait) {
		t.Fatalf("UDP client still running after %v", packetWait)
	}
	var res udpReport
	if err := json.Unmarshal(bytes.TrimSpace(r.stdout.Bytes()), &res); err != nil {
		t.Fatalf("UDP client report %q (stderr %q): %v", r.stdout.String(), r.stderr.String(), err)
	}
	if !res.OK {
		t.Fatalf("UDP client failed: %s", res.Error)
	}
	return res
}

// stillBlocked ends a client that is still blocked, and reports whether it was still blocked.
func (r *running) stillBlocked(d time.Duration) bool {
	if r.exitedWithin(d) {
		return false
	}
	r.cmd.Process.Kill()
	<-r.done
	return true
}

// tcpServer accepts and closes connections on loopback, noting when each handshake completed.
type tcpServer struct {
	addr    string
	accepts chan time.Time
}

func startTCP(t *testing.T, network, addr string) *tcpServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{addr: ln.Addr().String(), accepts: make(chan time.Time, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Noted before the client can learn of it, so a test that saw the client finish sees it too.
			select {
			case s.accepts <- time.Now():
			default:
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

// udpServer echoes datagrams on loopback, noting when each arrived.
type udpServer struct {
	addr string
	got  chan time.Time
}

func startUDP(t *testing.T, network, addr string) *udpServer {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &udpServer{addr: pc.LocalAddr().String(), got: make(chan time.Time, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case s.got <- time.Now():
			default:
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

// arrivals counts what a server saw, without waiting.
func arrivals(ch chan time.Time) int {
	n := 0
	for {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
}

// families are the loopback addresses every case runs on.
var families = []struct{ name, tcp, udp, addr string }{
	{"ipv4", "tcp4", "udp4", "127.0.0.1:0"},
	{"ipv6", "tcp6", "udp6", "[::1]:0"},
}

// holdChainExprs lists the expressions of the installed hold chain, read back from the kernel.
func holdChainExprs(t *testing.T, table string) []expr.Any {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Name: table, Family: nftables.TableFamilyINet},
		&nftables.Chain{Name: "hold"})
	if err != nil {
		t.Fatalf("read back the hold chain of inet %s: %v", table, err)
	}
	var out []expr.Any
	for _, r := range rules {
		out = append(out, r.Exprs...)
	}
	return out
}

func describeExprs(es []expr.Any) string {
	var parts []string
	for _, e := range es {
		switch e := e.(type) {
		case *expr.Queue:
			parts = append(parts, fmt.Sprintf("queue(num %d flags %#x)", e.Num, e.Flag))
		case *expr.Target:
			parts = append(parts, fmt.Sprintf("xt target %s rev %d", e.Name, e.Rev))
		case *expr.Meta:
			if e.SourceRegister && e.Key == expr.MetaKeyMARK {
				parts = append(parts, "meta mark set (socket mark copy)")
			}
		}
	}
	return strings.Join(parts, ", ")
}
