package systemd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket stands in for systemd's notify socket: a datagram socket named by NOTIFY_SOCKET.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn, timeout time.Duration) (string, bool) {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", false
		}
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

func TestReadyAndStatus(t *testing.T) {
	c := notifySocket(t)
	if err := Ready("enforcing with the lsm backend"); err != nil {
		t.Fatal(err)
	}
	if msg, _ := readNotify(t, c, time.Second); msg != "READY=1\nSTATUS=enforcing with the lsm backend" {
		t.Fatalf("ready: got %q", msg)
	}
	if err := Status("3 rules"); err != nil {
		t.Fatal(err)
	}
	if msg, _ := readNotify(t, c, time.Second); msg != "STATUS=3 rules" {
		t.Fatalf("status: got %q", msg)
	}
	if err := Stopping("stopping"); err != nil {
		t.Fatal(err)
	}
	if msg, _ := readNotify(t, c, time.Second); msg != "STOPPING=1\nSTATUS=stopping" {
		t.Fatalf("stopping: got %q", msg)
	}
}

func TestNotifyOutsideSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if err := Ready("x"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

// The watchdog pings while the health check passes, stops while it fails (so systemd would restart the
// helper) and resumes when it passes again; it ends with its context.
func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	c := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int((100 * time.Millisecond).Microseconds())))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var sick atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watchdog(ctx, func() error {
			if sick.Load() {
				return errors.New("main loop stuck")
			}
			return nil
		}, slog.New(slog.DiscardHandler))
	}()
	for i := 0; i < 3; i++ {
		if msg, ok := readNotify(t, c, time.Second); !ok || msg != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q (received: %v)", i, msg, ok)
		}
	}
	sick.Store(true)
	// One ping may have been under way; then only the status saying why.
	deadline := time.Now().Add(500 * time.Millisecond)
	sawStatus := false
	for time.Now().Before(deadline) {
		msg, ok := readNotify(t, c, 100*time.Millisecond)
		if !ok {
			continue
		}
		if strings.HasPrefix(msg, "STATUS=unhealthy: main loop stuck") {
			sawStatus = true
			continue
		}
		if sawStatus && msg == "WATCHDOG=1" {
			t.Fatal("pinged while unhealthy")
		}
	}
	if !sawStatus {
		t.Fatal("no status saying why the pings stopped")
	}
	sick.Store(false)
	if msg, ok := readNotify(t, c, time.Second); !ok || msg != "WATCHDOG=1" {
		t.Fatalf("after recovery: got %q (received: %v)", msg, ok)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watchdog did not stop with its context")
	}
}

func TestWatchdogDisabledReturns(t *testing.T) {
	os.Unsetenv("WATCHDOG_USEC")
	done := make(chan error, 1)
	go func() {
		done <- Watchdog(context.Background(), func() error { return nil }, slog.New(slog.DiscardHandler))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("watchdog without WATCHDOG_USEC did not return")
	}
}
