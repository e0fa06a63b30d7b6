package enforce

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/bpf"
)

// Before Linux 6.6 there is no tcx: the counters are attached as legacy TC filters instead, a clsact qdisc with
// a direct-action bpf filter on its ingress and egress hooks. Such filters are not links: they cannot be
// pinned, and they stay in the kernel (holding their program) after the helper exits, which is what keeps
// counting while it restarts. Other software (Cilium, tc users) may have a clsact qdisc and filters of its own
// on the same interface, so the helper keeps to what is its own:
//
//   - its filters have their own priority (clsactPrio), a handle derived from the pin directory (one tattled
//     instance does not take another's) and the program's name; nothing else is ever replaced or deleted;
//   - it adds a clsact qdisc only where there is none, records that with a directory clsact@IFINDEX under the
//     links pin directory (bpffs holds directories, not files), and deletes the qdisc only where it made it and
//     no filter of anyone is left on it;
//   - a restarted helper replaces its own filters in place (RTM_NEWTFILTER with NLM_F_REPLACE on the same
//     handle and priority): the kernel swaps the program atomically, the maps are the pinned ones, so no packet
//     is counted twice and none is missed.
//
// The programs return TC_ACT_UNSPEC, so filters after them still run.

// clsactPrio is the priority of the helper's filters. tc gives filters added without one 49152 and up, Cilium
// uses 1: a priority of its own keeps the helper's filter block apart from theirs.
const clsactPrio = 0x7a7

// clsactMarker names the directory that records a clsact qdisc the helper made.
const clsactMarker = "clsact@"

// clsactHandle is the handle of one helper instance's filters (the instance is its pin directory).
func clsactHandle(pinDir string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(filepath.Clean(pinDir)))
	return 0x7a770000 | h.Sum32()&0xffff
}

// clsactFilter is what the ownership rules look at in one listed filter.
type clsactFilter struct {
	Kind     string // "bpf"
	Handle   uint32
	Priority uint16
	Name     string // the bpf filter's name, as given when it was added
}

// isTrafficProg tells whether name is one of the counters' programs (tc shows a bpf filter's name; the kernel
// keeps the name the adder gave it).
func isTrafficProg(name string) bool {
	return name == bpf.TrafficProgTattleTrafficEgress || name == bpf.TrafficProgTattleTrafficIngress
}

// ownFilters picks the filters of one hook that belong to the instance with handle: its counters at its
// priority. Filters of other software, and another instance's, are never among them.
func ownFilters(filters []clsactFilter, handle uint32) []clsactFilter {
	var own []clsactFilter
	for _, f := range filters {
		if f.Kind == "bpf" && f.Handle == handle && f.Priority == clsactPrio && isTrafficProg(f.Name) {
			own = append(own, f)
		}
	}
	return own
}

// clsactHooks are the two hooks of a clsact qdisc, with the counter each gets.
var clsactHooks = [2]struct {
	parent uint32
	prog   string
}{
	{netlink.HANDLE_MIN_EGRESS, bpf.TrafficProgTattleTrafficEgress},
	{netlink.HANDLE_MIN_INGRESS, bpf.TrafficProgTattleTrafficIngress},
}

func listFilters(ifindex int, parent uint32) ([]clsactFilter, error) {
	fs, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, parent)
	if err != nil {
		return nil, fmt.Errorf("list filters: %w", err)
	}
	out := make([]clsactFilter, 0, len(fs))
	for _, f := range fs {
		a := f.Attrs()
		cf := clsactFilter{Kind: f.Type(), Handle: a.Handle, Priority: a.Priority}
		if b, ok := f.(*netlink.BpfFilter); ok {
			cf.Name = b.Name
		}
		out = append(out, cf)
	}
	return out, nil
}

func hasClsact(ifindex int) (bool, error) {
	qs, err := netlink.QdiscList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}})
	if err != nil {
		return false, fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true, nil
		}
	}
	return false, nil
}

func clsactQdisc(ifindex int) *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0),
		Parent: netlink.HANDLE_CLSACT}}
}

