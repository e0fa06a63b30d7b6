package testrig

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
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
	id := os.Getpid() % 10000
	n := &Netns{
		Name:   fmt.Sprintf("%s-%d", prefix, id),
		HostIf: fmt.Sprintf("%.6s%dh", prefix, id),
		HostV4: netip.AddrFrom4([4]byte{10, byte(200 + idx), byte(id % 250), 1}),
		NsV4:   netip.AddrFrom4([4]byte{10, byte(200 + idx), byte(id % 250), 2}),
	}
	nsIf := fmt.Sprintf("%.6s%dn", prefix, id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "delete", n.Name).Run()
	run("netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", n.Name).Run() })
	run("link", "add", n.HostIf, "type", "veth", "peer", "name", nsIf, "netns", n.Name)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", n.HostIf).Run() })
	run("addr", "add", n.HostV4.String()+"/30", "dev", n.HostIf)
	run("link", "set", n.HostIf, "up")
	run("-n", n.Name, "addr", "add", n.NsV4.String()+"/30", "dev", nsIf)
	run("-n", n.Name, "link", "set", nsIf, "up")
	run("-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Command runs name inside the namespace (ip netns exec execs it: the command keeps the PID Start gives).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
