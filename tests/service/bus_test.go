// Package service tests tattled as a system service, end to end: a real dbus-daemon (system bus type, private
// socket and configuration) whose service directory holds Tattle's activation file, a real polkitd with
// Tattle's polkit actions, tattled activated by the first call, and tattlectl and real curl as the clients.
package service

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// repoRoot is the checkout (tests run in tests/service).
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// bus is a private system bus with polkitd on it.
type bus struct {
	dir     string
	address string
	env     []string
	log     *logTail
	tattled tattledConfig
}

type tattledConfig struct {
	exe, pinDir, stateDir, rulesDir, lockFile string
}

// logTail collects the output of the bus (and of tattled, which the bus starts) for waiting and failures.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// waitFor waits until a line containing s appears after the first `from` lines; it returns the line count.
func (l *logTail) waitFor(t *testing.T, s string, from int) int {
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
	t.Fatalf("no log line with %q within 20 s; log:\n%s", s, l.String())
	return 0
}

func (l *logTail) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%[1]s/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <servicedir>%[1]s/services</servicedir>
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
  <!-- the real policies: polkit's as Debian installs it, Tattle's from the checkout -->
  <include>/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <include>%[2]s</include>
</busconfig>
`

func startBus(t *testing.T) *bus {
	t.Helper()
	for _, tool := range []string{"dbus-daemon", "/usr/lib/polkit-1/polkitd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt-get install dbus polkitd)", tool)
		}
	}
	root := repoRoot(t)
	dir, err := os.MkdirTemp("", "tattle-bus-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &bus{dir: dir, address: "unix:path=" + dir + "/system_bus_socket", log: &logTail{}}
	b.env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.address)

	// polkitd reads actions only from its own directory: install Tattle's there for the test's lifetime.
	policy := "/usr/share/polkit-1/actions/io.github.tattlefw.tattle.policy"
	data, err := os.ReadFile(filepath.Join(root, "data", "io.github.tattlefw.tattle.policy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(policy) })
	}

	// tattled, activated by the bus from this service file: private pins, state, rules and lock.
	bin := testrig.Build(t)
	b.tattled = tattledConfig{exe: bin.Tattled, pinDir: testrig.PinDir("service"),
		stateDir: filepath.Join(dir, "state"), rulesDir: filepath.Join(dir, "rules.d"), lockFile: filepath.Join(dir, "tattled.lock")}
	enforce.Uninstall(b.tattled.pinDir)
	t.Cleanup(func() { enforce.Uninstall(b.tattled.pinDir) })
	os.MkdirAll(filepath.Join(dir, "services"), 0o755)
	service := fmt.Sprintf("[D-BUS Service]\nName=io.github.tattlefw.Tattle1\nExec=%s\nUser=root\nSystemdService=tattled.service\n",
		strings.Join(b.tattled.args(), " "))
	if err := os.WriteFile(filepath.Join(dir, "services", "io.github.tattlefw.Tattle1.service"), []byte(service), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, dir, filepath.Join(root, "data", "io.github.tattlefw.Tattle1.conf"))), 0o644); err != nil {
		t.Fatal(err)
	}

	b.start(t, "dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--nosyslog")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "system_bus_socket")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbus-daemon did not start:\n%s", b.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.start(t, "/usr/lib/polkit-1/polkitd", "--no-debug")
	conn := b.connect(t)
	for {
		var has bool
		conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.PolicyKit1").Store(&has)
		if has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("polkitd did not take its name:\n%s", b.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return b
}

func (c tattledConfig) args() []string {
	return []string{c.exe, "-backend", envOr("TATTLE_BACKEND", "auto"), "-pin-dir", c.pinDir, "-state-dir", c.stateDir,
		"-rules-dir", c.rulesDir, "-lock-file", c.lockFile, "-bus", "system", "-log-level", "debug"}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// start runs a process of the harness; it is stopped by its PID when the test ends.
func (b *bus) start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = b.env
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
			b.log.add(filepath.Base(name) + ": " + sc.Text())
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

func (b *bus) connect(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.address)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// tattledPID returns the PID of the activated helper (the owner of its bus name).
func (b *bus) tattledPID(t *testing.T, conn *dbus.Conn) (uint32, bool) {
	var pid uint32
	err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, "io.github.tattlefw.Tattle1").Store(&pid)
	return pid, err == nil
}

// ctl runs tattlectl on the test bus, as uid (0: root). It returns stdout, stderr and the exit code.
func (b *bus) ctl(t *testing.T, uid uint32, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tattlectl(t), args...)
	cmd.Env = b.env
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run tattlectl %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

var (
	ctlOnce sync.Once
	ctlPath string
	ctlErr  error
)

// tattlectl builds the CLI once.
func tattlectl(t *testing.T) string {
	ctlOnce.Do(func() {
		if p := os.Getenv("TATTLE_TATTLECTL"); p != "" {
			ctlPath = p
			return
		}
		dir, err := os.MkdirTemp("", "tattlectl-")
		if err != nil {
			ctlErr = err
			return
		}
		os.Chmod(dir, 0o755)
		ctlPath = filepath.Join(dir, "tattlectl")
		cmd := exec.Command("go", "build", "-o", ctlPath, "github.com/tattlefw/tattle/app/tattlectl")
		if out, err := cmd.CombinedOutput(); err != nil {
			ctlErr = fmt.Errorf("build tattlectl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlPath
}
