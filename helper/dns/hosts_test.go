package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestReadHostsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(path, []byte("127.0.0.1 localhost\n# 192.0.2.9 commented\n::ffff:192.0.2.1 Router.Lan router\n192.0.2.1 second-name\nnot-an-address name\n192.0.2.2\n"), 0o644)
	got := ReadHostsFile(path)
	want := map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): "localhost", netip.MustParseAddr("192.0.2.1"): "router.lan"}
	if len(got) != len(want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("%v: %q, want %q", a, got[a], n)
		}
	}
	if got := ReadHostsFile(filepath.Join(t.TempDir(), "missing")); len(got) != 0 {
		t.Errorf("a missing file: %v", got)
	}
}