// attachClsact puts the counters on one interface as clsact filters, replacing the instance's own filters
// there in place, and making the qdisc if there is none.
func attachClsact(linkDir string, handle uint32, ifindex int, egress, ingress *ebpf.Program) error {
	have, err := hasClsact(ifindex)
	if err != nil {
		return err
	}
	if !have {
		if err := netlink.QdiscAdd(clsactQdisc(ifindex)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
		if err == nil {
			os.MkdirAll(linkDir, 0o700)
			if err := os.Mkdir(filepath.Join(linkDir, clsactMarker+strconv.Itoa(ifindex)), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("record the clsact qdisc: %w", err)
			}
		}
	}
	for i, prog := range []*ebpf.Program{egress, ingress} {
		h := clsactHooks[i]
		f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: h.parent, Handle: handle,
			Priority: clsactPrio, Protocol: unix.ETH_P_ALL}, Fd: prog.FD(), Name: h.prog, DirectAction: true}
		if err := netlink.FilterReplace(f); err != nil {
			return fmt.Errorf("add %s filter: %w", h.prog, err)
		}
	}
	return nil
}

// detachClsact removes the instance's own filters from one interface, and the qdisc where the helper made it
// and nothing else is on it now. An interface that is gone took them all along; only the marker is left to go.
func detachClsact(linkDir string, handle uint32, ifindex int) error {
	marker := filepath.Join(linkDir, clsactMarker+strconv.Itoa(ifindex))
	if _, err := netlink.LinkByIndex(ifindex); err != nil {
		os.Remove(marker)
		return nil
	}
	if have, err := hasClsact(ifindex); err != nil {
		return err
	} else if !have {
		os.Remove(marker) // someone deleted it, and our filters with it
		return nil
	}
	var errs []error
	left := 0
	for _, h := range clsactHooks {
		fs, err := listFilters(ifindex, h.parent)
		if err != nil {
			errs = append(errs, err)
			left++ // unknown: keep the qdisc
			continue
		}
		own := ownFilters(fs, handle)
		left += len(fs) - len(own)
		for _, f := range own {
			del := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: h.parent,
				Handle: f.Handle, Priority: f.Priority, Protocol: unix.ETH_P_ALL}}
			if err := netlink.FilterDel(del); err != nil {
				errs = append(errs, fmt.Errorf("delete %s filter: %w", f.Name, err))
				left++
			}
		}
	}
	if _, err := os.Stat(marker); err == nil {
		if left == 0 {
			if err := netlink.QdiscDel(clsactQdisc(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
			}
		}
		os.Remove(marker)
	}
	return errors.Join(errs...)
}

// uninstallClsact removes the instance's filters from every interface, and the qdiscs it made.
func uninstallClsact(pinDir string) error {
	linkDir := filepath.Join(pinDir, "links")
	handle := clsactHandle(pinDir)
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	var errs []error
	done := map[int]bool{}
	for _, l := range links {
		idx := l.Attrs().Index
		done[idx] = true
		if err := detachClsact(linkDir, handle, idx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Attrs().Name, err))
		}
	}
	// Markers of interfaces gone.
	ents, _ := os.ReadDir(linkDir)
	for _, ent := range ents {
		if idx, ok := strings.CutPrefix(ent.Name(), clsactMarker); ok {
			if n, err := strconv.Atoi(idx); err != nil || !done[n] {
				os.Remove(filepath.Join(linkDir, ent.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

// haveTCX probes the kernel for tcx with a real program: attaching to no interface fails either way, and the
// library then tells a kernel without tcx (ErrNotSupported) from a refused attachment.
func haveTCX(prog *ebpf.Program) bool {
	l, err := link.AttachTCX(link.TCXOptions{Interface: 0x7fffffff, Program: prog, Attach: ebpf.AttachTCXEgress})
	if err == nil {
		l.Close()
		return true
	}
	return !errors.Is(err, ebpf.ErrNotSupported)
}
