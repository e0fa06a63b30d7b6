package enforcement

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// fastDenial is how quickly a denied attempt must fail: the kernel says no at once, it never times out.
const fastDenial = 100 * time.Millisecond

const nobody = 65534

type apps struct {
	dir      string
	a, b     string // two copies of the client: two applications
	aLink    string // hard link to a: the same application
	aCopy    string // copy of a: a new application
	srv      testrig.Servers
	enforcer *enforce.Enforcer
}

func newApps(t *testing.T, enf *enforce.Enforcer) *apps {
	bin := testrig.Build(t)
	dir := testrig.AppDir(t)
	x := &apps{dir: dir, enforcer: enf, srv: testrig.StartServers(t)}
	x.a = testrig.CopyApp(t, bin.Client, dir, "app-a")
	x.b = testrig.CopyApp(t, bin.Client, dir, "app-b")
	x.aLink = filepath.Join(dir, "app-a-hardlink")
	if err := os.Link(x.a, x.aLink); err != nil {
		t.Fatal(err)
	}
	x.aCopy = testrig.CopyApp(t, x.a, dir, "app-a-copy")
	return x
}

func ident(t *testing.T, path string) identity.Executable {
	t.Helper()
	id, err := identity.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func expectDenied(t *testing.T, what string, r testrig.Result) {
	t.Helper()
	if r.OK || r.Errno != "EPERM" {
		t.Errorf("%s: want EPERM, got ok=%v errno=%q (%s)", what, r.OK, r.Errno, r.Error)
		return
	}
	if r.Elapsed() > fastDenial {
		t.Errorf("%s: denial took %v, want under %v", what, r.Elapsed(), fastDenial)
	}
}

func expectAllowed(t *testing.T, what string, r testrig.Result, udp bool) {
	t.Helper()
	if !r.OK {
		t.Errorf("%s: want success, got errno=%q (%s)", what, r.Errno, r.Error)
		return
	}
	if udp && !r.Echoed {
		t.Errorf("%s: datagram sent but no echo came back", what)
	}
}

// probe runs app against every server: TCP and UDP, IPv4 and IPv6.
func (x *apps) probe(t *testing.T, name, path string, opts testrig.RunOpts, wantDenied bool) {
	t.Helper()
	for _, c := range []struct {
		proto, addr string
	}{{"tcp", x.srv.TCP4}, {"tcp", x.srv.TCP6}, {"udp", x.srv.UDP4}, {"udp", x.srv.UDP6}} {
		r := testrig.RunApp(t, path, opts, c.proto, c.addr)
		what := name + " " + c.proto + " " + c.addr
		if wantDenied {
			expectDenied(t, what, r)
		} else {
			expectAllowed(t, what, r, c.proto == "udp")
		}
	}
}

func TestDenyApplication(t *testing.T) {
	enf := openEnforcer(t, "deny-app")
	x := newApps(t, enf)
	if err := enf.SetDefault(enforce.Scope{App: ident(t, x.a), UID: identity.AnyUID}, enforce.Deny, 1); err != nil {
		t.Fatal(err)
	}

	x.probe(t, "A", x.a, testrig.RunOpts{}, true)
	x.probe(t, "B", x.b, testrig.RunOpts{}, false)
	x.probe(t, "hard link to A", x.aLink, testrig.RunOpts{}, true)
	x.probe(t, "copy of A", x.aCopy, testrig.RunOpts{}, false)
	// The process name is the user's to change; identity is the executable, not comm.
	x.probe(t, "A renamed to app-b", x.a, testrig.RunOpts{Comm: "app-b"}, true)
	x.probe(t, "B renamed to app-a", x.b, testrig.RunOpts{Comm: "app-a"}, false)
	// Another user's A is still A.
	x.probe(t, "A as nobody", x.a, testrig.RunOpts{UID: nobody}, true)

	if err := enf.ClearDefault(enforce.Scope{App: ident(t, x.a), UID: identity.AnyUID}); err != nil {
		t.Fatal(err)
	}
	x.probe(t, "A after its verdict was removed", x.a, testrig.RunOpts{}, false)
}

func TestDestinationVerdicts(t *testing.T) {
	enf := openEnforcer(t, "dest")
	x := newApps(t, enf)
	a := enforce.Scope{App: ident(t, x.a), UID: identity.AnyUID}
	tcp4 := netip.MustParseAddrPort(x.srv.TCP4)

	// Deny A only to one port of 127.0.0.1 over TCP.
	port := enforce.Destination{Scope: a, Prefix: netip.PrefixFrom(tcp4.Addr(), 32), Port: tcp4.Port(), Proto: enforce.TCP}
	if err := enf.SetDestination(port, enforce.Deny, 10); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, "A to the denied port", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4))
	expectAllowed(t, "A to another port", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4b), false)
	expectAllowed(t, "A over IPv6", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP6), false)
	expectAllowed(t, "A over UDP to 127.0.0.1", testrig.RunApp(t, x.a, testrig.RunOpts{}, "udp", x.srv.UDP4), true)
	expectAllowed(t, "B to the denied port", testrig.RunApp(t, x.b, testrig.RunOpts{}, "tcp", x.srv.TCP4), false)

	// Deny A to all of ::1 over UDP (a prefix, any port): TCP to ::1 still passes.
	v6 := enforce.Destination{Scope: a, Prefix: netip.MustParsePrefix("::1/128"), Proto: enforce.UDP}
	if err := enf.SetDestination(v6, enforce.Deny, 11); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, "A UDP to ::1", testrig.RunApp(t, x.a, testrig.RunOpts{}, "udp", x.srv.UDP6))
	expectAllowed(t, "A TCP to ::1", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP6), false)

	// A longer prefix beats a shorter one: deny 127.0.0.0/8, allow 127.0.0.1/32 on the second port.
	wide := enforce.Destination{Scope: a, Prefix: netip.MustParsePrefix("127.0.0.0/8")}
	if err := enf.SetDestination(wide, enforce.Deny, 12); err != nil {
		t.Fatal(err)
	}
	tcp4b := netip.MustParseAddrPort(x.srv.TCP4b)
	narrow := enforce.Destination{Scope: a, Prefix: netip.PrefixFrom(tcp4b.Addr(), 32), Port: tcp4b.Port(), Proto: enforce.TCP}
	if err := enf.SetDestination(narrow, enforce.Allow, 13); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, "A to the /32 allowed port inside a denied /8", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4b), false)
	expectDenied(t, "A UDP inside the denied /8", testrig.RunApp(t, x.a, testrig.RunOpts{}, "udp", x.srv.UDP4))

	// An exact port beats "any port" at the same prefix length.
	anyPort := enforce.Destination{Scope: a, Prefix: netip.PrefixFrom(tcp4b.Addr(), 32), Proto: enforce.TCP}
	if err := enf.SetDestination(anyPort, enforce.Deny, 14); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, "A exact-port allow over same-prefix any-port deny", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4b), false)

	// Destination verdicts beat the application's default: allow A by default, the denied port stays denied.
	if err := enf.SetDefault(a, enforce.Allow, 15); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, "A to the denied port with default allow", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4))

	// Removing the destination verdicts leaves the default in force.
	for _, d := range []enforce.Destination{port, v6, wide, narrow, anyPort} {
		if err := enf.ClearDestination(d); err != nil {
			t.Fatal(err)
		}
	}
	x.probe(t, "A with only its default allow", x.a, testrig.RunOpts{}, false)
}

