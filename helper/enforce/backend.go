// Package enforce owns Tattle's kernel side: it loads the BPF programs, attaches them with the chosen backend,
// pins everything under bpffs so enforcement outlives the helper, and offers the Go API the rest of the helper
// uses to install verdicts and to read events and counters.
package enforce

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Backend is the kind of kernel hook that decides.
type Backend string

const (
	// BackendAuto picks lsm where BPF LSM is active, cgroup otherwise.
	BackendAuto Backend = "auto"
	// BackendLSM decides in BPF LSM programs on socket_connect and socket_sendmsg.
	BackendLSM Backend = "lsm"
	// BackendCgroup decides in cgroup sock_addr programs at the cgroup v2 root.
	BackendCgroup Backend = "cgroup"
)

// ParseBackend validates a backend name given by a user.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case BackendAuto, BackendLSM, BackendCgroup:
		return b, nil
	}
	return "", fmt.Errorf("unknown backend %q: use auto, lsm or cgroup", s)
}

// DefaultSecurityFS is where the kernel's list of active LSMs lives.
const DefaultSecurityFS = "/sys/kernel/security"

// BPFLSMActive reports whether "bpf" is among the active LSMs listed in securityfs. It mounts securityfs
// first when it is absent (some systems do not mount it at boot).
func BPFLSMActive(securityFS string) (bool, error) {
	lsmFile := filepath.Join(securityFS, "lsm")
	data, err := os.ReadFile(lsmFile)
	if errors.Is(err, os.ErrNotExist) {
		if mErr := unix.Mount("securityfs", securityFS, "securityfs", 0, ""); mErr != nil {
			return false, fmt.Errorf("read %s: not present and mounting securityfs failed: %w", lsmFile, mErr)
		}
		data, err = os.ReadFile(lsmFile)
	}
	if err != nil {
		return false, fmt.Errorf("read active LSMs: %w", err)
	}
	return lsmListHasBPF(string(data)), nil
}

func lsmListHasBPF(list string) bool {
	for _, name := range strings.Split(strings.TrimSpace(list), ",") {
		if name == "bpf" {
			return true
		}
	}
	return false
}

// Resolve turns auto into a concrete backend for this kernel.
func Resolve(b Backend, securityFS string) (Backend, error) {
	if b != BackendAuto {
		return b, nil
	}
	active, err := BPFLSMActive(securityFS)
	if err != nil {
		return "", err
	}
	if active {
		return BackendLSM, nil
	}
	return BackendCgroup, nil
}

// CgroupV2Root finds where the unified (v2) cgroup hierarchy is mounted, from a mountinfo file
// (normally /proc/self/mountinfo). Distributions differ: /sys/fs/cgroup, or /sys/fs/cgroup/unified on
// hybrid layouts.
func CgroupV2Root(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroupV2Root(bufio.NewScanner(f))
}

func parseCgroupV2Root(sc *bufio.Scanner) (string, error) {
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if fields[sep+1] == "cgroup2" && fields[3] == "/" {
			return unescapeMountPath(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup) and retry")
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
