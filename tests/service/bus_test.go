// Package service tests tattled as a system service, end to end: a real dbus-daemon (system bus type, private
// socket and configuration) whose service directory holds Tattle's activation file, a real polkitd with
// Tattle's polkit actions, tattled activated by the first call, and tattlectl and real curl as the clients.
package service

import (
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

// bus is a private system bus with polkitd on it and Tattle's activation file in its service directory.
type bus struct {
	*testrig.SystemBus
	tattled tattledConfig
}

type tattledConfig struct {
	exe, pinDir, stateDir, rulesDir, lockFile string
}

func startBus(t *testing.T) *bus {
	t.Helper()
	if _, err := os.Stat("/usr/lib/polkit-1/polkitd"); err != nil {
		t.Fatal("polkitd is missing (apt-get install polkitd)")
	}
	root := repoRoot(t)

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
	b := &bus{}
	dir := t.TempDir()
	b.tattled = tattledConfig{exe: testrig.Build(t).Tattled, pinDir: testrig.PinDir("service"),
		stateDir: filepath.Join(dir, "state"), rulesDir: filepath.Join(dir, "rules.d"), lockFile: filepath.Join(dir, "tattled.lock")}
	enforce.Uninstall(b.tattled.pinDir)
	t.Cleanup(func() { enforce.Uninstall(b.tattled.pinDir) })
	service := fmt.Sprintf("[D-BUS Service]\nName=io.github.tattlefw.Tattle1\nExec=%s\nUser=root\nSystemdService=tattled.service\n",
		strings.Join(b.tattled.args(), " "))
	b.SystemBus = testrig.StartSystemBus(t, testrig.BusOptions{
		// The real policies: polkit's as Debian installs it, Tattle's from the checkout.
		Policies: []string{"/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf", filepath.Join(root, "data", "io.github.tattlefw.Tattle1.conf")},
		Services: map[string]string{"io.github.tattlefw.Tattle1.service": service},
	})

	b.Start(t, "/usr/lib/polkit-1/polkitd", "--no-debug")
	conn := b.connect(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var has bool
		conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.PolicyKit1").Store(&has)
		if has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("polkitd did not take its name:\n%s", b.Log)
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

func (b *bus) connect(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
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
	cmd.Env = b.Env
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
