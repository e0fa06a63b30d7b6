package enforce

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// pinMeta records which build and backend the pinned programs belong to. It lives in a one-element array
// map pinned as "meta", since bpffs holds only BPF objects.
type pinMeta struct {
	Magic   uint64
	Layout  uint32
	Backend uint32
	Hash    [32]byte
}

const pinMagic = 0x3130656c74746174 // "tattle01"

func backendCode(b Backend) uint32 {
	switch b {
	case BackendLSM:
		return 1
	case BackendCgroup:
		return 2
	}
	return 0
}

func backendName(code uint32) Backend {
	switch code {
	case 1:
		return BackendLSM
	case 2:
		return BackendCgroup
	}
	return "unknown"
}

func readPinMeta(pinDir string) (pinMeta, bool) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "meta"), nil)
	if err != nil {
		return pinMeta{}, false
	}
	defer m.Close()
	var v pinMeta
	if err := m.Lookup(uint32(0), &v); err != nil || v.Magic != pinMagic {
		return pinMeta{}, false
	}
	v.Magic = 0
	return v, true
}

func writePinMeta(pinDir string, v pinMeta) error {
	path := filepath.Join(pinDir, "meta")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace pinned meta: %w", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "tattle_meta", Type: ebpf.Array, KeySize: 4, ValueSize: 48, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("create meta map: %w", err)
	}
	defer m.Close()
	v.Magic = pinMagic
	if err := m.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write meta map: %w", err)
	}
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin meta map: %w", err)
	}
	return nil
}

func isBPFFS(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("inspect %s: %w", dir, err)
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}

func mountBPFFS(dir string) error {
	return unix.Mount("bpf", dir, "bpf", 0, "mode=0700")
}
