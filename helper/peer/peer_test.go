package peer

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests check real processes: this test binary and children of it.

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestInjectionVariables(t *testing.T) {
	for _, v := range []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GTK_MODULES", "GTK3_MODULES", "GIO_EXTRA_MODULES", "PYTHONPATH", "GCONV_PATH"} {
		if !InjectionVariable(v) {
			t.Errorf("%s is not treated as injection", v)
		}
	}
	for _, v := range []string{"HOME", "LANG", "DISPLAY", "DBUS_SYSTEM_BUS_ADDRESS", "LOCPATH", "GTK_THEME"} {
		if InjectionVariable(v) {
			t.Errorf("%s is treated as injection", v)
		}
	}
}

func TestCheckThisProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading another process's environment needs root")
	}
	trusted, _ := NewTrusted([]Program{{Path: self(t), Kind: GUI}})
	p, err := trusted.Check(os.Getpid(), -1, 0)
	if err != nil {
		if errors.Is(err, ErrInjected) || errors.Is(err, ErrUnsafe) {
			t.Skipf("this test binary cannot be a trusted program here: %v", err)
		}
		t.Fatal(err)
	}
	if p.Kind != GUI || p.Exe != self(t) || p.Started == 0 {
		t.Errorf("checked %+v", p)
	}
	other, _ := NewTrusted([]Program{{Path: "/usr/bin/true", Kind: Terminal}})
	if _, err := other.Check(os.Getpid(), -1, 0); !errors.Is(err, ErrUntrusted) {
		t.Errorf("a process running another program: %v, want ErrUntrusted", err)
	}
	if _, err := trusted.Check(1<<22+12345, -1, 0); !errors.Is(err, ErrGone) {
		t.Errorf("a PID nobody has: %v, want ErrGone", err)
	}
}

func TestCheckChildWithInjectionAndUnsafeCopy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	sleep, _ = filepath.EvalSymlinks(sleep)
	trusted, _ := NewTrusted([]Program{{Path: sleep, Kind: Terminal}})
	start := func(env ...string) *exec.Cmd {
		cmd := exec.Command(sleep, "10")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		time.Sleep(50 * time.Millisecond) // exec done
		return cmd
	}
	if _, err := trusted.Check(start("PATH=/usr/bin").Process.Pid, -1, 0); err != nil {
		t.Errorf("plain child: %v", err)
	}
	if _, err := trusted.Check(start("LD_PRELOAD=/lib/x86_64-linux-gnu/libc.so.6").Process.Pid, -1, 0); !errors.Is(err, ErrInjected) {
		t.Errorf("child with LD_PRELOAD: %v, want ErrInjected", err)
	}
	// A trusted path in a directory others may write is refused, even when the file is the same.
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	copyPath := filepath.Join(dir, "sleep")
	if err := os.Link(sleep, copyPath); err != nil {
		t.Skipf("cannot hard-link %s here: %v", sleep, err)
	}
	unsafe, _ := NewTrusted([]Program{{Path: copyPath, Kind: Terminal}})
	if _, err := unsafe.Check(start().Process.Pid, -1, 0); !errors.Is(err, ErrUnsafe) {
		t.Errorf("trusted path in a world-writable directory: %v, want ErrUnsafe", err)
	}
}

// A trusted program that loaded a library its user could write (a GTK module from settings.ini, say) is
// refused; the same library as root's file is not.
func TestCheckRefusesCodeTheUserCouldWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Skip("no python3")
	}
	const lib = "/lib/x86_64-linux-gnu/libBrokenLocale.so.1" // a small library python does not load by itself
	data, err := os.ReadFile(lib)
	if err != nil {
		t.Skipf("no %s: %v", lib, err)
	}
	trusted, _ := NewTrusted([]Program{{Path: python, Kind: Terminal}})
	load := func(path string) int {
		cmd := exec.Command(python, "-c", "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); print('loaded', flush=True); time.sleep(20)", path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		buf := make([]byte, 7)
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "loaded\n" {
			t.Fatalf("python did not load %s: %q %v", path, buf, err)
		}
		return cmd.Process.Pid
	}
	if _, err := trusted.Check(load(lib), -1, 0); err != nil {
		t.Errorf("python with root's own library loaded: %v", err)
	}
	evil := filepath.Join(t.TempDir(), "evil.so")
	if err := os.WriteFile(evil, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(evil, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = trusted.Check(load(evil), -1, 0)
	if !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), evil) {
		t.Errorf("python with a library of uid 65534 loaded: %v, want ErrInjected naming %s", err, evil)
	}

	// A file system the user mounted can say root owns its files: a nosuid mount (as udisks and FUSE make
	// them) is refused whatever its files' owners.
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	mounted := filepath.Join(mnt, "root-owned.so")
	if err := os.WriteFile(mounted, data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = trusted.Check(load(mounted), -1, 0)
	if !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), "nosuid") {
		t.Errorf("python with root's library from a nosuid mount loaded: %v, want ErrInjected (nosuid)", err)
	}
}
