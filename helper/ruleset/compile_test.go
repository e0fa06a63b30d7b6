package ruleset

import (
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

var (
	t0   = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	exeA = identity.Executable{Dev: 2049, Ino: 100}
	exeB = identity.Executable{Dev: 2049, Ino: 200}
)

func stat(path string) (identity.Executable, error) {
	switch path {
	case "/usr/bin/a":
		return exeA, nil
	case "/usr/bin/b":
		return exeB, nil
	}
	return identity.Executable{}, errors.New("no such file")
}

func mk(id, app, remote, port, proto, action string) rules.Rule {
	return rules.Rule{ID: id, Application: app, Direction: "outgoing", Remote: remote, Port: port, Protocol: proto,
		Action: action, Duration: "forever", Enabled: true, Created: t0, Modified: t0}
}

func placement(res Result, id string) Placement {
	for _, p := range res.Placements {
		if p.RuleID == id {
			return p
		}
	}
	return Placement{}
}

// checkPlacements fails t for each rule of want that res placed elsewhere.
func checkPlacements(t *testing.T, res Result, want map[string]Where) {
	t.Helper()
	for id, w := range want {
		if got := placement(res, id); got.Where != w {
			t.Errorf("%s: placed %s (%s), want %s", id, got.Where, got.Reason, w)
		}
	}
}

func TestPlacement(t *testing.T) {
	disabled := mk("disabled", "/usr/bin/a", "any", "any", "any", "deny")
	disabled.Enabled = false
	expired := mk("expired", "/usr/bin/a", "any", "any", "any", "deny")
	expired.Duration, expired.Until = "until-time", t0.Add(-time.Minute)
	owner := uint32(1000)
	user := mk("user", "any", "10.0.0.0/8", "any", "any", "deny")
	user.Owner = &owner
	res, err := Compile([]rules.Rule{
		mk("deny-a", "/usr/bin/a", "any", "any", "any", "deny"),
		mk("host", "/usr/bin/b", "host:example.com", "any", "any", "allow"),
		mk("missing", "/usr/bin/gone", "any", "any", "any", "deny"),
		mk("narrow-range", "any", "192.0.2.0/24", "8000-8015", "tcp", "deny"),
		mk("wide-range", "any", "198.51.100.0/24", "1-1024", "tcp", "deny"),
		disabled, expired, user,
	}, t0, stat)
	if err != nil {
		t.Fatal(err)
	}
	checkPlacements(t, res, map[string]Where{
		"deny-a": InKernel, "host": InUserspace, "missing": InUserspace,
		"narrow-range": InKernel, "wide-range": InUserspace, "disabled": Inactive, "expired": Inactive, "user": InKernel,
	})
	if r, ok := res.Kernel.Defaults[enforce.Scope{App: exeA, UID: identity.AnyUID}]; !ok || r.Verdict != enforce.Deny {
		t.Errorf("A's default: %+v", res.Kernel.Defaults)
	}
	n := 0
	for d := range res.Kernel.Destinations {
		if d.Prefix == netip.MustParsePrefix("192.0.2.0/24") {
			n++
		}
	}
	if n != 16 {
		t.Errorf("the 16-port range became %d kernel entries", n)
	}
	if _, ok := res.Kernel.Destinations[enforce.Destination{Scope: enforce.Scope{App: identity.Any, UID: 1000},
		Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: enforce.TCP}]; !ok {
		t.Error("the user's rule is not in the user's scope")
	}
}

// packagedStat and packaged lay out a Flatpak app with two executables system-wide and one in user 1000's own
// installation.
func packagedStat(path string) (identity.Executable, error) {
	switch path {
	case "/var/lib/flatpak/app/org.example.App/x86_64/stable/c0ffee/files/bin/app":
		return identity.Executable{Dev: 2049, Ino: 300}, nil
	case "/var/lib/flatpak/app/org.example.App/x86_64/stable/c0ffee/files/libexec/helper":
		return identity.Executable{Dev: 2049, Ino: 301}, nil
	case "/home/u/.local/share/flatpak/app/org.example.App/x86_64/stable/beef/files/bin/app":
		return identity.Executable{Dev: 2050, Ino: 400}, nil
	}
	return stat(path)
}

func packaged(kind rules.AppKind, value string) []PackagedExe {
	if kind != rules.AppFlatpak || value != "org.example.App" {
		return nil
	}
	return []PackagedExe{
		{Path: "/var/lib/flatpak/app/org.example.App/x86_64/stable/c0ffee/files/bin/app", UID: identity.AnyUID},
		{Path: "/var/lib/flatpak/app/org.example.App/x86_64/stable/c0ffee/files/libexec/helper", UID: identity.AnyUID},
		{Path: "/home/u/.local/share/flatpak/app/org.example.App/x86_64/stable/beef/files/bin/app", UID: 1000},
	}
}

func TestPackagedAppsCompileToTheirExecutables(t *testing.T) {
	// A Flatpak app's rule is a kernel scope per executable of the app: decided in the kernel, and the
	// any-application rule below it stays in the kernel too (the app's scopes are consulted first).
	owner := uint32(1001)
	other := mk("other-user", "flatpak:org.example.App", "any", "80", "tcp", "deny")
	other.Owner = &owner
	res, err := CompileOptions([]rules.Rule{
		mk("flatpak", "flatpak:org.example.App", "any", "443", "tcp", "allow"),
		mk("deny-all-443", "any", "any", "443", "tcp", "deny"),
		mk("not-installed", "flatpak:org.example.Gone", "any", "any", "any", "allow"),
		mk("deny-all-80", "any", "any", "80", "tcp", "deny"),
		other,
	}, t0, Options{Stat: packagedStat, Packaged: packaged})
	if err != nil {
		t.Fatal(err)
	}
	checkPlacements(t, res, map[string]Where{"flatpak": InKernel, "deny-all-443": InKernel, "deny-all-80": InKernel,
		"not-installed": InUserspace, "other-user": InKernel})
	n := 0
	for _, p := range res.Placements {
		if p.RuleID == "flatpak" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the Flatpak rule is placed %d times, want once", n)
	}
	allow443 := func(app identity.Executable, uid uint32) bool {
		r, ok := res.Kernel.Destinations[enforce.Destination{Scope: enforce.Scope{App: app, UID: uid},
			Prefix: netip.MustParsePrefix("::/0"), Port: 443, Proto: enforce.TCP}]
		return ok && r.Verdict == enforce.Allow
	}
	for _, want := range []struct {
		app identity.Executable
		uid uint32
	}{{identity.Executable{Dev: 2049, Ino: 300}, identity.AnyUID}, {identity.Executable{Dev: 2049, Ino: 301}, identity.AnyUID},
		{identity.Executable{Dev: 2050, Ino: 400}, 1000}} {
		if !allow443(want.app, want.uid) {
			t.Errorf("no kernel allow for %v (uid %d)", want.app, want.uid)
		}
	}
	// User 1000's own copy is user 1000's only: a rule for everyone does not make it everyone's.
	if allow443(identity.Executable{Dev: 2050, Ino: 400}, identity.AnyUID) {
		t.Error("a user's own installation got a rule for every user")
	}
	// User 1001's rule never reaches into user 1000's files.
	for d := range res.Kernel.Destinations {
		if d.Scope.App == (identity.Executable{Dev: 2050, Ino: 400}) && d.Scope.UID == owner {
			t.Errorf("user 1001's rule is installed for user 1000's own installation: %+v", d)
		}
	}
	if got := res.Packaged[identity.Executable{Dev: 2049, Ino: 301}]; got.Kind != rules.AppFlatpak || got.Value != "org.example.App" {
		t.Errorf("the helper's executable is not named as the app's: %+v", got)
	}
	active := 0
	for _, c := range res.Active {
		if c.Rule.ID == "flatpak" {
			active++
		}
	}
	if active != 1 {
		t.Errorf("the Flatpak rule is active %d times, want once", active)
	}
}

func TestAUserspaceRuleKeepsTheRulesItOverridesOutOfTheKernel(t *testing.T) {
	res, err := Compile([]rules.Rule{
		mk("deny-a-all", "/usr/bin/a", "any", "any", "any", "deny"),
		mk("allow-a-domain", "/usr/bin/a", "domain:example.com", "any", "any", "allow"),
		mk("deny-b-all", "/usr/bin/b", "any", "any", "any", "deny"),
	}, t0, stat)
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(res, "deny-a-all"); p.Where != InUserspace {
		t.Errorf("A's blanket deny is in the kernel although a domain rule overrides it: %+v", p)
	}
	if p := placement(res, "deny-b-all"); p.Where != InKernel {
		t.Errorf("B's deny was kept out of the kernel by a rule about A: %+v", p)
	}
	// A's scope asks the helper for everything, so nothing less specific can decide A's attempts.
	if r, ok := res.Kernel.Defaults[enforce.Scope{App: exeA, UID: identity.AnyUID}]; !ok || r.Verdict != enforce.Ask {
		t.Errorf("A's scope has no ASK entry: %+v", res.Kernel.Defaults)
	}
}

func TestAnAppSpecificNameRuleDoesNotEvictOtherAppsRules(t *testing.T) {
	res, err := Compile([]rules.Rule{
		mk("b-host", "/usr/bin/b", "host:example.com", "any", "any", "allow"),
		mk("deny-any-app", "any", "192.0.2.0/24", "any", "any", "deny"),
	}, t0, stat)
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(res, "deny-any-app"); p.Where != InKernel {
		t.Errorf("an any-app rule was evicted by B's name rule although B's scope masks it: %+v", p)
	}
}

// kernelDecide models the kernel's lookup (bpf/decision.h) over compiled verdicts: scopes from most to least
// specific; in a scope the longest prefix, an exact port before any port at equal length, then the default.
func kernelDecide(v enforce.Verdicts, app identity.Executable, uid uint32, addr netip.Addr, port uint16, proto enforce.Protocol) (enforce.Ruling, bool) {
	for _, s := range []enforce.Scope{{App: app, UID: uid}, {App: app, UID: identity.AnyUID}, {App: identity.Any, UID: uid}, {App: identity.Any, UID: identity.AnyUID}} {
		best, bestBits, bestExact, found := enforce.Ruling{}, -1, false, false
		for d, r := range v.Destinations {
			if d.Scope != s || d.Proto != proto || (d.Port != 0 && d.Port != port) {
				continue
			}
			p := d.Prefix
			a := addr
			if p.Addr().Is4() {
				if !a.Is4() {
					continue
				}
			} else if a.Is4() {
				a = netip.AddrFrom16(a.As16())
			}
			if !p.Contains(a) {
				continue
			}
			bits := p.Bits()
			if p.Addr().Is4() {
				bits += 96
			}
			exact := d.Port != 0
			if bits > bestBits || (bits == bestBits && exact && !bestExact) {
				best, bestBits, bestExact, found = r, bits, exact, true
			}
		}
		if found {
			return best, best.Verdict != enforce.Ask
		}
		if r, ok := v.Defaults[s]; ok {
			return r, r.Verdict != enforce.Ask
		}
	}
	return enforce.Ruling{}, false
}

// TestKernelAndUserspaceAgree compiles random rule sets and checks, for many flows, that the kernel's lookup
// picks the same rule as rules.Decide whenever the kernel decides at all.
func TestKernelAndUserspaceAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	apps := []string{"any", "/usr/bin/a", "/usr/bin/b"}
	remotes := []string{"any", "192.0.2.1", "192.0.2.0/24", "192.0.0.0/16", "0.0.0.0/0", "2001:db8::1", "2001:db8::/32", "::/0", "list:resolvers"}
	ports := []string{"any", "80", "443", "8000-8003"}
	protos := []string{"any", "tcp", "udp"}
	actions := []string{"allow", "deny"}
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("192.0.77.1"),
		netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:dead::1")}
	flowPorts := []uint16{80, 443, 8001, 9999}
	uids := []uint32{0, 1000}
	checked := 0
	for round := 0; round < 300; round++ {
		var rs []rules.Rule
		for i := 0; i < 1+rng.Intn(8); i++ {
			r := mk(fmt.Sprintf("r%d", i), apps[rng.Intn(len(apps))], remotes[rng.Intn(len(remotes))],
				ports[rng.Intn(len(ports))], protos[rng.Intn(len(protos))], actions[rng.Intn(2)])
			r.Created = t0.Add(time.Duration(rng.Intn(3)) * time.Second)
			if rng.Intn(4) == 0 {
				uid := uint32(1000)
				r.Owner = &uid
			}
			rs = append(rs, r)
		}
		res, err := CompileOptions(rs, t0, Options{Stat: stat, ListAddrs: resolverList})
		if err != nil {
			t.Fatal(err)
		}
		for _, appPath := range []string{"/usr/bin/a", "/usr/bin/b"} {
			exe, _ := stat(appPath)
			for _, uid := range uids {
				for _, addr := range addrs {
					for _, port := range flowPorts {
						for _, proto := range []string{"tcp", "udp"} {
							kr, kernelDecided := kernelDecide(res.Kernel, exe, uid, addr, port, protoOf(proto))
							want := rules.Decide(res.Active, rules.Flow{AppPath: appPath, UID: uid, Addr: addr, Port: port, Proto: proto}, resolverLookup, t0)
							if !kernelDecided {
								continue // the helper decides: nothing to compare
							}
							checked++
							if want == nil || res.KernelIDs[kr.RuleID] != want.Rule.ID {
								wantID := "<none>"
								if want != nil {
									wantID = want.Rule.ID
								}
								t.Fatalf("round %d: %s uid %d -> %s:%d/%s: kernel picks %s, userspace %s\nrules: %+v",
									round, appPath, uid, addr, port, proto, res.KernelIDs[kr.RuleID], wantID, rs)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d kernel decisions checked against rules.Decide", checked)
}

// resolverAddrs stand for the built-in address list "list:resolvers".
var resolverAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.9/32"), netip.MustParsePrefix("2001:db8::2/128")}

func resolverList(name string) ([]netip.Prefix, bool) {
	if name != "resolvers" {
		return nil, false
	}
	return resolverAddrs, true
}

func resolverLookup(list, host string, addr netip.Addr) bool {
	if list != "resolvers" {
		return false
	}
	for _, p := range resolverAddrs {
		if p.Addr() == addr.Unmap() {
			return true
		}
	}
	return false
}

// TestAddressListCompilesToItsAddresses: a rule on an address-only list is a kernel rule with one entry per
// address (and port and protocol), none when the list is empty; an address a higher-precedence network rule
// covers gets none (that rule decides it in the kernel as in userspace); a list that is not address-only stays in
// userspace.
func TestAddressListCompilesToItsAddresses(t *testing.T) {
	rs := []rules.Rule{
		mk("dns", "any", "list:resolvers", "53", "udp", "allow"),
		mk("corp-deny", "any", "192.0.2.0/28", "any", "udp", "deny"),
		mk("ads", "any", "list:ads", "any", "any", "deny"),
	}
	res, err := CompileOptions(rs, t0, Options{Stat: stat, ListAddrs: resolverList})
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(res, "dns"); p.Where != InKernel {
		t.Fatalf("dns: %+v", p)
	}
	if p := placement(res, "ads"); p.Where != InUserspace {
		t.Fatalf("ads: %+v", p)
	}
	anyScope := enforce.Scope{App: identity.Any, UID: identity.AnyUID}
	id := func(d enforce.Destination) string {
		r, ok := res.Kernel.Destinations[d]
		if !ok {
			return ""
		}
		return res.KernelIDs[r.RuleID]
	}
	v6 := enforce.Destination{Scope: anyScope, Prefix: netip.MustParsePrefix("2001:db8::2/128"), Port: 53, Proto: enforce.UDP}
	if got := id(v6); got != "dns" {
		t.Errorf("2001:db8::2 port 53 udp: %q, want dns", got)
	}
	for _, a := range []string{"192.0.2.1/32", "192.0.2.9/32"} {
		d := enforce.Destination{Scope: anyScope, Prefix: netip.MustParsePrefix(a), Port: 53, Proto: enforce.UDP}
		if got := id(d); got != "" {
			t.Errorf("%s is under the higher-precedence corp-deny, yet has an entry of %q", a, got)
		}
		kr, ok := kernelDecide(res.Kernel, exeA, 0, d.Prefix.Addr(), 53, enforce.UDP)
		if !ok || res.KernelIDs[kr.RuleID] != "corp-deny" {
			t.Errorf("%s port 53: the kernel decides by %q (%v), want corp-deny", a, res.KernelIDs[kr.RuleID], ok)
		}
	}
	for d := range res.Kernel.Destinations {
		if id(d) == "dns" && (d.Port != 53 || d.Proto != enforce.UDP) {
			t.Errorf("dns entry %+v", d)
		}
	}
	if kr, ok := kernelDecide(res.Kernel, exeA, 0, netip.MustParseAddr("203.0.113.1"), 53, enforce.UDP); ok && res.KernelIDs[kr.RuleID] == "dns" {
		t.Error("port 53 of an address not on the list is allowed by the list rule")
	}

	empty, err := CompileOptions(rs[:1], t0, Options{Stat: stat, ListAddrs: func(string) ([]netip.Prefix, bool) { return nil, true }})
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(empty, "dns"); p.Where != InKernel || len(empty.Kernel.Destinations) != 0 || len(empty.Kernel.Defaults) != 0 {
		t.Errorf("an empty list: %+v, %d entries, %d defaults", p, len(empty.Kernel.Destinations), len(empty.Kernel.Defaults))
	}
	without, err := Compile(rs[:1], t0, stat)
	if err != nil {
		t.Fatal(err)
	}
	if p := placement(without, "dns"); p.Where != InUserspace {
		t.Errorf("without ListAddrs the list rule is %+v", p)
	}
}

// An AppImage rule is a kernel scope of the file's AppImage identity: not the file's own identity (a rule for
// the file's path, which names the runtime run bare), and a missing file holds no other rule back.
func TestAppImageRulesCompileToTheFilesAppImageIdentity(t *testing.T) {
	file := identity.Executable{Dev: 2049, Ino: 500}
	st := func(path string) (identity.Executable, error) {
		if path == "/home/u/Apps/Tool.AppImage" {
			return file, nil
		}
		return stat(path)
	}
	res, err := CompileOptions([]rules.Rule{
		mk("tool", "appimage:/home/u/Apps/Tool.AppImage", "any", "any", "any", "allow"),
		mk("tool-file", "/home/u/Apps/Tool.AppImage", "any", "any", "any", "deny"),
		mk("gone", "appimage:/home/u/Apps/Gone.AppImage", "any", "any", "any", "allow"),
		mk("deny-a", "/usr/bin/a", "any", "any", "any", "deny"),
	}, t0, Options{Stat: st})
	if err != nil {
		t.Fatal(err)
	}
	app := identity.AppImageOf(file)
	if r, ok := res.Kernel.Defaults[enforce.Scope{App: app, UID: identity.AnyUID}]; !ok || r.Verdict != enforce.Allow || res.KernelIDs[r.RuleID] != "tool" {
		t.Errorf("the AppImage's kernel scope: %+v, %v", r, ok)
	}
	if r, ok := res.Kernel.Defaults[enforce.Scope{App: file, UID: identity.AnyUID}]; !ok || res.KernelIDs[r.RuleID] != "tool-file" {
		t.Errorf("the file's own scope belongs to the path rule: %+v, %v", r, ok)
	}
	if res.AppImages[app] != "/home/u/Apps/Tool.AppImage" {
		t.Errorf("AppImages = %v", res.AppImages)
	}
	checkPlacements(t, res, map[string]Where{"tool": InKernel, "tool-file": InKernel, "gone": InUserspace, "deny-a": InKernel})
}
