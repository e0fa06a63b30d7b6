package dnscapture_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/helper/dnscapture"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// testNet is a network namespace with a veth pair: the test process stays in the initial namespace
// (hostV4/hostV6) and the DNS server listens on port 53 inside the namespace (nsV4/nsV6).
type testNet struct {
	name         string
	hostV4, nsV4 netip.Addr
	hostV6, nsV6 netip.Addr
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	id := os.Getpid() % 200
	n := &testNet{
		name:   fmt.Sprintf("tattle-dns-%d", os.Getpid()),
		hostV4: netip.MustParseAddr(fmt.Sprintf("10.231.%d.1", id)),
		nsV4:   netip.MustParseAddr(fmt.Sprintf("10.231.%d.2", id)),
		hostV6: netip.MustParseAddr(fmt.Sprintf("fd54:7a77:%x::1", id)),
		nsV6:   netip.MustParseAddr(fmt.Sprintf("fd54:7a77:%x::2", id)),
	}
	hostIf, nsIf := fmt.Sprintf("tdns%dh", os.Getpid()%100000), fmt.Sprintf("tdns%dn", os.Getpid()%100000)
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", n.name).Run() })
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", n.name)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", hostIf).Run() })
	run(t, "ip", "addr", "add", n.hostV4.String()+"/30", "dev", hostIf)
	run(t, "ip", "addr", "add", n.hostV6.String()+"/64", "dev", hostIf, "nodad")
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "-n", n.name, "addr", "add", n.nsV4.String()+"/30", "dev", nsIf)
	run(t, "ip", "-n", n.name, "addr", "add", n.nsV6.String()+"/64", "dev", nsIf, "nodad")
	run(t, "ip", "-n", n.name, "link", "set", nsIf, "up")
	run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// listenIn opens a UDP socket inside the namespace: the socket belongs to the namespace it was created in,
// so only the creating thread needs to enter it.
func (n *testNet) listenIn(t *testing.T, addr netip.AddrPort) net.PacketConn {
	t.Helper()
	type result struct {
		pc  net.PacketConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.name))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter netns: %w", err)}
			return
		}
		pc, err := net.ListenPacket("udp", addr.String())
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread is in the wrong namespace: keep it locked so the runtime discards it.
			ch <- result{pc, fmt.Errorf("leave netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{pc, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.pc.Close() })
	return r.pc
}

// The test zone. big.tattle.test has enough A records for a > 512-byte EDNS answer; huge.tattle.test is
// bigger than the capture cap; tc.tattle.test answers with the TC bit, as a server does when the answer
// does not fit the client's buffer.
const (
	bigCount  = 120
	hugeCount = 400
)

func zoneHandler(t *testing.T) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		hdr := func(name string, typ uint16, ttl uint32) dns.RR_Header {
			return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
		}
		switch strings.ToLower(q.Name) {
		case "www.tattle.test.":
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr("www.tattle.test.", dns.TypeCNAME, 300), Target: "edge.cdn.tattle.test."})
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr("edge.cdn.tattle.test.", dns.TypeA, 60), A: net.IPv4(10, 99, 0, 7)})
			}
			if q.Qtype == dns.TypeAAAA {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr("edge.cdn.tattle.test.", dns.TypeAAAA, 60), AAAA: net.ParseIP("fd00:99::7")})
			}
		case "big.tattle.test.", "huge.tattle.test.":
			n := bigCount
			if strings.HasPrefix(q.Name, "huge") {
				n = hugeCount
			}
			for i := 0; i < n; i++ {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA, 120), A: net.IPv4(10, 100, byte(i/250), byte(1+i%250))})
			}
		case "tc.tattle.test.":
			m.Truncated = true
		default:
			m.Rcode = dns.RcodeNameError
		}
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(o.UDPSize(), false)
		}
		if err := w.WriteMsg(m); err != nil {
			t.Errorf("DNS server: write answer: %v", err)
		}
	}
}

