package exepath

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tattlefw/tattle/shared/identity"
)

func TestResolvesOwnExecutableAndRefusesAWrongInode(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	app, err := identity.Stat(self)
	if err != nil {
		t.Fatal(err)
	}
	r := New("/proc", 4)
	if got := r.Path(uint32(os.Getpid()), app); got != self {
		t.Errorf("Path = %q, want %q", got, self)
	}
	// A PID running a different executable must not name this identity.
	other := identity.Executable{Dev: app.Dev, Ino: app.Ino + 1}
	if got := r.Path(uint32(os.Getpid()), other); got != "" {
		t.Errorf("wrong identity resolved to %q", got)
	}
}

func TestCacheOutlivesTheProcessAndIsBounded(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	sleep, _ = filepath.EvalSymlinks(sleep)
	cmd := exec.Command(sleep, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	app, _ := identity.Stat(sleep)
	r := New("/proc", 2)
	if got := r.Path(uint32(cmd.Process.Pid), app); got != sleep {
		t.Fatalf("Path = %q, want %q", got, sleep)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := r.Path(uint32(cmd.Process.Pid), app); got != sleep {
		t.Errorf("after exit: Path = %q, want cached %q", got, sleep)
	}
	r.remember(identity.Executable{Dev: 1, Ino: 1}, "/a")
	r.remember(identity.Executable{Dev: 1, Ino: 2}, "/b")
	if r.Len() != 2 {
		t.Errorf("cache holds %d entries, bound is 2", r.Len())
	}
	if got := r.Path(999999999, app); got != "" {
		t.Errorf("evicted identity still resolved to %q", got)
	}
}
