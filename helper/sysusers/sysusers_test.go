package sysusers

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFromLoginDefs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "login.defs")
	os.WriteFile(p, []byte("# comment\nUID_MIN\t\t\t 500\nUID_MAX 60000\n#UID_MIN 9\n"), 0o644)
	c := FromLoginDefs(p)
	if c.UIDMin != 500 {
		t.Fatalf("UIDMin = %d, want 500", c.UIDMin)
	}
	for uid, want := range map[uint32]bool{0: true, 42: true, 499: true, 500: false, 1000: false, Nobody: true} {
		if got := c.IsSystem(uid); got != want {
			t.Errorf("IsSystem(%d) = %v, want %v", uid, got, want)
		}
	}
	if c := FromLoginDefs(filepath.Join(dir, "missing")); c.UIDMin != DefaultUIDMin {
		t.Errorf("missing file: UIDMin = %d", c.UIDMin)
	}
	os.WriteFile(p, []byte("UID_MIN bogus\n"), 0o644)
	if c := FromLoginDefs(p); c.UIDMin != DefaultUIDMin {
		t.Errorf("bad value: UIDMin = %d", c.UIDMin)
	}
}