// serveZone answers the test zone on pc from when it returns until the test ends.
func serveZone(t *testing.T, pc net.PacketConn) {
	srv := &dns.Server{PacketConn: pc, Handler: zoneHandler(t)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
}

func startServer(t *testing.T, n *testNet) {
	for _, a := range []netip.Addr{n.nsV4, n.nsV6} {
		serveZone(t, n.listenIn(t, netip.AddrPortFrom(a, 53)))
	}
}

func openCapture(t *testing.T) *dnscapture.Capture {
	t.Helper()
	root, err := enforce.CgroupV2Root("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnscapture.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// packets reads captured answers from the server at srv in the background; only those count (the machine
// may resolve other names meanwhile).
func packets(t *testing.T, c *dnscapture.Capture, servers ...netip.Addr) <-chan dnscapture.Packet {
	ch := make(chan dnscapture.Packet, 256)
	go func() {
		defer close(ch)
		for {
			p, err := c.Read()
			if err != nil {
				return
			}
			if slices.Contains(servers, p.Server.Addr()) {
				ch <- p
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan dnscapture.Packet) dnscapture.Packet {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatal("capture closed")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no DNS answer captured within 5 s")
	}
	return dnscapture.Packet{}
}

// query sends one question from a socket the test owns, so it can compare the captured identity with the
// socket's own cookie and address.
func query(t *testing.T, server netip.Addr, name string, qtype uint16, udpSize uint16) (*dns.Msg, netip.AddrPort, uint64) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	if udpSize > 0 {
		c.UDPSize = udpSize
	}
	conn, err := c.Dial(netip.AddrPortFrom(server, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	raw, err := conn.Conn.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cookie uint64
	raw.Control(func(fd uintptr) {
		cookie, err = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if udpSize > 0 {
		m.SetEdns0(udpSize, false)
	}
	in, _, err := c.ExchangeWithConn(m, conn)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return in, local, cookie
}

func TestCaptureAnswers(t *testing.T) {
	n := newTestNet(t)
	startServer(t, n)
	c := openCapture(t)
	ch := packets(t, c, n.nsV4, n.nsV6)

	cases := []struct {
		label   string
		server  netip.Addr
		name    string
		qtype   uint16
		udpSize uint16
		minWire int
		cut     bool
	}{
		{"IPv4, CNAME chain", n.nsV4, "www.tattle.test.", dns.TypeA, 0, 0, false},
		{"IPv6, AAAA", n.nsV6, "www.tattle.test.", dns.TypeAAAA, 0, 0, false},
		{"EDNS answer over 512 bytes", n.nsV4, "big.tattle.test.", dns.TypeA, 4096, 513, false},
		{"EDNS answer over 512 bytes, IPv6", n.nsV6, "big.tattle.test.", dns.TypeA, 4096, 513, false},
		{"answer longer than the capture cap", n.nsV4, "huge.tattle.test.", dns.TypeA, 65000, bpf.DnsPayloadMax + 1, true},
		{"TC bit", n.nsV4, "tc.tattle.test.", dns.TypeA, 0, 0, false},
		{"NXDOMAIN", n.nsV4, "nothing.tattle.test.", dns.TypeA, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.label, func(t *testing.T) {
			answer, local, cookie := query(t, tc.server, tc.name, tc.qtype, tc.udpSize)
			sent, err := answer.Pack()
			if err != nil {
				t.Fatal(err)
			}
			p := next(t, ch)
			if p.Server != netip.AddrPortFrom(tc.server, 53) || p.LocalAddr != local {
				t.Errorf("captured %v -> %v, want %v -> %v", p.Server, p.LocalAddr, netip.AddrPortFrom(tc.server, 53), local)
			}
			if p.SocketCookie != cookie || p.UID != uint32(os.Geteuid()) || p.CgroupID == 0 {
				t.Errorf("captured socket cookie %d uid %d cgroup %d, want cookie %d uid %d and a cgroup",
					p.SocketCookie, p.UID, p.CgroupID, cookie, os.Geteuid())
			}
			if d := time.Since(p.Time); d < 0 || d > 5*time.Second {
				t.Errorf("captured time %v is %v from now", p.Time, d)
			}
			if p.WireLen != len(sent) || p.WireLen < tc.minWire {
				t.Errorf("captured wire length %d, the client received %d bytes (want at least %d)", p.WireLen, len(sent), tc.minWire)
			}
			if p.Truncated != tc.cut {
				t.Errorf("captured truncated=%v, want %v", p.Truncated, tc.cut)
			}
			if tc.cut {
				if len(p.Payload) != bpf.DnsPayloadMax || !bytes.Equal(p.Payload, sent[:bpf.DnsPayloadMax]) {
					t.Errorf("cut payload: %d bytes, want the first %d bytes of the answer", len(p.Payload), bpf.DnsPayloadMax)
				}
				return
			}
			got := new(dns.Msg)
			if err := got.Unpack(p.Payload); err != nil {
				t.Fatalf("captured payload does not parse: %v", err)
			}
			if got.String() != answer.String() {
				t.Errorf("captured answer\n%s\nthe client received\n%s", got, answer)
			}
		})
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Captured < uint64(len(cases)) || st.Truncated < 1 || st.Lost != 0 {
		t.Errorf("counters %+v: want at least %d captured, 1 truncated, none lost", st, len(cases))
	}
	t.Logf("counters: %+v", st)
}

// TestCaptureGetent resolves with glibc's resolver (getent, a separate process) pointed at the test server
// through a private mount namespace whose /etc/resolv.conf is bind-mounted; the machine's file is untouched.
func TestCaptureGetent(t *testing.T) {
	for _, tool := range []string{"getent", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing", tool)
		}
	}
	n := newTestNet(t)
	startServer(t, n)
	c := openCapture(t)
	ch := packets(t, c, n.nsV4)

	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+n.nsV4.String()+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec getent ahostsv4 www.tattle.test`, "sh", conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("getent: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "10.99.0.7") {
		t.Fatalf("getent did not resolve through the test server:\n%s", out)
	}
	p := next(t, ch)
	m := new(dns.Msg)
	if err := m.Unpack(p.Payload); err != nil {
		t.Fatalf("captured payload does not parse: %v", err)
	}
	var addrs []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			addrs = append(addrs, a.A.String())
		}
	}
	if m.Question[0].Name != "www.tattle.test." || !slices.Contains(addrs, "10.99.0.7") {
		t.Fatalf("captured answer for getent:\n%s", m)
	}
	if p.SocketCookie == 0 || p.LocalAddr.Addr() != n.hostV4 {
		t.Errorf("captured getent's answer with cookie %d to %v, want a cookie and an address of %v", p.SocketCookie, p.LocalAddr, n.hostV4)
	}
}

// TestCaptureLoopback needs nothing but loopback (no netns, no tools), so it also runs in a minimal VM: a
// server on 127.0.0.53:53 and on [::1]:53 if those are free, a query from the test process, the captured
// answer compared with what the client received.
func TestCaptureLoopback(t *testing.T) {
	c := openCapture(t)
	var servers []netip.Addr
	for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.IPv6Loopback()} {
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(a, 53).String())
		if err != nil {
			t.Logf("%v:53 is not free (%v); not testing it", a, err)
			continue
		}
		serveZone(t, pc)
		servers = append(servers, a)
	}
	if len(servers) == 0 {
		t.Fatal("neither 127.0.0.53:53 nor [::1]:53 is free for the test server")
	}
	ch := packets(t, c, servers...)
	for _, s := range servers {
		answer, local, cookie := query(t, s, "www.tattle.test.", dns.TypeA, 0)
		p := next(t, ch)
		got := new(dns.Msg)
		if err := got.Unpack(p.Payload); err != nil {
			t.Fatalf("captured payload does not parse: %v", err)
		}
		if got.String() != answer.String() || p.LocalAddr != local || p.SocketCookie != cookie || p.Truncated {
			t.Errorf("captured %v -> %v cookie %d truncated %v:\n%s\nwant -> %v cookie %d:\n%s",
				p.Server, p.LocalAddr, p.SocketCookie, p.Truncated, got, local, cookie, answer)
		}
	}
}

// TestCaptureBeforeDelivery: by the time a client holds its answer, the answer is already in the ring
// buffer — the property the helper relies on to decide a connection made right after a lookup by its name.
func TestCaptureBeforeDelivery(t *testing.T) {
	c := openCapture(t)
	pc, err := net.ListenPacket("udp", "127.0.0.53:53")
	if err != nil {
		t.Fatalf("127.0.0.53:53 is not free: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: zoneHandler(t)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	defer srv.Shutdown()
	server := netip.MustParseAddr("127.0.0.53")
	const n = 500
	for i := range n {
		_, local, _ := query(t, server, "www.tattle.test.", dns.TypeA, 0)
		if c.Unread() == 0 {
			t.Fatalf("query %d: the client has its answer but the ring buffer is empty", i)
		}
		for {
			p, err := c.Read()
			if err != nil {
				t.Fatal(err)
			}
			if p.LocalAddr == local {
				break
			}
		}
	}
}
