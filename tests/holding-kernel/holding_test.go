package holdingkernel

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/tests/internal/benchstat"
)

// Queue numbers of the tests, added to this run's base (newRig).
const (
	idxMethod = iota
	idxTCP
	idxUDP
	idxPass
	idxDrop
	idxSendto
)

// The issue: "Use the native nftables queue expression where the kernel has it and the xt NFQUEUE target
// otherwise". Install's answer is checked against what the kernel holds in the chain.
func TestQueueMethod(t *testing.T) {
	r := newRig(t, "method", idxMethod, true)
	exprs := holdChainExprs(t, r.rules.Table)
	var native, xt, socketMark int
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			// "meta mark set": only the copy of the socket's mark writes the mark (google/nftables does not
			// decode the socket expression itself when listing rules).
			if e.SourceRegister && e.Key == expr.MetaKeyMARK {
				socketMark++
			}
		case *expr.Queue:
			native++
			if e.Num != r.rules.Queue {
				t.Errorf("queue expression sends to %d, want %d", e.Num, r.rules.Queue)
			}
		case *expr.Target:
			if e.Name == "NFQUEUE" {
				xt++
			}
		case *expr.Ct:
			// A ct expression turns connection tracking on for every packet of the namespace (issue 16).
			t.Errorf("the hold chain uses connection tracking (ct %v): every packet would pay for it", e.Key)
		}
	}
	reportLine(t, "kernel %s backend %s: method %q; hold chain: %s", benchstat.KernelRelease(), r.enf.Backend(), r.method,
		describeExprs(exprs))
	// Four queueing rules: strict (never bypassed) and held, for TCP and for UDP.
	switch r.method {
	case netfilter.MethodNative:
		if native != 4 || xt != 0 {
			t.Errorf("method %q but the kernel's hold chain has %d queue expressions and %d NFQUEUE targets", r.method, native, xt)
		}
	case netfilter.MethodXtables:
		if xt != 4 || native != 0 {
			t.Errorf("method %q but the kernel's hold chain has %d queue expressions and %d NFQUEUE targets", r.method, native, xt)
		}
	default:
		t.Errorf("unknown method %q", r.method)
	}
	// The copy of the socket's mark that holds an unconnected UDP socket's first datagram (newRig fails when
	// Install reports it missing; this checks the kernel has it).
	if socketMark != 1 {
		t.Errorf("the kernel's hold chain sets the packet mark %d times, want once (the socket mark copy): %s",
			socketMark, describeExprs(exprs))
	}
	want := map[string]netfilter.Method{"native": netfilter.MethodNative, "xtables": netfilter.MethodXtables}
	if exp := os.Getenv("TATTLE_EXPECT_NFT_QUEUE"); exp != "" {
		if m, ok := want[exp]; !ok {
			t.Errorf("TATTLE_EXPECT_NFT_QUEUE=%q: want native or xtables", exp)
		} else if r.method != m {
			t.Errorf("installed with %q on kernel %s, want %q", r.method, benchstat.KernelRelease(), m)
		}
	} else {
		t.Logf("TATTLE_EXPECT_NFT_QUEUE is not set: method not asserted")
	}
}

