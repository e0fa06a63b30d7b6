package identity

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestKernelDevRoundTrip(t *testing.T) {
	for _, dev := range []uint64{unix.Mkdev(8, 1), unix.Mkdev(259, 3), unix.Mkdev(0, 45), unix.Mkdev(4095, 1048575)} {
		e := Executable{Dev: dev, Ino: 42}
		back := FromKernel(e.KernelDev(), 42)
		if back != e {
			t.Errorf("dev %#x: round trip through kernel encoding gave %#x", dev, back.Dev)
		}
	}
}

func TestStatTellsHardLinksFromCopies(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "a")
	if err := os.WriteFile(orig, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hard")
	if err := os.Link(orig, link); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if err := os.WriteFile(cp, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := Stat(orig)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := Stat(link)
	c, _ := Stat(cp)
	if a != h {
		t.Errorf("hard link is a different identity: %v vs %v", a, h)
	}
	if a == c {
		t.Errorf("copy has the same identity %v", a)
	}
	if _, err := Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("Stat of a missing file succeeded")
	}
}
