package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// holdingModules are the netfilter modules connection holding needs on Debian's kernels, where they are all
// modules: nf_tables with the native queue expression, conntrack state matching, the reject expression of the
// refuse chain, the xtables NFQUEUE target through nft_compat (the fallback), and the socket expression
// (nft_socket) with which the hold chain copies a socket's mark into its first UDP datagram. Their dependencies are
// resolved from each module's own modinfo, since the kernel packages ship no modules.dep (depmod runs at
// install time).
var holdingModules = []string{
	"nfnetlink_queue", "nft_queue", "nft_ct", "nft_reject_inet", "nft_compat", "xt_NFQUEUE", "nft_socket",
}

// trafficModules are what the traffic test needs beyond them: a veth pair to a namespace, and the clsact qdisc
// (sch_ingress) and bpf classifier the counters are attached with where the kernel has no tcx, and the socket
// lists (tcp_diag, udp_diag) by which the helper knows a closed socket's record is done. A Debian system loads
// them on demand; the guest has no modprobe.
var trafficModules = []string{"veth", "sch_ingress", "cls_bpf", "tcp_diag", "udp_diag"}

// kernelModules is one kernel's module tree as unpacked by fetch-kernels.sh.
type kernelModules struct {
	release string            // directory name under modules/, what `uname -r` says in the guest
	files   map[string]string // module name (dashes as underscores) -> file
	builtin map[string]bool
}

func modName(file string) string {
	base := filepath.Base(file)
	base = base[:strings.Index(base, ".ko")]
	return strings.ReplaceAll(base, "-", "_")
}

func readKernelModules(kdir string) (*kernelModules, error) {
	entries, err := os.ReadDir(filepath.Join(kdir, "modules"))
	if err != nil {
		return nil, fmt.Errorf("read modules of %s: %w", kdir, err)
	}
	if len(entries) != 1 {
		return nil, fmt.Errorf("%s/modules: want exactly one kernel release, found %d", kdir, len(entries))
	}
	km := &kernelModules{release: entries[0].Name(), files: map[string]string{}, builtin: map[string]bool{}}
	root := filepath.Join(kdir, "modules", km.release)
	err = filepath.WalkDir(filepath.Join(root, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			km.files[modName(path)] = path
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules of %s: %w", km.release, err)
	}
	builtin, err := os.ReadFile(filepath.Join(root, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("read built-in module list of %s: %w", km.release, err)
	}
	for _, l := range strings.Fields(string(builtin)) {
		km.builtin[modName(l)] = true
	}
	return km, nil
}

// moduleBytes returns a module file uncompressed (busybox insmod takes only plain .ko).
func moduleBytes(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".ko.gz"):
		tool = "gzip"
	default:
		return nil, fmt.Errorf("%s: unknown module compression", path)
	}
	out, err := exec.Command(tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s (install it): %w", path, tool, err)
	}
	return out, nil
}

// modinfoDepends reads the depends= entry of a module's .modinfo section.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("parse module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module has no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
		}
	}
	return deps, nil
}

// installModules copies want and their dependencies, uncompressed, to root/lib/modules/RELEASE/NAME.ko and
// writes root/lib/modules/RELEASE/load: the names in an order insmod can follow (dependencies first).
// Built-in modules are skipped.
func installModules(kdir, root string, want []string) (release string, order []string, err error) {
	km, err := readKernelModules(kdir)
	if err != nil {
		return "", nil, err
	}
	dst := filepath.Join(root, "lib", "modules", km.release)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", nil, err
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, parent string) error
	visit = func(name, parent string) error {
		switch {
		case state[name] == 2:
			return nil
		case state[name] == 1:
			return fmt.Errorf("%s: module dependency cycle at %s", km.release, name)
		case km.builtin[name]:
			state[name] = 2
			return nil
		}
		path, ok := km.files[name]
		if !ok {
			return fmt.Errorf("%s: module %s (needed by %q) is neither built in nor shipped", km.release, name, parent)
		}
		state[name] = 1
		ko, err := moduleBytes(path)
		if err != nil {
			return err
		}
		deps, err := modinfoDepends(ko)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dst, name+".ko"), ko, 0o644); err != nil {
			return err
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, m := range want {
		if err := visit(m, ""); err != nil {
			return "", nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "load"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return "", nil, err
	}
	return km.release, order, nil
}
