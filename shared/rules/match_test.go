package rules

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMatches(t *testing.T) {
	flowTo := func(addr string, names ...string) Flow { return curlTo(addr, 443, names...) }
	ads := func(list, host string, addr netip.Addr) bool {
		return list == "ads" && (host == "tracker.example" || addr == netip.MustParseAddr("198.51.100.9"))
	}
	for _, c := range []struct {
		name  string
		rule  Rule
		flow  Flow
		now   time.Time
		lists ListLookup
		want  bool
	}{
		// domain
		{"domain matches itself", r("remote=domain:example.com"), flowTo("192.0.2.1", "example.com"), t0, nil, true},
		{"domain matches a subdomain", r("remote=domain:example.com"), flowTo("192.0.2.1", "www.example.com"), t0, nil, true},
		{"domain matches a deep subdomain", r("remote=domain:example.com"), flowTo("192.0.2.1", "a.b.c.example.com"), t0, nil, true},
		{"domain does not match notexample.com", r("remote=domain:example.com"), flowTo("192.0.2.1", "notexample.com"), t0, nil, false},
		{"domain does not match a longer TLD", r("remote=domain:example.com"), flowTo("192.0.2.1", "example.com.evil"), t0, nil, false},
		{"domain does not match its parent", r("remote=domain:www.example.com"), flowTo("192.0.2.1", "example.com"), t0, nil, false},
		{"domain ignores case and trailing dot", r("remote=domain:Example.COM."), flowTo("192.0.2.1", "WWW.example.com."), t0, nil, true},
		{"domain needs a name", r("remote=domain:example.com"), flowTo("192.0.2.1"), t0, nil, false},
		{"domain matches any of the names", r("remote=domain:example.com"), flowTo("192.0.2.1", "cdn.other.net", "www.example.com"), t0, nil, true},
		{"domain: no Unicode folding", r("remote=domain:k.example.com"), flowTo("192.0.2.1", "\u212a.example.com"), t0, nil, false},
		// host
		{"host matches exactly", r("remote=host:www.example.com"), flowTo("192.0.2.1", "www.example.com"), t0, nil, true},
		{"host ignores case", r("remote=host:www.example.com"), flowTo("192.0.2.1", "WWW.Example.Com"), t0, nil, true},
		{"host does not match a subdomain", r("remote=host:example.com"), flowTo("192.0.2.1", "www.example.com"), t0, nil, false},
		{"host does not match the parent", r("remote=host:www.example.com"), flowTo("192.0.2.1", "example.com"), t0, nil, false},
		// wildcard
		{"wildcard * is one label", r("remote=wildcard:*.example.com"), flowTo("192.0.2.1", "www.example.com"), t0, nil, true},
		{"wildcard * is several labels", r("remote=wildcard:*.example.com"), flowTo("192.0.2.1", "a.b.example.com"), t0, nil, true},
		{"wildcard * is not zero labels", r("remote=wildcard:*.example.com"), flowTo("192.0.2.1", "example.com"), t0, nil, false},
		{"wildcard in the middle and end", r("remote=wildcard:*.cdn.example.*"), flowTo("192.0.2.1", "img.cdn.example.co.uk"), t0, nil, true},
		{"wildcard labels are whole", r("remote=wildcard:*.cdn.example.*"), flowTo("192.0.2.1", "img.mycdn.example.com"), t0, nil, false},
		{"wildcard fixed label must be there", r("remote=wildcard:*.cdn.example.*"), flowTo("192.0.2.1", "cdn.example.com"), t0, nil, false},
		{"wildcard two stars need two labels", r("remote=wildcard:*.*.example.com"), flowTo("192.0.2.1", "www.example.com"), t0, nil, false},
		{"wildcard two stars", r("remote=wildcard:*.*.example.com"), flowTo("192.0.2.1", "a.b.example.com"), t0, nil, true},
		{"wildcard ignores case", r("remote=wildcard:WWW.*"), flowTo("192.0.2.1", "www.Example.org."), t0, nil, true},
		{"wildcard backtracks", r("remote=wildcard:*.a.*.a"), flowTo("192.0.2.1", "x.a.a.y.a.a"), t0, nil, true},
		// addresses
		{"address matches", r("remote=192.0.2.1"), flowTo("192.0.2.1"), t0, nil, true},
		{"address differs", r("remote=192.0.2.1"), flowTo("192.0.2.2"), t0, nil, false},
		{"IPv4-mapped flow address is IPv4", r("remote=192.0.2.1"), flowTo("::ffff:192.0.2.1"), t0, nil, true},
		{"CIDR contains", r("remote=10.0.0.0/8"), flowTo("10.200.3.4"), t0, nil, true},
		{"CIDR excludes", r("remote=10.0.0.0/8"), flowTo("11.0.0.1"), t0, nil, false},
		{"IPv4 network does not match IPv6", r("remote=0.0.0.0/0"), flowTo("2001:db8::1"), t0, nil, false},
		{"IPv6 network does not match IPv4", r("remote=::/0"), flowTo("192.0.2.1"), t0, nil, false},
		{"IPv6 network", r("remote=2001:db8::/32"), flowTo("2001:db8:1::1"), t0, nil, true},
		{"IPv6 address with zone", r("remote=fe80::1"), flowTo("fe80::1%eth0"), t0, nil, true},
		{"address rule ignores names", r("remote=192.0.2.1"), flowTo("192.0.2.1", "www.example.com"), t0, nil, true},
		// lists
		{"list by name", r("remote=list:ads"), flowTo("192.0.2.1", "tracker.example"), t0, ads, true},
		{"list by address, no names", r("remote=list:ads"), flowTo("198.51.100.9"), t0, ads, true},
		{"list misses", r("remote=list:ads"), flowTo("192.0.2.1", "www.example.com"), t0, ads, false},
		{"other list", r("remote=list:malware"), flowTo("192.0.2.1", "tracker.example"), t0, ads, false},
		{"no lists loaded", r("remote=list:ads"), flowTo("192.0.2.1", "tracker.example"), t0, nil, false},
		// application
		{"path", r("app=/usr/bin/curl"), flowTo("192.0.2.1"), t0, nil, true},
		{"other path", r("app=/usr/bin/wget"), flowTo("192.0.2.1"), t0, nil, false},
		{"flatpak", r("app=flatpak:org.example.App"), Flow{Flatpak: "org.example.App", Addr: netip.MustParseAddr("192.0.2.1"), Port: 1, Proto: "udp"}, t0, nil, true},
		{"flatpak rule, plain process", r("app=flatpak:org.example.App"), flowTo("192.0.2.1"), t0, nil, false},
		{"snap", r("app=snap:firefox"), Flow{Snap: "firefox", Addr: netip.MustParseAddr("192.0.2.1"), Port: 1, Proto: "udp"}, t0, nil, true},
		{"appimage", r("app=appimage:/opt/T.AppImage"), Flow{AppImage: "/opt/T.AppImage", Addr: netip.MustParseAddr("192.0.2.1"), Port: 1, Proto: "udp"}, t0, nil, true},
		// port, protocol
		{"port", r("port=443"), flowTo("192.0.2.1"), t0, nil, true},
		{"other port", r("port=80"), flowTo("192.0.2.1"), t0, nil, false},
		{"range low end", r("port=443-500"), flowTo("192.0.2.1"), t0, nil, true},
		{"range high end", r("port=400-443"), flowTo("192.0.2.1"), t0, nil, true},
		{"outside range", r("port=444-500"), flowTo("192.0.2.1"), t0, nil, false},
		{"protocol", r("proto=tcp"), flowTo("192.0.2.1"), t0, nil, true},
		{"other protocol", r("proto=udp"), flowTo("192.0.2.1"), t0, nil, false},
		// owner
		{"owner matches own uid", r("owner"), flowTo("192.0.2.1"), t0, nil, true},
		{"owner does not match other uid", r("owner"), Flow{AppPath: "/usr/bin/curl", UID: 1001, Addr: netip.MustParseAddr("192.0.2.1"), Port: 443, Proto: "tcp"}, t0, nil, false},
		{"system rule matches every uid", r(), Flow{AppPath: "/usr/bin/curl", UID: 0, Addr: netip.MustParseAddr("192.0.2.1"), Port: 443, Proto: "tcp"}, t0, nil, true},
	} {
		comp, err := Compile(c.rule)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := comp.Matches(c.flow, c.lists, c.now); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestMatchesTimeAndEnabled(t *testing.T) {
	f := curlTo("192.0.2.1", 443)
	rule := r()
	rule.Duration, rule.Until = DurationUntilTime, t0.Add(time.Hour)
	c, err := Compile(rule)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Matches(f, nil, t0) || !c.Matches(f, nil, t0.Add(time.Hour-time.Nanosecond)) {
		t.Error("until-time rule does not match before its time")
	}
	if c.Matches(f, nil, t0.Add(time.Hour)) || c.Matches(f, nil, t0.Add(48*time.Hour)) {
		t.Error("until-time rule matches once its time has come")
	}
	if Decide([]Compiled{c}, f, nil, t0.Add(2*time.Hour)) != nil {
		t.Error("Decide picked an expired rule")
	}

	rule = r("action=deny")
	rule.Enabled = false
	c, _ = Compile(rule)
	if c.Matches(f, nil, t0) {
		t.Error("disabled rule matches")
	}
	allow, _ := Compile(r("id=allow"))
	if got := Decide([]Compiled{c, allow}, f, nil, t0); got == nil || got.Rule.ID != "allow" {
		t.Errorf("a disabled deny still decides: %v", got)
	}

	for _, d := range []string{DurationOnce, DurationUntilQuit, DurationUntilRestart, DurationForever} {
		rule := r()
		rule.Duration = d
		c, _ := Compile(rule)
		if !c.Matches(f, nil, t0.Add(1000*time.Hour)) {
			t.Errorf("%s rule stops matching with time; only until-time rules expire here", d)
		}
	}
}

func TestMatchesHandBuiltCompiled(t *testing.T) {
	// A Compiled made without Compile (as another package's test might) still matches sensibly.
	c := Compiled{Rule: Rule{Enabled: true, Duration: DurationForever}, RemoteKind: RemoteWildcard, Name: "*.example.com"}
	if !c.Matches(curlTo("192.0.2.1", 1, "a.example.com"), nil, t0) {
		t.Error("wildcard without a compiled pattern does not match")
	}
}

// TestWildcardAgainstRegexp checks the label glob against a regular expression that says the same thing,
// for every pattern and name over a small alphabet.
func TestWildcardAgainstRegexp(t *testing.T) {
	labels := []string{"a", "b", "*"}
	var patterns, names []string
	var grow func(prefix string, n int, alphabet []string, out *[]string)
	grow = func(prefix string, n int, alphabet []string, out *[]string) {
		if n == 0 {
			return
		}
		for _, l := range alphabet {
			s := l
			if prefix != "" {
				s = prefix + "." + l
			}
			*out = append(*out, s)
			grow(s, n-1, alphabet, out)
		}
	}
	grow("", 4, labels, &patterns)
	grow("", 5, labels[:2], &names)
	for _, p := range patterns {
		var parts []string
		for l := range strings.SplitSeq(p, ".") {
			if l == "*" {
				parts = append(parts, `[^.]+(\.[^.]+)*`)
			} else {
				parts = append(parts, regexp.QuoteMeta(l))
			}
		}
		re := regexp.MustCompile(`^` + strings.Join(parts, `\.`) + `$`)
		for _, n := range names {
			if got, want := wildcardMatch(p, n), re.MatchString(n); got != want {
				t.Errorf("wildcardMatch(%q, %q) = %v, want %v", p, n, got, want)
			}
		}
	}
}