// A held connect() waits for the verdict: Accept completes the same connect, Refuse makes it fail with
// ECONNREFUSED at once.
func TestHeldTCP(t *testing.T) {
	r := newRig(t, "tcp", idxTCP, false)
	q := r.openQueue(t)
	for _, f := range families {
		t.Run(f.name+"/accept", func(t *testing.T) {
			srv := startTCP(t, f.tcp, f.addr)
			c := startApp(t, r.held, "tcp", srv.addr)
			p := r.holdSYN(t, q, r.held, false, c, srv)
			if n := arrivals(srv.accepts); n != 0 {
				t.Fatalf("server accepted %d connections while the SYN was held", n)
			}
			verdict := time.Now()
			if err := q.q.Accept(p.ID); err != nil {
				t.Fatal(err)
			}
			var established time.Time
			select {
			case established = <-srv.accepts:
			case <-time.After(packetWait):
				t.Fatal("the server never saw the accepted connection")
			}
			res := c.result(t)
			if !res.OK {
				t.Fatalf("accepted connect failed: %s %s", res.Errno, res.Error)
			}
			if res.Elapsed() < holdFor-50*time.Millisecond {
				t.Errorf("connect returned after %v, before the verdict (held %v)", res.Elapsed(), holdFor)
			}
			if n := arrivals(srv.accepts); n != 0 {
				t.Errorf("server saw %d more connections: the held one should be the only one", n)
			}
			reportLine(t, "tcp %s held %v then accepted: the same connect() returned ok after %v; verdict to "+
				"handshake seen by the server %v; verdict to client exit %v; mark %#x",
				f.name, holdFor, res.Elapsed().Round(time.Millisecond), established.Sub(verdict).Round(time.Microsecond),
				c.exited.Sub(verdict).Round(time.Millisecond), p.Mark)
		})
		t.Run(f.name+"/refuse", func(t *testing.T) {
			srv := startTCP(t, f.tcp, f.addr)
			c := startApp(t, r.strict, "tcp", srv.addr)
			p := r.holdSYN(t, q, r.strict, true, c, srv)
			verdict := time.Now()
			if err := q.q.Refuse(p.ID, p.Mark|testMarks.Deny); err != nil {
				t.Fatal(err)
			}
			if !c.exitedWithin(refuseLimit) {
				t.Fatalf("refused connect still blocked %v after the verdict", refuseLimit)
			}
			res := c.result(t)
			if res.OK || res.Errno != "ECONNREFUSED" {
				t.Fatalf("refused connect: ok=%v errno %q (%s), want ECONNREFUSED", res.OK, res.Errno, res.Error)
			}
			if n := arrivals(srv.accepts); n != 0 {
				t.Errorf("server accepted %d connections of a refused client", n)
			}
			reportLine(t, "tcp %s (strict app) held %v then refused: connect() failed with %s after %v; verdict "+
				"to client exit %v; mark %#x", f.name, holdFor, res.Errno, res.Elapsed().Round(time.Millisecond),
				c.exited.Sub(verdict).Round(time.Millisecond), p.Mark)
		})
	}
}

// A held datagram is delivered once accepted; the client sees the echo. The socket is connected first
// (connect() marks it, as a resolver's socket is), so the datagram carries the mark.
func TestHeldUDP(t *testing.T) {
	r := newRig(t, "udp", idxUDP, false)
	q := r.openQueue(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			srv := startUDP(t, f.udp, f.addr)
			c := startUDPApp(t, r.udp, "connected", srv.addr, 3*time.Second, srv.addr)
			p, delivery := r.holdDatagramThenAccept(t, q, srv)
			res := c.udpResult(t)
			if len(res.Echoed) != 1 || !res.Echoed[0] {
				t.Fatalf("accepted datagram: echo received %v", res.Echoed)
			}
			reportLine(t, "udp %s (connected socket) held %v then accepted: delivered %v after the verdict, "+
				"client got the echo; mark %#x", f.name, holdFor, delivery.Round(time.Microsecond), p.Mark)
		})
	}
}

// The first datagram sendto() sends from an unconnected socket is held like any other (DESIGN.md: "a process
// calls connect() or sendmsg() to an unconnected UDP destination"). The kernel takes a datagram's mark from its
// socket before the cgroup sendmsg hook marks the socket (udp_sendmsg: ipcm_init_sk, then
// BPF_CGROUP_RUN_PROG_UDP4_SENDMSG_LOCK), so only the hold chain's copy of the socket's mark (nft_socket) holds
// that first datagram; once answered, its flow is established and later datagrams to the same destination are
// not new. A second datagram to another destination is held too.
func TestHeldUDPUnconnectedSendto(t *testing.T) {
	r := newRig(t, "sendto", idxSendto, false)
	q := r.openQueue(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			first, second := startUDP(t, f.udp, f.addr), startUDP(t, f.udp, f.addr)
			c := startUDPApp(t, r.udp, "sendto2", first.addr, 3*time.Second, second.addr)
			p, delivery := r.holdDatagramThenAccept(t, q, first)
			p2 := q.next(t, unix.IPPROTO_UDP, second.addr)
			r.checkMark(t, p2, r.udp, false)
			if err := q.q.Accept(p2.ID); err != nil {
				t.Fatal(err)
			}
			res := c.udpResult(t)
			if len(res.Echoed) != 2 || !res.Echoed[0] || !res.Echoed[1] {
				t.Errorf("echoes received %v, want both", res.Echoed)
			}
			reportLine(t, "udp %s unconnected sendto held %v then accepted: delivered %v after the verdict; the "+
				"second datagram, to a new destination, held too; mark %#x", f.name, holdFor,
				delivery.Round(time.Microsecond), p.Mark)
		})
	}
}

// holdSYN takes the SYN app a's client c sends to srv off the queue, checks its marks (strict: a is a strict
// app), and holds it for holdFor, asserting that c's connect() is still blocked.
func (r *rig) holdSYN(t *testing.T, q *queue, a app, strict bool, c *running, srv *tcpServer) netfilter.Packet {
	t.Helper()
	p := q.next(t, unix.IPPROTO_TCP, srv.addr)
	r.checkMark(t, p, a, strict)
	time.Sleep(time.Until(p.Time.Add(holdFor)))
	if c.exitedWithin(0) {
		t.Fatalf("connect returned while its SYN was held: %s", c.stdout.String())
	}
	return p
}

