// Package identity names the things Tattle tells apart: executables, as the kernel sees them.
package identity

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Executable identifies a program file by the device and inode of its executable, as read from the process's
// memory map in the kernel. A hard link is the same executable; a copy, or a binary replaced by a package
// update, is a new one. The zero value means "any application" in rule scopes.
type Executable struct {
	Dev uint64 // device number in the encoding stat(2) reports (st_dev)
	Ino uint64
}

// Any is the scope of rules that apply to every application.
var Any = Executable{}

// IsAny reports whether e stands for every application.
func (e Executable) IsAny() bool { return e == Any }

func (e Executable) String() string {
	if e.IsAny() {
		return "any"
	}
	return fmt.Sprintf("%d:%d/%d", unix.Major(e.Dev), unix.Minor(e.Dev), e.Ino)
}

// Stat returns the executable identity of the file at path (following symlinks, as exec does).
func Stat(path string) (Executable, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Executable{}, fmt.Errorf("identify executable %s: %w", path, err)
	}
	return Executable{Dev: st.Dev, Ino: st.Ino}, nil
}

// FromKernel converts the kernel's internal dev_t (major << 20 | minor, as in super_block.s_dev).
func FromKernel(kdev uint32, ino uint64) Executable {
	return Executable{Dev: unix.Mkdev(kdev>>20, kdev&0xfffff), Ino: ino}
}

// KernelDev returns the device in the kernel's internal encoding.
func (e Executable) KernelDev() uint32 {
	return unix.Major(e.Dev)<<20 | unix.Minor(e.Dev)&0xfffff
}

// AnyUID marks a rule scope that applies to processes of every user.
const AnyUID = ^uint32(0)
