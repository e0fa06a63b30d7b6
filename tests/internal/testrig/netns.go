package testrig

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace the test made, joined to the host by a veth pair: the one kind of remote host
// tests may talk to besides loopback.
type Netns struct {
	Name   string
	HostIf string
	HostV4 netip.Addr
	NsV4   netip.Addr
}

// NewNetns makes a namespace with a veth pair and IPv4 addresses 10.(200+idx).x.1 (host) and .2 (namespace);
// idx keeps concurrent packages apart. Cleanup removes both.
func NewNetns(t testing.TB, prefix string, idx int) *Netns {
	t.Helper()
	n, nsIf := netnsNames(prefix, idx)
	AddVethNetns(t, n.Name, n.HostIf, nsIf, n.HostV4.String(), n.NsV4.String())
	return n
}

// netnsNames names the namespace, its links and addresses by prefix, idx and this process (NewNetns,
// NewNetnsNetlink); nsIf is the link's name inside.
func netnsNames(prefix string, idx int) (n *Netns, nsIf string) {
	id := os.Getpid() % 10000
	n = &Netns{
		Name:   fmt.Sprintf("%s-%d", prefix, id),
		HostIf: fmt.Sprintf("%.6s%dh", prefix, id),
	}
	n.HostV4, n.NsV4 = netnsAddrs(idx, id)
	return n, fmt.Sprintf("%.6s%dn", prefix, id)
}

// AddVethNetns makes namespace name (replacing a stale one) linked to the host by a veth pair: hostIf on the
// host with hostAddr/30, nsIf inside with nsAddr/30, both up, and the namespace's lo up. Cleanup removes the
// namespace and the link.
func AddVethNetns(t testing.TB, name, hostIf, nsIf, hostAddr, nsAddr string) {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "delete", name).Run()
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", name)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", hostIf).Run() })
	run("addr", "add", hostAddr+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", name, "addr", "add", nsAddr+"/30", "dev", nsIf)
	run("-n", name, "link", "set", nsIf, "up")
	run("-n", name, "link", "set", "lo", "up")
}

func netnsAddrs(idx, id int) (host, ns netip.Addr) {
	return netip.AddrFrom4([4]byte{10, byte(200 + idx), byte(id % 250), 1}), netip.AddrFrom4([4]byte{10, byte(200 + idx), byte(id % 250), 2})
}

// Command runs name inside the namespace (ip netns exec execs it: the command keeps the PID Start gives).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Listen listens inside the namespace (from a thread that joins it and dies with its goroutine); the socket
// stays there whichever thread then accepts on it. Cleanup closes it.
func (n *Netns) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	// ip(8) names namespaces under /var/run/netns, vishvananda/netns (NewNetnsNetlink) under /run/netns: the
	// same directory on a Debian system, not in the VM guests' initramfs.
	path := "/var/run/netns/" + n.Name
	if _, err := os.Stat(path); err != nil {
		path = "/run/netns/" + n.Name
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.Name, err)
	}
	defer unix.Close(fd)
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must not go back to the pool in the namespace
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		ln, err := net.Listen(network, addr)
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("listen in %s: %v", n.Name, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// ServeDownloads answers every connection on ln as a download: it reads until the client ends its side, then
// sends reply times as many bytes and closes. It stops when ln is closed. Each served connection's TCP_INFO,
// read once all it sent was acknowledged, comes on the returned channel (dropped when nobody reads it).
func ServeDownloads(ln net.Listener, reply int64) <-chan TCPStats {
	served := make(chan TCPStats, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				io.CopyN(c, zeros{}, n*reply)
				tc, ok := c.(*net.TCPConn)
				if !ok {
					return
				}
				tc.CloseWrite()
				if st, ok := ackedTCPStats(tc); ok {
					select {
					case served <- st:
					default:
					}
				}
			}()
		}
	}()
	return served
}

// ackedTCPStats waits (up to 10 s) until nothing the socket sent is unacknowledged, its FIN included, so no
// more is sent, and returns its TCP_INFO.
func ackedTCPStats(c *net.TCPConn) (TCPStats, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return TCPStats{}, false
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ti *unix.TCPInfo
		rc.Control(func(fd uintptr) { ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if err != nil {
			return TCPStats{}, false
		}
		if ti.State == unix.BPF_TCP_CLOSE || time.Now().After(deadline) {
			return TCPStats{BytesSent: ti.Bytes_sent, BytesRetrans: ti.Bytes_retrans, BytesAcked: ti.Bytes_acked,
				SegsOut: ti.Segs_out, DataSegsOut: ti.Data_segs_out, TotalRetrans: ti.Total_retrans}, ti.State == unix.BPF_TCP_CLOSE
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
