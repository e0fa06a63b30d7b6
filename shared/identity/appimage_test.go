package identity

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestAppImageIdentity(t *testing.T) {
	files := []Executable{
		{Dev: unix.Mkdev(8, 1), Ino: 1234},
		{Dev: unix.Mkdev(0, 41), Ino: 7},              // an anonymous device (tmpfs, btrfs)
		{Dev: unix.Mkdev(259, 0x12345), Ino: 1 << 40}, // a large minor and inode
	}
	for _, f := range files {
		a := AppImageOf(f)
		if !a.IsAppImage() || f.IsAppImage() {
			t.Errorf("%v -> %v: IsAppImage %v, of the file %v", f, a, a.IsAppImage(), f.IsAppImage())
		}
		if a == f || a.IsScript() || a.IsUnidentified() || a.IsAny() {
			t.Errorf("the AppImage identity %v of %v is taken for another kind", a, f)
		}
		if a.AppImageFile() != f {
			t.Errorf("%v -> %v -> %v", f, a, a.AppImageFile())
		}
		// The kernel's encoding: the flag is bit 31 of its dev_t (APPIMAGE_DEV_FLAG), and round trips.
		if a.KernelDev() != f.KernelDev()|0x80000000 {
			t.Errorf("kernel dev of %v is %#x, want %#x", a, a.KernelDev(), f.KernelDev()|0x80000000)
		}
		if back := FromKernel(a.KernelDev(), a.Ino); back != a {
			t.Errorf("FromKernel(%#x) = %v, want %v", a.KernelDev(), back, a)
		}
	}
	for _, e := range []Executable{Any, Unidentified, ViaIdentity(files[0], files[1])} {
		if e.IsAppImage() {
			t.Errorf("%v taken for an AppImage", e)
		}
	}
}
