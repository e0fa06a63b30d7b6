package testrig

import (
	"net"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNetnsNetlink makes what NewNetns makes with netlink calls instead of ip(8): the VM guests have only
// busybox's ip, which knows neither namespaces nor veth pairs. Netns.Command still needs ip(8).
func NewNetnsNetlink(t testing.TB, prefix string, idx int) *Netns {
	t.Helper()
	n, nsIf := netnsNames(prefix, idx)
	netns.DeleteNamed(n.Name)
	if l, err := netlink.LinkByName(n.HostIf); err == nil {
		netlink.LinkDel(l)
	}
	// NewNamed moves the calling thread into the new namespace: a thread of its own, never given back.
	made := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.NewNamed(n.Name)
		if err == nil {
			h.Close()
		}
		made <- err
	}()
	if err := <-made; err != nil {
		t.Fatalf("make netns %s: %v", n.Name, err)
	}
	t.Cleanup(func() { netns.DeleteNamed(n.Name) })
	ns, err := netns.GetFromName(n.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.Name, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.HostIf}, PeerName: nsIf, PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", n.HostIf, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(n.HostIf); err == nil {
			netlink.LinkDel(l)
		}
	})
	// Route sockets only: a handle with no families opens one of each, and a guest kernel without xfrm
	// refuses that.
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink in %s: %v", n.Name, err)
	}
	defer in.Close()
	up := func(h *netlink.Handle, name string, addr net.IP) {
		t.Helper()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("find %s: %v", name, err)
		}
		if addr != nil {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addr, Mask: net.CIDRMask(30, 32)}}); err != nil {
				t.Fatalf("address %s: %v", name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	up(host, n.HostIf, n.HostV4.AsSlice())
	up(in, nsIf, n.NsV4.AsSlice())
	up(in, "lo", nil)
	return n
}
