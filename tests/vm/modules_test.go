package vm

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The initramfs gets each kernel's holding modules uncompressed, every one after the modules it depends on.
func TestHoldingModulesResolve(t *testing.T) {
	for _, k := range []string{"bookworm", "trixie"} {
		t.Run(k, func(t *testing.T) {
			kdir := filepath.Join(kernelsDir(), k)
			if _, err := os.Stat(filepath.Join(kdir, "modules")); err != nil {
				t.Skipf("no %s kernel (run tests/vm/fetch-kernels.sh): %v", k, err)
			}
			root := t.TempDir()
			release, order, err := installModules(kdir, root, holdingModules)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %v", release, order)
			for _, m := range append([]string{"nf_tables", "nfnetlink", "nf_conntrack"}, holdingModules...) {
				if !slices.Contains(order, m) {
					t.Errorf("%s missing from the load order", m)
				}
			}
			dir := filepath.Join(root, "lib", "modules", release)
			for i, m := range order {
				ko, err := os.ReadFile(filepath.Join(dir, m+".ko"))
				if err != nil {
					t.Fatal(err)
				}
				if string(ko[:4]) != "\x7fELF" {
					t.Errorf("%s.ko is not an uncompressed ELF object", m)
					continue
				}
				deps, err := modinfoDepends(ko)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range deps {
					if j := slices.Index(order, d); j > i {
						t.Errorf("%s is loaded before its dependency %s", m, d)
					}
				}
			}
		})
	}
}

// modinfoDepends reads module files from kernel packages: malformed input must give an error, never a panic.
func FuzzModinfoDepends(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := modinfoDepends(data)
		if err == nil {
			for _, d := range deps {
				if d == "" {
					t.Errorf("empty dependency name from %d bytes", len(data))
				}
			}
		}
	})
}
