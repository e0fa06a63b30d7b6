package testrig

import (
	"context"
	"encoding/json"
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
)

// RepoRoot is the checkout (tests run two levels below it, in tests/NAME).
func RepoRoot(t testing.TB) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// ResultsDir is where the tests keep their reports and screenshots: $TATTLE_RESULTS_DIR (CI's artifacts),
// else tests/output in the checkout.
func ResultsDir(t testing.TB) string {
	if dir := os.Getenv("TATTLE_RESULTS_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(RepoRoot(t), "tests", "output")
}

// TattleBus is a private system bus with polkitd on it and Tattle's activation file in its service directory.
type TattleBus struct {
	*SystemBus
	Tattled TattledConfig
}

// TattledConfig is how the bus activates tattled: private pins, state, rules, lock, netfilter table and
// queue, so tests never touch a helper the machine itself runs.
type TattledConfig struct {
	Wrap                                      []string // a command tattled runs under (nsenter ... --), none when empty
	Exe, PinDir, StateDir, RulesDir, LockFile string
	Extra                                     []string // more flags
}

// StartTattleBus starts a private system bus with polkitd on it and Tattle's activation file in its service
// directory; tattled is activated by the first call. name keeps its pins apart from other tests'. extra are
// further tattled flags.
func StartTattleBus(t *testing.T, name string, extra ...string) *TattleBus {
	t.Helper()
	return StartTattleBusWrapped(t, name, nil, extra...)
}

// StartTattleBusWrapped is StartTattleBus with tattled activated under wrap (a command line that runs the
// rest, such as nsenter --mount=/proc/PID/ns/mnt --).
func StartTattleBusWrapped(t *testing.T, name string, wrap []string, extra ...string) *TattleBus {
	t.Helper()
	if _, err := os.Stat("/usr/lib/polkit-1/polkitd"); err != nil {
		t.Fatal("polkitd is missing (apt-get install polkitd)")
	}
	root := RepoRoot(t)

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
	b := &TattleBus{}
	dir := t.TempDir()
	// The agents tests start are this checkout's tattlectl, built into a root-owned directory: the trusted
	// agent programs. Later flags (extra) override it.
	b.Tattled = TattledConfig{Wrap: wrap, Exe: Build(t).Tattled, PinDir: PinDir(name),
		StateDir: filepath.Join(dir, "state"), RulesDir: filepath.Join(dir, "rules.d"), LockFile: filepath.Join(dir, "tattled.lock"),
		// No factory rules unless a test asks for them (-factory-dir in extra): the rings test their own rules.
		// No resolvers either (the machine's resolv.conf is not the test's): -resolver-files names the test's.
		Extra: append([]string{"-factory-dir", "none", "-resolver-files", "none", "-terminal-agents", Tattlectl(t), "-gui-agents", filepath.Join(filepath.Dir(Tattlectl(t)), "no-gui-agent")}, extra...)}
	enforce.Uninstall(b.Tattled.PinDir)
	t.Cleanup(func() { enforce.Uninstall(b.Tattled.PinDir) })
	service := fmt.Sprintf("[D-BUS Service]\nName=io.github.tattlefw.Tattle1\nExec=%s\nUser=root\nSystemdService=tattled.service\n",
		strings.Join(b.Tattled.Args(), " "))
	b.SystemBus = StartSystemBus(t, BusOptions{
		// The real policies: polkit's as Debian installs it, Tattle's from the checkout.
		Policies: []string{"/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf", filepath.Join(root, "data", "io.github.tattlefw.Tattle1.conf")},
		Services: map[string]string{"io.github.tattlefw.Tattle1.service": service},
	})

	b.Start(t, "/usr/lib/polkit-1/polkitd", "--no-debug")
	conn := b.Connect(t)
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

// Args is tattled's command line.
func (c TattledConfig) Args() []string {
	return append(append(append([]string{}, c.Wrap...), c.Exe, "-backend", envOr("TATTLE_BACKEND", "auto"), "-pin-dir", c.PinDir, "-state-dir", c.StateDir,
		"-rules-dir", c.RulesDir, "-lock-file", c.LockFile, "-bus", "system", "-log-level", "debug"), c.Extra...)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Connect connects to the bus for the test's lifetime.
func (b *TattleBus) Connect(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TattledPID returns the PID of the activated helper (the owner of its bus name).
func (b *TattleBus) TattledPID(t *testing.T, conn *dbus.Conn) (uint32, bool) {
	var pid uint32
	err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, "io.github.tattlefw.Tattle1").Store(&pid)
	return pid, err == nil
}

// Ctl runs tattlectl on the test bus, as uid (0: root). It returns stdout, stderr and the exit code.
func (b *TattleBus) Ctl(t *testing.T, uid uint32, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Tattlectl(t), args...)
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

// BuildTrusted builds pkg to path as tattled's trusted agent programs must be: owned by root, mode 0755, in
// a directory only root may write (the caller made it so).
func BuildTrusted(path, pkg string, env ...string) error {
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// MonitorFlows is what `tattlectl monitor --once --json`, run as root, lists now, each flow decoded into F
// (a struct of the fields the test reads): the traffic tests poll it until the counters caught up.
func MonitorFlows[F any](t *testing.T, b *TattleBus) []F {
	t.Helper()
	out, errOut, code := b.Ctl(t, 0, "monitor", "--once", "--json")
	if code != 0 {
		t.Fatalf("monitor: %d %s", code, errOut)
	}
	var flows []F
	if err := json.Unmarshal([]byte(out), &flows); err != nil {
		t.Fatalf("monitor --json: %v: %s", err, out)
	}
	return flows
}

// TrustedBuild is a trusted agent program (BuildTrusted) built at most once per test binary, since a build
// takes seconds: the program named by the environment variable Env when set, else Pkg built with BuildEnv.
type TrustedBuild struct {
	Env, Pkg string
	BuildEnv []string

	once sync.Once
	path string
	err  error
}

// Path builds the program on first use and returns where it is.
func (b *TrustedBuild) Path(t testing.TB) string {
	b.once.Do(func() {
		if p := os.Getenv(b.Env); p != "" {
			b.path = p
			return
		}
		name := filepath.Base(b.Pkg)
		dir, err := os.MkdirTemp("", name+"-")
		if err != nil {
			b.err = err
			return
		}
		os.Chmod(dir, 0o755) // sessions of other users run it too
		b.path = filepath.Join(dir, name)
		b.err = BuildTrusted(b.path, b.Pkg, b.BuildEnv...)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var tattlectlBuild = TrustedBuild{Env: "TATTLE_TATTLECTL", Pkg: "github.com/tattlefw/tattle/app/tattlectl"}

// Tattlectl builds the CLI once (TATTLE_TATTLECTL overrides).
func Tattlectl(t testing.TB) string { return tattlectlBuild.Path(t) }
