package testrig

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
)

// systemBusConfig is a system bus with the defaults of Debian's /usr/share/dbus-1/system.conf (nobody owns
// names or calls methods unless a policy file says so) on a private socket.
const systemBusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  %s
  <policy context="default">
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
%s</busconfig>
`

// SystemBus is a private dbus-daemon of the system type, started and stopped (by PID) by a test.
type SystemBus struct {
	Dir     string   // its directory (socket, configuration, service files)
	Address string   // for dbus.Connect and DBUS_SYSTEM_BUS_ADDRESS
	Env     []string // the environment for processes that should use it as their system bus
	Log     *LogTail // what the bus and the processes it activates print
}

// BusOptions configure StartSystemBus.
type BusOptions struct {
	Policies   []string          // bus policy files to include
	Services   map[string]string // activation files: file name -> content
	ExtraSetup func(dir string)  // runs before the bus starts
}

// StartSystemBus starts a private system bus for the test's lifetime.
func StartSystemBus(t testing.TB, o BusOptions) *SystemBus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatal("dbus-daemon is missing (apt-get install dbus)")
	}
	dir, err := os.MkdirTemp("", "tattle-bus-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // processes of other users connect too
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "system_bus_socket")
	b := &SystemBus{Dir: dir, Address: "unix:path=" + socket, Log: &LogTail{}}
	b.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.Address)

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
	var includes strings.Builder
	for _, p := range o.Policies {
		fmt.Fprintf(&includes, "  <include>%s</include>\n", p)
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(systemBusConfig, socket, servicedir, includes.String())), 0o644); err != nil {
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

// Start runs a process on the bus's environment, logging its output; it is stopped by its PID when the test
// ends (SIGTERM, then SIGKILL after 5 s).
func (b *SystemBus) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = b.Env
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			b.Log.Add(filepath.Base(name) + ": " + sc.Text())
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
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
