package peer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
