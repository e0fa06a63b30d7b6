package dayone

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/tests/internal/holdrig"
)

// capture counts TCP SYNs arriving in the namespace (an AF_PACKET socket on its side of the link), with the
// time each arrived: what reached the host, whatever the helper believes it held.
type capture struct {
	mu   sync.Mutex
	syns []time.Time
	fd   int
}

func captureSYNs(t *testing.T, n *holdrig.Netns, dst string, lo, hi uint16) *capture {
	t.Helper()
	c := &capture{fd: -1}
	want := net.ParseIP(dst).To4()
	n.Inside(t, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			t.Errorf("packet socket: %v", err)
			return
		}
		c.fd = fd
	})
	if c.fd < 0 {
		t.FailNow()
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 2048)
		for {
			select {
			case <-done:
				return
			default:
			}
			k, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil || k < 40 {
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			if buf[9] != unix.IPPROTO_TCP || !net.IP(buf[16:20]).Equal(want) || k < ihl+14 {
				continue
			}
			port := binary.BigEndian.Uint16(buf[ihl+2:])
			flags := buf[ihl+13]
			if port >= lo && port < hi && flags&0x02 != 0 && flags&0x10 == 0 {
				c.mu.Lock()
				c.syns = append(c.syns, time.Now())
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
		unix.Close(c.fd)
	})
	return c
}

// before counts the SYNs seen before at, and all.
func (c *capture) before(at time.Time) (n, all int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.syns {
		if s.Before(at) {
			n++
		}
	}
	return n, len(c.syns)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// pyFlood opens n non-blocking connections to consecutive ports of one host, then reports how they ended.
const pyFlood = `
import socket, sys, resource, time, select, errno
host, base, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, n + 64))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, base + i))
    socks.append(s)
print("sent", flush=True)
p = select.poll()
for s in socks:
    p.register(s, select.POLLOUT)
left, end = {s.fileno(): s for s in socks}, time.time() + wait
outcome = {}
while left and time.time() < end:
    for fd, ev in p.poll(200):
        s = left.pop(fd, None)
        if s is None:
            continue
        p.unregister(fd)
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        k = errno.errorcode.get(e, "ok") if e else "ok"
        outcome[k] = outcome.get(k, 0) + 1
outcome["pending"] = len(left)
print(" ".join("%s=%d" % kv for kv in sorted(outcome.items())), flush=True)
`

// connectRate is the rate of connect+close of an allowed program (the test itself: its rule allows it) to
// srv over d.
func connectRate(t *testing.T, srv string, d time.Duration) float64 {
	t.Helper()
	n, start := 0, time.Now()
	for time.Since(start) < d {
		c, err := net.DialTimeout("tcp4", srv, 2*time.Second)
		if err != nil {
			t.Errorf("allowed connect: %v", err)
			return 0
		}
		c.Close()
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// TestFloodOfPortsIsOneQuestion: one program connecting to 3,000 ports of one host costs one question, which
// lists the ports; nothing reaches the host before the answer; no question falls to the default because of
// the bus; and other, allowed programs keep their connect rate meanwhile.
func TestFloodOfPortsIsOneQuestion(t *testing.T) {
	const n, base = 3000, 20000
	r := ring.NewRig(t, "dayone-flood", apiSettings(60))
	srv := r.NS.TCPServer(t)
	capt := captureSYNs(t, r.NS, r.NS.PeerAddr, base, base+n)
	ag := r.StartAgent(t)

	// Warm up, then the rate without the flood (before it; after it too, below). Windows of seconds, not
	// less: on a shared 2-core machine a 2 s window swung by ±8% between runs with nothing else changed.
	connectRate(t, srv, 300*time.Millisecond)
	without := connectRate(t, srv, 3*time.Second)

	logFrom := r.Log.Len()
	flood := holdrig.Start(t, "python3", "-c", pyFlood, r.NS.PeerAddr, fmt.Sprint(base), fmt.Sprint(n), "30")
	q := ag.Next(t, "question", 20*time.Second).Question

	// Every port joins the one question (Pending shows the helper's live count).
	deadline := time.Now().Add(20 * time.Second)
	var open int
	var ports uint32
	for {
		qs := r.Pending(t)
		open, ports = len(qs), 0
		for _, p := range qs {
			ports += p.PortCount
		}
		if ports >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The question stays open, holding the flood's connections (and their retransmissions), while the rate
	// is measured: the other program must not notice it.
	during := connectRate(t, srv, 4*time.Second) // covers the flood's SYN retransmissions at 1 and 3 s
	answered := ag.Answer(t, "a 1")
	out := flood.Wait(t, 40*time.Second)
	ag.Quiet(t, 500*time.Millisecond)
	after := connectRate(t, srv, 3*time.Second)
	// The machine is shared (other tests, other work): the rate without is the mean of before and after.
	without = (without + after) / 2

	reached, total := capt.before(answered)
	logText := strings.Join(r.Log.Since(logFrom), "\n")
	defaults := strings.Count(logText, "no answer:") + strings.Count(logText, "too many open questions")
	ratio := during / without
	report.Add(t, "%d ports of one host -> %d question(s) open, %d ports in it (shown to the agent: %d, label %q); "+
		"asked %v after its first attempt; SYNs reaching the host before the answer: %d (after: %d); defaults caused by the agent channel: %d; "+
		"the flood's connections: %s; an allowed program's connect rate during/without: %.3f (%.0f vs %.0f /s)",
		n, open, ports, q.PortCount, portsLabelOf(ports), time.Duration(q.Deadline-q.Created)*time.Millisecond-60*time.Second, reached, total-reached, defaults, strings.TrimSpace(out), ratio, during, without)
	if open != 1 || ports != n {
		t.Errorf("%d open questions covering %d ports, want 1 covering %d", open, ports, n)
	}
	if reached != 0 {
		t.Errorf("%d SYNs reached the host before the answer", reached)
	}
	if defaults != 0 {
		t.Errorf("%d questions fell to the default:\n%s", defaults, logText)
	}
	if !strings.Contains(out, "ECONNREFUSED=3000") {
		t.Errorf("after Allow every connection should reach the host (closed ports: refused by it): %s", out)
	}
	// A regression bound on one 4 s run against two 3 s ones on a shared 2-core machine: such single runs
	// differ by about 5% with nothing held (0.947 was seen in a clean run), and the helper takes each wave of
	// the flood's 3,000 retransmitted SYNs off the queue on the same two cores (a fresh-clone run with nothing
	// else running measured 0.892), so 0.95 and 0.90 failed by chance; a flood that starved the helper or the
	// queue stops the allowed program's connects for seconds, far below 0.85.
	if ratio < 0.85 {
		t.Errorf("allowed program's connect rate fell to %.3f of its rate without the flood", ratio)
	}
}
