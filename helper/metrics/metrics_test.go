package metrics

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
)

func TestParseListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9772", "127.3.4.5:1", "[::1]:9772", "/run/tattle/metrics.sock"} {
		if _, err := ParseListen(ok); err != nil {
			t.Errorf("ParseListen(%q): %v", ok, err)
		}
	}
	for s, want := range map[string]error{
		"0.0.0.0:9772": ErrNotLoopback, "192.0.2.1:9772": ErrNotLoopback, "[::]:9772": ErrNotLoopback,
		"[::ffff:10.0.0.1]:80": ErrNotLoopback, "localhost:9772": ErrBadListen, ":9772": ErrBadListen,
		"127.0.0.1:0": ErrBadListen, "metrics.sock": ErrBadListen,
	} {
		if _, err := ParseListen(s); !errors.Is(err, want) {
			t.Errorf("ParseListen(%q) = %v, want %v", s, err, want)
		}
	}
}

func family(t *testing.T, m *Metrics, name string) *dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestAppLabelsAreBounded(t *testing.T) {
	m := New(2, Sources{})
	for _, app := range []string{"/usr/bin/a", "/usr/bin/b", "/usr/bin/c", "/usr/bin/d", "/usr/bin/a"} {
		m.Decision(app, "deny")
	}
	got := map[string]float64{}
	for _, mt := range family(t, m, "tattle_app_decisions_total").GetMetric() {
		got[labelsOf(mt)["app"]] = mt.GetCounter().GetValue()
	}
	want := map[string]float64{"/usr/bin/a": 2, "/usr/bin/b": 1, Other: 2}
	if len(got) != len(want) {
		t.Fatalf("app series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("app %s: %v decisions, want %v", k, got[k], v)
		}
	}
	total := family(t, m, "tattle_decisions_total").GetMetric()
	if len(total) != 1 || total[0].GetCounter().GetValue() != 5 {
		t.Errorf("decisions by verdict: %v", total)
	}
}

// Per-application bytes only grow, though the flow table evicts flows and its counters restart.
func TestTrafficTotalsStayMonotonic(t *testing.T) {
	var flows []enforce.Flow
	app := identity.Executable{Dev: 1, Ino: 2}
	flow := func(port uint16, tx, rx uint64) enforce.Flow {
		return enforce.Flow{App: app, Dest: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Proto: enforce.TCP,
			Traffic: enforce.Traffic{TxBytes: tx, RxBytes: rx}}
	}
	m := New(5, Sources{Flows: func() ([]enforce.Flow, error) { return flows, nil },
		AppName: func(enforce.Flow) string { return "/usr/bin/app" }})
	sent := func() float64 {
		for _, mt := range family(t, m, "tattle_app_sent_bytes_total").GetMetric() {
			if labelsOf(mt)["app"] == "/usr/bin/app" {
				return mt.GetCounter().GetValue()
			}
		}
		return -1
	}
	steps := []struct {
		flows []enforce.Flow
		want  float64
	}{
		{[]enforce.Flow{flow(1, 100, 5)}, 100},
		{[]enforce.Flow{flow(1, 150, 5), flow(2, 10, 0)}, 160},
		{[]enforce.Flow{flow(2, 30, 0)}, 180}, // flow 1 evicted: its bytes stay counted
		{[]enforce.Flow{flow(2, 5, 0)}, 185},  // flow 2's counters restarted
	}
	for i, s := range steps {
		flows = s.flows
		if got := sent(); got != s.want {
			t.Errorf("step %d: %v bytes sent, want %v", i, got, s.want)
		}
	}
}

// The unix socket is root's only: another user cannot connect (per-application traffic is private).
func TestUnixSocketIsRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to try the socket as another user")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is needed")
	}
	dir, err := os.MkdirTemp("", "tattle-metrics-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	// A control: a socket anyone may connect to, beside it, shows nobody can reach the directory.
	open := filepath.Join(dir, "open.sock")
	ctl, err := net.Listen("unix", open)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	os.Chmod(open, 0o666)
	go func() {
		for {
			c, err := ctl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Read the request before answering: closing on an unread request resets the connection.
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nopen\n")
				}
			}()
		}
	}()
	path := filepath.Join(dir, "metrics.sock")
	m := New(0, Sources{Pending: func() int { return 3 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- m.Serve(ctx, Listen{Path: path}, slog.New(slog.DiscardHandler), func(net.Addr) { close(ready) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket %v mode %v, want %v", err, fi.Mode(), os.FileMode(SocketMode))
	}
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://tattled/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "tattle_questions_pending 3") {
		t.Errorf("root's scrape lacks the pending questions:\n%.2000s", body)
	}
	asNobody := func(sock string) (string, error) {
		cmd := exec.Command(curl, "-sS", "--max-time", "5", "--unix-socket", sock, "http://tattled/metrics")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody(open); !strings.Contains(out, "open") {
		t.Fatalf("control: user nobody cannot reach a socket open to all in the same directory: %v %s", err, out)
	}
	// The attack: user nobody scrapes the metrics socket.
	out, err := asNobody(path)
	if err == nil || strings.Contains(out, "tattle_") {
		t.Fatalf("user nobody read the metrics socket: %v\n%.500s", err, out)
	}
}
