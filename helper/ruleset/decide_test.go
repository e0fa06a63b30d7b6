package ruleset

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

func compiled(t *testing.T, rs ...rules.Rule) []rules.Compiled {
	t.Helper()
	out := make([]rules.Compiled, len(rs))
	for i, r := range rs {
		c, err := rules.Compile(r)
		if err != nil {
			t.Fatalf("compile %s: %v", r.ID, err)
		}
		out[i] = c
	}
	return out
}

// A name rule above the winner blocks a userspace verdict while the application's names are unknown, and
// stops blocking once they are known and do not match; an address-only list is decided by the address.
func TestUnknowable(t *testing.T) {
	now := time.Now()
	active := compiled(t,
		mk("deny-tracker", "any", "domain:tracker.example", "any", "any", "deny"),
		mk("deny-listed", "any", "list:blocked", "any", "any", "deny"),
		mk("allow-dns", "any", "list:resolvers", "53", "udp", "allow"),
		mk("allow-all", "/usr/bin/curl", "any", "any", "any", "allow"),
	)
	winner := &active[3]
	f := rules.Flow{AppPath: "/usr/bin/curl", Addr: netip.MustParseAddr("192.0.2.7"), Port: 443, Proto: "tcp"}
	lists := func(list, host string, addr netip.Addr) bool { return false }
	addrOnly := func(list string) bool { return list == "resolvers" }
	if got := Unknowable(active, winner, f, lists, addrOnly, now); got != "deny-tracker" {
		t.Errorf("no names known: %q blocks, want deny-tracker", got)
	}
	f.Hostnames = []string{"www.example.org"}
	if got := Unknowable(active, winner, f, lists, addrOnly, now); got != "" {
		t.Errorf("names known, none listed: %q blocks, want none", got)
	}
	// Without the lists, a list rule might still match.
	if got := Unknowable(active, winner, f, nil, addrOnly, now); got != "deny-listed" {
		t.Errorf("lists unknown: %q blocks, want deny-listed", got)
	}
	// The resolvers list holds addresses: with names unknown and its contents known, it does not block a
	// flow to port 53 of another address, though the name rule above it still does.
	dns := rules.Flow{AppPath: "/usr/bin/curl", Addr: netip.MustParseAddr("192.0.2.53"), Port: 53, Proto: "udp"}
	if got := Unknowable(active[2:], winner, dns, lists, addrOnly, now); got != "" {
		t.Errorf("an address-only list blocked: %q", got)
	}
	if got := Unknowable(active[2:], winner, dns, lists, nil, now); got != "allow-dns" {
		t.Errorf("a list not known to hold addresses only did not block: %q", got)
	}
	if got := Unknowable(active, &active[0], f, lists, addrOnly, now); got != "" {
		t.Errorf("nothing is above the top rule, got %q", got)
	}
}

// Path rules match an executable by its identity: the rule path that names this file, the reported path only
// when it is one of them.
func TestPathFor(t *testing.T) {
	app := identity.Executable{Dev: 1, Ino: 2}
	r := Result{Paths: map[identity.Executable][]string{app: {"/usr/bin/python3.11", "/usr/bin/python3"}}}
	if got := r.PathFor(app, "/usr/bin/python3"); got != "/usr/bin/python3" {
		t.Errorf("reported path among the rule paths: %q", got)
	}
	if got := r.PathFor(app, "/tmp/forged/python3"); got != "/usr/bin/python3.11" {
		t.Errorf("a made-up path is not trusted: got %q, want the rule path of the file", got)
	}
	if got := r.PathFor(identity.Executable{Dev: 1, Ino: 3}, "/usr/bin/python3"); got != "" {
		t.Errorf("a file no rule names: %q", got)
	}
}