// holdDatagramThenAccept takes the udp app's first datagram to srv off the queue, checks its marks, holds it
// for holdFor while asserting srv has not received it, accepts it and waits for srv to. It returns the packet
// and how long delivery took after the verdict.
func (r *rig) holdDatagramThenAccept(t *testing.T, q *queue, srv *udpServer) (netfilter.Packet, time.Duration) {
	t.Helper()
	p := q.next(t, unix.IPPROTO_UDP, srv.addr)
	r.checkMark(t, p, r.udp, false)
	time.Sleep(time.Until(p.Time.Add(holdFor)))
	if n := arrivals(srv.got); n != 0 {
		t.Fatalf("server received %d datagrams while the first was held", n)
	}
	verdict := time.Now()
	if err := q.q.Accept(p.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case delivered := <-srv.got:
		return p, delivered.Sub(verdict)
	case <-time.After(packetWait):
		t.Fatal("the accepted datagram never reached the server")
		return p, 0
	}
}

// noReader runs the fail-policy cases with no process reading the queue.
func noReader(t *testing.T, r *rig, pass bool) {
	outcome := map[bool]string{true: "passed", false: "dropped"}
	// The test process itself is allowed: it is never marked, so never held, whatever the policy.
	t.Run("unmarked", func(t *testing.T) {
		srv := startTCP(t, "tcp4", "127.0.0.1:0")
		c, err := net.DialTimeout("tcp4", srv.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("an allowed, unmarked process could not connect: %v", err)
		}
		c.Close()
	})
	for _, a := range []struct {
		name     string
		app, udp app
		passes   bool
	}{{"held", r.held, r.udp, pass}, {"strict", r.strict, r.strictUDP, false}} {
		t.Run(a.name+"/tcp", func(t *testing.T) {
			srv := startTCP(t, "tcp4", "127.0.0.1:0")
			c := startApp(t, a.app, "tcp", srv.addr)
			if a.passes {
				res := c.result(t)
				if !res.OK {
					t.Fatalf("connect failed with no queue reader (pass when absent): %s %s", res.Errno, res.Error)
				}
				if res.Mark&testMarks.Held == 0 {
					t.Errorf("socket mark %#x lacks the held bit: the test did not exercise holding", res.Mark)
				}
				reportLine(t, "no reader, pass-when-absent=%v: %s app tcp connect passed in %v", pass, a.name,
					res.Elapsed().Round(time.Millisecond))
				return
			}
			if !c.stillBlocked(watchFor) {
				t.Fatalf("connect returned with no queue reader, want its SYN dropped: %s", c.stdout.String())
			}
			if n := arrivals(srv.accepts); n != 0 {
				t.Errorf("server accepted %d connections", n)
			}
			reportLine(t, "no reader, pass-when-absent=%v: %s app tcp connect dropped (still blocked after %v)",
				pass, a.name, watchFor)
		})
		t.Run(a.name+"/udp", func(t *testing.T) {
			srv := startUDP(t, "udp4", "127.0.0.1:0")
			res := startUDPApp(t, a.udp, "connected", srv.addr, time.Second, srv.addr).udpResult(t)
			if res.Mark&testMarks.Held == 0 {
				t.Errorf("socket mark %#x lacks the held bit: the test did not exercise holding", res.Mark)
			}
			echoed := len(res.Echoed) == 1 && res.Echoed[0]
			if echoed != a.passes {
				t.Errorf("echo received = %v, want %v (datagram %s)", echoed, a.passes, outcome[a.passes])
			}
			if got := arrivals(srv.got) > 0; got != a.passes {
				t.Errorf("server received the datagram = %v, want %v", got, a.passes)
			}
			reportLine(t, "no reader, pass-when-absent=%v: %s app udp datagram (connected socket) %s", pass, a.name,
				outcome[echoed])
		})
	}
}

// With no helper reading the queue and the fail policy "pass", held packets pass; strictly held ones (an
// application with a deny rule) are still dropped.
func TestNoReaderPasses(t *testing.T) {
	noReader(t, newRig(t, "pass", idxPass, true), true)
}

// With no helper reading the queue and the fail policy "drop", held and strictly held packets are dropped.
func TestNoReaderDrops(t *testing.T) {
	noReader(t, newRig(t, "drop", idxDrop, false), false)
}
