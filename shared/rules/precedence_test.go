package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// r builds a rule from "key=value" settings over an "allow any" default, so each table row shows only what
// matters to it.
func r(settings ...string) Rule {
	rule := Rule{
		ID: "x", Application: "any", Direction: DirectionOutgoing, Remote: "any", Port: "any", Protocol: "any",
		Action: ActionAllow, Duration: DurationForever, Enabled: true, Created: t0, Modified: t0,
	}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		switch k {
		case "id":
			rule.ID = v
		case "app":
			rule.Application = v
		case "owner":
			rule.Owner = uid(1000)
		case "remote":
			rule.Remote = v
		case "port":
			rule.Port = v
		case "proto":
			rule.Protocol = v
		case "action":
			rule.Action = v
		case "created":
			rule.Created, _ = time.Parse(time.RFC3339, v)
		default:
			panic("unknown setting " + k)
		}
	}
	return rule
}

// curlTo is a flow from curl run by uid 1000 to addr:port over TCP, with the given names.
func curlTo(addr string, port uint16, names ...string) Flow {
	return Flow{AppPath: "/usr/bin/curl", UID: 1000, Addr: netip.MustParseAddr(addr), Hostnames: names, Port: port, Proto: "tcp"}
}

// TestPrecedence proves PRECEDENCE.md, one row per line of its table: rule A against rule B for a flow both
// match, and which one decides.
func TestPrecedence(t *testing.T) {
	web := curlTo("192.0.2.7", 443, "www.example.com")
	firefox := Flow{AppPath: "/app/lib/firefox/firefox", Flatpak: "org.mozilla.firefox", UID: 1000, Addr: netip.MustParseAddr("2001:db8::7"), Hostnames: []string{"www.example.com"}, Port: 443, Proto: "tcp"}
	snap := Flow{AppPath: "/snap/chromium/2000/usr/lib/chromium-browser/chrome", Snap: "chromium", UID: 1000, Addr: netip.MustParseAddr("192.0.2.7"), Port: 443, Proto: "tcp"}
	appimage := Flow{AppPath: "/tmp/.mount_ToolXYZ/usr/bin/tool", AppImage: "/home/alice/Apps/Tool.AppImage", UID: 1000, Addr: netip.MustParseAddr("192.0.2.7"), Port: 80, Proto: "tcp"}
	inAds := func(list, host string, addr netip.Addr) bool { return list == "ads" && host == "www.example.com" }

	for _, c := range []struct {
		step string
		a, b Rule // a must win
		flow Flow
	}{
		// 1. application
		{"1 path over any, even against a narrower deny", r("app=/usr/bin/curl"), r("action=deny", "remote=192.0.2.7", "port=443", "proto=tcp", "owner"), web},
		{"1 flatpak over any", r("app=flatpak:org.mozilla.firefox"), r("action=deny", "remote=host:www.example.com"), firefox},
		{"1 snap over any", r("app=snap:chromium", "action=deny"), r("remote=192.0.2.7"), snap},
		{"1 appimage over any", r("app=appimage:/home/alice/Apps/Tool.AppImage"), r("action=deny", "port=80"), appimage},
		// 2. owner, within the same application specificity
		{"2 own rule over system rule", r("owner"), r("action=deny", "remote=192.0.2.7", "port=443", "proto=tcp"), web},
		{"2 own rule over system rule, for an app", r("app=/usr/bin/curl", "owner", "action=deny"), r("app=/usr/bin/curl", "remote=192.0.2.7"), web},
		{"2 system app rule over own any-app rule", r("app=/usr/bin/curl", "action=deny"), r("owner", "remote=192.0.2.7"), web},
		// 3. remote kind
		{"3 address over network", r("remote=192.0.2.7"), r("remote=192.0.2.0/24", "action=deny", "port=443", "proto=tcp"), web},
		{"3 /32 counts as address", r("remote=192.0.2.7/32", "action=deny"), r("remote=192.0.2.0/28", "port=443"), web},
		{"3 host over domain", r("remote=host:www.example.com"), r("remote=domain:example.com", "action=deny", "port=443", "proto=tcp"), web},
		{"3 address and host equal, port decides", r("remote=host:www.example.com", "port=443"), r("remote=192.0.2.7", "action=deny"), web},
		{"3 network over domain", r("remote=192.0.2.0/24"), r("remote=domain:www.example.com", "action=deny", "port=443"), web},
		{"3 domain over wildcard", r("remote=domain:example.com"), r("remote=wildcard:*.example.com", "action=deny", "port=443"), web},
		{"3 wildcard over list", r("remote=wildcard:www.*"), r("remote=list:ads", "action=deny", "port=443"), web},
		{"3 list over any", r("remote=list:ads", "action=deny"), r("port=443", "proto=tcp"), web},
		// 4. remote, same kind
		{"4 longer prefix", r("remote=192.0.2.0/28"), r("remote=192.0.2.0/24", "action=deny", "port=443"), web},
		{"4 IPv6 longer prefix", r("remote=2001:db8::/64", "action=deny"), r("remote=2001:db8::/32", "port=443"), firefox},
		{"4 domain with more labels", r("remote=domain:www.example.com"), r("remote=domain:example.com", "action=deny", "port=443"), web},
		{"4 wildcard with more fixed labels", r("remote=wildcard:*.example.com"), r("remote=wildcard:*.com", "action=deny", "port=443"), web},
		// 5. port
		{"5 one port over a range", r("port=443"), r("port=400-500", "action=deny", "proto=tcp"), web},
		{"5 narrower range", r("port=440-450"), r("port=1-1024", "action=deny", "proto=tcp"), web},
		{"5 full range over any", r("port=1-65535"), r("action=deny", "proto=tcp"), web},
		// 6. protocol
		{"6 tcp over any", r("proto=tcp"), r("action=deny"), web},
		// 7. action
		{"7 deny over allow", r("action=deny"), r(), web},
		// 8. age
		{"8 older over newer", r("id=z", "created=2020-01-01T00:00:00Z"), r("id=a", "created=2024-01-01T00:00:00Z"), web},
		// 9. id
		{"9 smaller id", r("id=a"), r("id=b"), web},
	} {
		a, err := Compile(c.a)
		if err != nil {
			t.Fatalf("%s: rule A: %v", c.step, err)
		}
		b, err := Compile(c.b)
		if err != nil {
			t.Fatalf("%s: rule B: %v", c.step, err)
		}
		if a.Rule.ID == b.Rule.ID {
			a.Rule.ID, b.Rule.ID = "a", "b" // only the id row (9) relies on ids; keep ids apart elsewhere
			if strings.HasPrefix(c.step, "9") {
				t.Fatalf("%s: equal ids", c.step)
			}
		}
		if !a.Matches(c.flow, inAds, t0) || !b.Matches(c.flow, inAds, t0) {
			t.Errorf("%s: both rules must match the flow (A %v, B %v)", c.step, a.Matches(c.flow, inAds, t0), b.Matches(c.flow, inAds, t0))
			continue
		}
		if Compare(&a, &b) >= 0 || Compare(&b, &a) <= 0 {
			t.Errorf("%s: Compare(A,B)=%d Compare(B,A)=%d, want A first", c.step, Compare(&a, &b), Compare(&b, &a))
		}
		for _, order := range [][]Compiled{{a, b}, {b, a}} {
			if got := Decide(order, c.flow, inAds, t0); got == nil || got.Rule.ID != a.Rule.ID {
				t.Errorf("%s: Decide picked %v, want A (%s)", c.step, got, c.a.Remote)
			}
		}
	}
}

