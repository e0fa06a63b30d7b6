package identity

import "golang.org/x/sys/unix"

// AppImages: a process started from an AppImage file is known by that file, whatever fresh /tmp/.mount_…
// path its payload is mounted at (see bpf/identity.h, "AppImages"). The kernel gives such a process an identity
// of its own: the file's device with appImageMajor set in its major number, which no device has, and the
// file's inode. No file's identity equals it, so a rule for the file's path (which names the runtime run
// bare, or refused) never matches the AppImage, nor the other way round.

// appImageMajor is the bit the kernel sets in an AppImage identity's device (APPIMAGE_DEV_FLAG in the kernel's
// dev_t encoding, major << 20 | minor: bit 31 is the top bit of a 12-bit major number).
const appImageMajor = 0x800

// AppImageExecKind is the kind of the kernel's exec report of an AppImage file (APPIMAGE_EXEC_KIND):
// interpreter kinds are small numbers.
const AppImageExecKind InterpreterKind = 0xa1

// AppImageOf is the identity of the processes started from the AppImage file whose identity is file.
func AppImageOf(file Executable) Executable {
	return Executable{Dev: unix.Mkdev(unix.Major(file.Dev)|appImageMajor, unix.Minor(file.Dev)), Ino: file.Ino}
}

// IsAppImage reports whether e is an AppImage identity (AppImageOf).
func (e Executable) IsAppImage() bool {
	return e.Dev != 0 && unix.Major(e.Dev)&appImageMajor != 0
}

// AppImageFile is the identity of the file of an AppImage identity.
func (e Executable) AppImageFile() Executable {
	return Executable{Dev: unix.Mkdev(unix.Major(e.Dev)&^appImageMajor, unix.Minor(e.Dev)), Ino: e.Ino}
}

// AppImagePrefix starts the application name of an AppImage in rules and on the wire: "appimage:/path/App.AppImage".
const AppImagePrefix = "appimage:"