func TestAnyApplicationVerdicts(t *testing.T) {
	enf := openEnforcer(t, "any-app")
	x := newApps(t, enf)
	tcp4 := netip.MustParseAddrPort(x.srv.TCP4)
	everyone := enforce.Scope{App: identity.Any, UID: identity.AnyUID}
	d := enforce.Destination{Scope: everyone, Prefix: netip.PrefixFrom(tcp4.Addr(), 32), Port: tcp4.Port()}
	if err := enf.SetDestination(d, enforce.Deny, 20); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, "A to a destination denied for any app", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4))
	expectDenied(t, "B to a destination denied for any app", testrig.RunApp(t, x.b, testrig.RunOpts{}, "tcp", x.srv.TCP4))
	expectAllowed(t, "A elsewhere", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4b), false)

	// The application's own verdict beats the any-application one.
	if err := enf.SetDefault(enforce.Scope{App: ident(t, x.b), UID: identity.AnyUID}, enforce.Allow, 21); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, "B with its own allow", testrig.RunApp(t, x.b, testrig.RunOpts{}, "tcp", x.srv.TCP4), false)
	expectDenied(t, "A still denied", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4))
}

func TestUserScope(t *testing.T) {
	enf := openEnforcer(t, "uid")
	x := newApps(t, enf)
	// Deny every application of user nobody; root's processes are untouched.
	if err := enf.SetDefault(enforce.Scope{App: identity.Any, UID: nobody}, enforce.Deny, 30); err != nil {
		t.Fatal(err)
	}
	x.probe(t, "A as nobody", x.a, testrig.RunOpts{UID: nobody}, true)
	x.probe(t, "A as root", x.a, testrig.RunOpts{}, false)

	// A user's verdict for one application beats the user's any-application verdict.
	if err := enf.SetDefault(enforce.Scope{App: ident(t, x.b), UID: nobody}, enforce.Allow, 31); err != nil {
		t.Fatal(err)
	}
	x.probe(t, "B as nobody with its own allow", x.b, testrig.RunOpts{UID: nobody}, false)
}
