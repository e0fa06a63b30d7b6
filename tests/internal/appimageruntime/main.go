// Command appimageruntime is a minimal AppImage type-2 runtime for the identity ring: it does what the real
// runtime (github.com/AppImage/type2-runtime, not packaged by Debian) does on a launch, with squashfuse doing
// the FUSE serving. The test links it statically, as the real runtime is, and writes 'A','I',0x02 at offset
// 8 of its ELF header; an AppImage is this binary with a squashfs appended.
//
// On a launch it finds the squashfs after its own ELF image (the end of the section header table), in the file
// TARGET_APPIMAGE names if set (as the real runtime honours it), else in itself; makes a fresh
// /tmp/.mount_XXXXXX; starts squashfuse on it at that offset (a forked child, as the real runtime forks its
// FUSE server); waits for the mount; and execs AppRun from it with APPIMAGE, APPDIR and ARGV0 set and its own
// arguments. It tells where it mounted on standard error ("appimage-runtime: mounted at DIR"), for the test
// to unmount afterwards.
package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const fuseSuperMagic = 0x65735546

func main() {
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	target := self
	if v := os.Getenv("TARGET_APPIMAGE"); v != "" {
		target = v
	}
	if target, err = filepath.Abs(target); err != nil {
		fail(err)
	}
	offset, err := elfSize(target)
	if err != nil {
		fail(err)
	}
	mnt, err := os.MkdirTemp("/tmp", ".mount_")
	if err != nil {
		fail(err)
	}
	fuse := exec.Command("squashfuse", "-f", "-o", "offset="+strconv.FormatInt(offset, 10), target, mnt)
	// Its output is not the app's: left open, it would keep the app's pipes open after the app exits.
	if err := fuse.Start(); err != nil {
		os.Remove(mnt)
		fail(fmt.Errorf("start squashfuse: %w", err))
	}
	if err := waitMounted(mnt, 10*time.Second); err != nil {
		fuse.Process.Kill()
		fuse.Wait()
		os.Remove(mnt)
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "appimage-runtime: mounted at %s\n", mnt)
	env := append(os.Environ(), "APPIMAGE="+target, "APPDIR="+mnt, "ARGV0="+os.Args[0])
	apprun := filepath.Join(mnt, "AppRun")
	fail(syscall.Exec(apprun, append([]string{apprun}, os.Args[1:]...), env))
}

// elfSize is where an ELF file's image ends: past its last section, segment and header table (what the real
// runtime computes; Go's linker does not put the section headers last).
func elfSize(path string) (int64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read %s as ELF: %w", path, err)
	}
	defer f.Close()
	raw, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	var h [64]byte
	if _, err := raw.ReadAt(h[:], 0); err != nil || f.Class != elf.ELFCLASS64 {
		return 0, errors.New(path + " is not a 64-bit ELF file")
	}
	end := int64(binary.LittleEndian.Uint64(h[0x28:])) + int64(binary.LittleEndian.Uint16(h[0x3a:]))*int64(binary.LittleEndian.Uint16(h[0x3c:]))
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, int64(s.Offset+s.FileSize))
		}
	}
	for _, p := range f.Progs {
		end = max(end, int64(p.Off+p.Filesz))
	}
	return end, nil
}

func waitMounted(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil && st.Type == fuseSuperMagic {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not mounted within %v", dir, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "appimage-runtime:", err)
	os.Exit(127)
}
