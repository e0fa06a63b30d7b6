package dnscapture_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// pingPong sends n datagrams of size bytes from src to dst and waits for each to arrive: the receive path
// is where the ingress program runs.
func pingPong(t *testing.T, src, dst *net.UDPConn, n, size int) time.Duration {
	buf := make([]byte, size)
	in := make([]byte, 65536)
	start := time.Now()
	for i := range n {
		if _, err := src.WriteToUDPAddrPort(buf, dst.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		// Loopback does not lose a lone datagram; one that does not arrive was held by something else (a
		// firewall, another Tattle test enforcing on this machine).
		dst.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := dst.ReadFromUDPAddrPort(in); err != nil {
			t.Fatalf("datagram %d from %v did not arrive (is another firewall holding this process's traffic?): %v", i, src.LocalAddr(), err)
		}
	}
	return time.Since(start)
}

// TestIngressOverhead measures what the capture program costs on the receive path, side by side: loopback
// datagrams with the program attached against the same without it, for ordinary traffic (the program looks
// at the headers and lets it pass) and for 512-byte answers from port 53 (it copies each one to the ring
// buffer, drained by a reader as the helper would). Reports the rate ratios; fails only on a gross slowdown.
func TestIngressOverhead(t *testing.T) {
	other := listenUDP(t, "127.0.0.1:0")
	dns53, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(mustAddrPort("127.0.0.53:53")))
	if err != nil {
		t.Fatalf("127.0.0.53:53 is not free: %v", err)
	}
	defer dns53.Close()
	client := listenUDP(t, "127.0.0.1:0")
	const n, rounds = 20000, 5

	measure := func(on bool) (plain, answers time.Duration) {
		if on {
			c := openCapture(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := c.Read(); err != nil {
						return
					}
				}
			}()
			defer func() { c.Close(); <-done }()
		}
		return pingPong(t, other, client, n, 100), pingPong(t, dns53, client, n, 512)
	}
	var plainRatio, answerRatio []float64
	for range rounds {
		offP, offA := measure(false)
		onP, onA := measure(true)
		plainRatio = append(plainRatio, float64(offP)/float64(onP))
		answerRatio = append(answerRatio, float64(offA)/float64(onA))
	}
	slices.Sort(plainRatio)
	slices.Sort(answerRatio)
	report := fmt.Sprintf("dnscapture: loopback UDP receive rate with the capture attached / without (median of %d paired runs of %d datagrams): "+
		"other traffic %.2fx, 512-byte port-53 answers copied to the helper %.2fx\n", rounds, n, plainRatio[rounds/2], answerRatio[rounds/2])
	t.Log(report)
	if dir := os.Getenv("TATTLE_RESULTS_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "bench-dnscapture.txt"), []byte(report), 0o644)
	}
	if plainRatio[rounds/2] < 0.5 || answerRatio[rounds/2] < 0.3 {
		t.Errorf("the capture slows receiving too much: %s", report)
	}
}

func listenUDP(t *testing.T, addr string) *net.UDPConn {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(mustAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
