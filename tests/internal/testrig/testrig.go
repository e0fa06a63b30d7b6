// Package testrig is what the kernel test rings share: privileges, the test binaries, application copies,
// loopback servers and running the test client as an application.
package testrig

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/tests/internal/clientwire"
)

// Setup checks that the ring can run. Kernel rings need root; when TATTLE_REQUIRE_ROOT=1 (CI, the VM) missing
// privileges fail the run instead of skipping it, so a green run always means the tests ran.
func Setup() error {
	if os.Geteuid() == 0 {
		return nil
	}
	if os.Getenv("TATTLE_REQUIRE_ROOT") == "1" {
		return fmt.Errorf("kernel tests need root (TATTLE_REQUIRE_ROOT=1)")
	}
	return errSkip
}

var errSkip = fmt.Errorf("skip")

// Main is a TestMain body: it runs the tests if Setup allows, and reports why not otherwise.
func Main(m *testing.M) int {
	switch err := Setup(); err {
	case nil:
		return m.Run()
	case errSkip:
		fmt.Println("SKIP: kernel tests need root; run the README's test command as root")
		return 0
	default:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}

// Binaries are the programs the rings run.
type Binaries struct {
	Client  string // tests/client
	Tattled string // helper/cmd/tattled
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build returns the test binaries: TATTLE_CLIENT and TATTLE_TATTLED when set (the VM ring ships them
// prebuilt), otherwise freshly built from this checkout.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		built.Client = os.Getenv("TATTLE_CLIENT")
		built.Tattled = os.Getenv("TATTLE_TATTLED")
		if built.Client != "" && built.Tattled != "" {
			return
		}
		dir, err := os.MkdirTemp("", "tattle-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		for _, b := range []struct {
			dst *string
			pkg string
		}{
			{&built.Client, "github.com/tattlefw/tattle/tests/client"},
			{&built.Tattled, "github.com/tattlefw/tattle/helper/cmd/tattled"},
		} {
			if *b.dst != "" {
				continue
			}
			out := filepath.Join(dir, filepath.Base(b.pkg))
			cmd := exec.Command("go", "build", "-o", out, b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if msg, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b.pkg, err, msg)
				return
			}
			*b.dst = out
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// AppDir makes a directory every user can enter, for application copies.
func AppDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tattle-apps-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// CopyApp copies the executable src to dir/name: a new file, so a new inode and a new identity.
func CopyApp(t testing.TB, src, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Result is the test client's report (tests/client).
type Result = clientwire.Result

// TCPStats are a socket's TCP_INFO counts (tests/client).
type TCPStats = clientwire.TCPStats

// RunOpts change how the client runs.
type RunOpts struct {
	UID  uint32 // run as this user (0: root)
	Comm string // rename the process before acting
	Mark uint32 // SO_MARK the application sets on its socket itself
	// Timeout bounds the run (0: 30 s). Floods under qemu TCG need longer; they measure counting, not speed.
	Timeout time.Duration
}

// RunApp runs the application at path (a copy or link of the test client) with args and returns its report.
func RunApp(t testing.TB, path string, opts RunOpts, args ...string) Result {
	t.Helper()
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if opts.Comm != "" {
		args = append([]string{"-comm", opts.Comm}, args...)
	}
	if opts.Mark != 0 {
		args = append([]string{"-mark", fmt.Sprint(opts.Mark)}, args...)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if opts.UID != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: opts.UID, Gid: opts.UID}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run %s %v: %v\n%s", path, args, err, stderr.String())
	}
	var res Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("run %s %v: bad report %q: %v", path, args, out, err)
	}
	return res
}

// Servers are loopback servers on 127.0.0.1 and ::1.
type Servers struct {
	TCP4, TCP4b, TCP6 string // accept and close
	UDP4, UDP6        string // echo
}

// StartServers starts loopback servers that stop when the test ends.
func StartServers(t testing.TB) Servers {
	t.Helper()
	var s Servers
	for _, l := range []struct {
		dst       *string
		net, addr string
	}{{&s.TCP4, "tcp4", "127.0.0.1:0"}, {&s.TCP4b, "tcp4", "127.0.0.1:0"}, {&s.TCP6, "tcp6", "[::1]:0"}} {
		ln, err := net.Listen(l.net, l.addr)
		if err != nil {
			t.Fatalf("listen %s: %v", l.addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		go AcceptAndClose(ln)
		*l.dst = ln.Addr().String()
	}
	for _, u := range []struct {
		dst       *string
		net, addr string
	}{{&s.UDP4, "udp4", "127.0.0.1:0"}, {&s.UDP6, "udp6", "[::1]:0"}} {
		pc, err := net.ListenPacket(u.net, u.addr)
		if err != nil {
			t.Fatalf("listen %s: %v", u.addr, err)
		}
		t.Cleanup(func() { pc.Close() })
		go EchoUDP(pc)
		*u.dst = pc.LocalAddr().String()
	}
	return s
}

// AcceptAndClose accepts the connections on ln and closes each at once, until ln is closed (the caller's
// Cleanup closes it, which ends the goroutine it runs on).
func AcceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Pipes connects pipes to cmd's standard input and output, before it starts.
func Pipes(t testing.TB, cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}

// EchoUDP sends every datagram pc receives back to its sender, until pc is closed (the caller's Cleanup
// closes it, which ends the goroutine it runs on).
func EchoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// PinDir returns a bpffs directory for one test's own programs, removed (detached) by the caller.
func PinDir(name string) string {
	return fmt.Sprintf("/sys/fs/bpf/tattle-test-%s-%d", name, os.Getpid())
}

// FreshPinDir is PinDir(name) emptied of what a crashed run left there, and emptied again when the test
// ends, so that no test's programs stay attached after it.
func FreshPinDir(t testing.TB, name string) string {
	pin := PinDir(name)
	enforce.Uninstall(pin)
	t.Cleanup(func() { enforce.Uninstall(pin) })
	return pin
}
