// Package identity names the things Tattle tells apart: executables, as the kernel sees them.
package identity

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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

// Stat returns the executable identity of the file at path (following symlinks, as exec does), as the kernel
// sees it, with mounts as this process sees them.
func Stat(path string) (Executable, error) {
	return StatIn(path, "/proc/self/mountinfo")
}

// StatIn is Stat with the mount table of another process (/proc/PID/mountinfo), for paths that are that
// process's, such as /proc/PID/exe.
func StatIn(path, mountinfo string) (Executable, error) {
	return ReadMounts(mountinfo).Stat(path)
}

// Mounts is a snapshot of one mount table: the file system device of each mount, by mount ID. Read it once to
// identify many files.
type Mounts struct{ devs map[uint64]uint64 }

// ReadMounts reads a mountinfo file. An unreadable one gives an empty table (Stat then falls back to st_dev).
func ReadMounts(mountinfo string) Mounts {
	m := Mounts{devs: map[uint64]uint64{}}
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return m
	}
	// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": mount ID 36, device 98:0.
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		major, minor, ok := strings.Cut(fields[2], ":")
		ma, err1 := strconv.ParseUint(major, 10, 32)
		mi, err2 := strconv.ParseUint(minor, 10, 32)
		if ok && err1 == nil && err2 == nil {
			m.devs[id] = unix.Mkdev(uint32(ma), uint32(mi))
		}
	}
	return m
}

// Stat identifies the executable at path (following symlinks, as exec does) as the kernel sees it.
//
// The device is the file system's own (super_block.s_dev, which the kernel programs read), not st_dev: the two
// differ on btrfs, where stat reports each subvolume's anonymous device. The mount table names the file
// system's device for the mount the file is on (statx's mount ID); st_dev is the fallback where statx cannot
// tell the mount (kernels before 5.8).
func (m Mounts) Stat(path string) (Executable, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		return Executable{}, fmt.Errorf("identify executable %s: %w", path, err)
	}
	e := Executable{Dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), Ino: stx.Ino}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		if dev, ok := m.devs[stx.Mnt_id]; ok {
			e.Dev = dev
		}
	}
	return e, nil
}

// StatFD identifies the file open at fd, as Stat does for a path.
func (m Mounts) StatFD(fd int) (Executable, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		return Executable{}, fmt.Errorf("identify open file: %w", err)
	}
	e := Executable{Dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), Ino: stx.Ino}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		if dev, ok := m.devs[stx.Mnt_id]; ok {
			e.Dev = dev
		}
	}
	return e, nil
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
