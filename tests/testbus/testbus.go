// Package testbus starts and stops what tests across the tree need around a D-Bus peer: a private, real
// dbus-daemon (system or session type) and processes that are stopped by their PID when the test ends.
//
// It lives under tests/ but is not internal, so that tests beside their package (helper/service, app/tray's
// traytest) and the rings under tests/ (through tests/internal/testrig) use the same code.
package testbus

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// systemPolicy is the default policy of Debian's /usr/share/dbus-1/system.conf: nobody owns names or calls
// methods unless a policy file says so.
const systemPolicy = `  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
`

// openPolicy lets every peer own names and call every method (a session bus of one's own).
const openPolicy = `  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
`

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>%s</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  %s
%s%s</busconfig>
`

// Bus is a private dbus-daemon, started and stopped (by PID) by a test.
type Bus struct {
	Dir     string   // its directory (socket, configuration, service files)
	Address string   // for dbus.Connect and DBUS_SYSTEM_BUS_ADDRESS / DBUS_SESSION_BUS_ADDRESS
	Env     []string // the environment for processes that should use it (as their system bus, for Type system)
	Log     *LogTail // what the bus and the processes started with Start print
}

// Options configure Start.
type Options struct {
	Type       string            // "system" (the default: Debian's system policy) or "session"
	Open       bool              // let every peer own names and call everything, instead of the system policy
	Policies   []string          // bus policy files to include
	Services   map[string]string // activation files: file name -> content
	ExtraSetup func(dir string)  // runs before the bus starts
}

// Start starts a private bus for the test's lifetime.
func Start(t testing.TB, o Options) *Bus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatal("dbus-daemon is missing (apt-get install dbus)")
	}
	if o.Type == "" {
		o.Type = "system"
	}
	dir, err := os.MkdirTemp("", "tattle-bus-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // processes of other users connect too
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, o.Type+"_bus_socket")
	b := &Bus{Dir: dir, Address: "unix:path=" + socket, Log: &LogTail{}}
	envName := "DBUS_SYSTEM_BUS_ADDRESS"
	if o.Type == "session" {
		envName = "DBUS_SESSION_BUS_ADDRESS"
	}
	b.Env = append(os.Environ(), envName+"="+b.Address)

	servicedir := ""
	if len(o.Services) > 0 {
		sd := filepath.Join(dir, "services")
		if err := os.MkdirAll(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range o.Services {
			if err := os.WriteFile(filepath.Join(sd, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		servicedir = "<servicedir>" + sd + "</servicedir>"
	}
	policy := systemPolicy
	if o.Open {
		policy = openPolicy
	}
	var includes strings.Builder
	for _, p := range o.Policies {
		fmt.Fprintf(&includes, "  <include>%s</include>\n", p)
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, o.Type, socket, servicedir, policy, includes.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.ExtraSetup != nil {
		o.ExtraSetup(dir)
	}
	b.Start(t, daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--nosyslog")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The socket file exists from bind(); only a successful connect says the bus listens.
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbus-daemon did not start:\n%s", b.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Session starts an open session bus that activates nothing (a test sees only the peers it started) and
// returns its address.
func Session(t testing.TB) string {
	t.Helper()
	return Start(t, Options{Type: "session", Open: true}).Address
}

// Connect opens a connection to the bus at address, closed when the test ends.
func Connect(t testing.TB, address string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		t.Fatalf("connect to the test bus %s: %v", address, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Start runs a process with the bus's environment, its output in b.Log; it is stopped when the test ends.
func (b *Bus) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = b.Env
	StartLogged(t, cmd, b.Log)
	return cmd
}

// StartLogged starts cmd with its output (stdout and stderr) going line by line to log, prefixed with the
// program's name, and stops it when the test ends.
func StartLogged(t testing.TB, cmd *exec.Cmd, log *LogTail) {
	t.Helper()
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	name := filepath.Base(cmd.Path)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			log.Add(name + ": " + sc.Text())
		}
	}()
	StopOnCleanup(t, cmd)
}

// StopOnCleanup stops a started process when the test ends.
func StopOnCleanup(t testing.TB, cmd *exec.Cmd) {
	t.Cleanup(func() { Stop(cmd) })
}

// Stop stops a started process by its PID: SIGTERM, then SIGKILL after 5 s; it returns once it was reaped.
func Stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// LogTail collects output lines for waiting and for failure messages.
type LogTail struct {
	mu    sync.Mutex
	lines []string
}

// Add appends a line.
func (l *LogTail) Add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// WaitFor waits until a line containing s appears after the first `from` lines and returns the count of lines
// up to it, failing the test after 20 s.
func (l *LogTail) WaitFor(t testing.TB, s string, from int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for i := from; i < len(l.lines); i++ {
			if strings.Contains(l.lines[i], s) {
				l.mu.Unlock()
				return i + 1
			}
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q within 20 s; log:\n%s", s, l)
	return 0
}

// Line returns line n (counting from 1, as WaitFor's result).
func (l *LogTail) Line(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < 1 || n > len(l.lines) {
		return ""
	}
	return l.lines[n-1]
}

func (l *LogTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Len is the number of lines so far (a starting point for Since).
func (l *LogTail) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// Since returns the lines after the first from.
func (l *LogTail) Since(from int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from > len(l.lines) {
		return nil
	}
	return append([]string(nil), l.lines[from:]...)
}