func TestCompareIsTotalAndConsistent(t *testing.T) {
	var all []Compiled
	for i, s := range [][]string{
		{"app=/usr/bin/curl"}, {"app=flatpak:org.example.App"}, {"owner"}, {"remote=192.0.2.1"}, {"remote=host:a.example"},
		{"remote=10.0.0.0/8"}, {"remote=10.0.0.0/16"}, {"remote=2001:db8::/120"}, {"remote=192.0.2.0/24"},
		{"remote=domain:example.com"}, {"remote=wildcard:*.example.*"}, {"remote=list:ads"}, {"port=443"},
		{"port=1-2"}, {"port=1-100"}, {"proto=udp"}, {"action=deny"}, {"created=2020-01-01T00:00:00Z"}, {},
	} {
		c, err := Compile(r(append(s, "id=r"+string(rune('a'+i)))...))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	for i := range all {
		for j := range all {
			ab, ba := Compare(&all[i], &all[j]), Compare(&all[j], &all[i])
			if (ab < 0) != (ba > 0) || (ab == 0) != (i == j) {
				t.Errorf("%s vs %s: %d and %d", all[i].Rule.ID, all[j].Rule.ID, ab, ba)
			}
			for k := range all {
				if ab < 0 && Compare(&all[j], &all[k]) < 0 && Compare(&all[i], &all[k]) >= 0 {
					t.Errorf("not transitive: %s < %s < %s", all[i].Rule.ID, all[j].Rule.ID, all[k].Rule.ID)
				}
			}
		}
	}
}

func TestDecideNoMatch(t *testing.T) {
	c, _ := Compile(r("app=/usr/bin/wget"))
	if got := Decide([]Compiled{c}, curlTo("192.0.2.7", 443), nil, t0); got != nil {
		t.Errorf("got %v for a flow no rule matches", got)
	}
	if got := Decide(nil, curlTo("192.0.2.7", 443), nil, t0); got != nil {
		t.Errorf("got %v from no rules", got)
	}
}
