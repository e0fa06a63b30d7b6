package hold

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// TestDomainScopeUsesPublicSuffix: "this domain" makes a rule for the registrable domain by the public suffix
// list, the same string the question carries for the agents to show (Question.Domain).
func TestDomainScopeUsesPublicSuffix(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for host, want := range map[string]string{
		"www.example.co.uk": "domain:example.co.uk",
		"foo.github.io":     "domain:foo.github.io",
		"www.example.test":  "domain:example.test",
	} {
		a := Attempt{Key: Key{UID: 1000, Dest: netip.MustParseAddrPort("10.0.0.2:443"), Proto: enforce.TCP}, Exe: "/usr/bin/curl", Host: host}
		r := RuleFor(a, api.Answer{Action: rules.ActionAllow, Scope: api.ScopeDomain, Duration: rules.DurationForever}, now)
		if r.Remote != want {
			t.Errorf("%s: rule remote %q, want %q", host, r.Remote, want)
		}
		if label := "domain:" + rules.RegistrableDomain(host); label != r.Remote {
			t.Errorf("%s: the question's domain %q and the rule's %q differ", host, label, r.Remote)
		}
	}
}

// TestSystemAnswerMakesASystemRule: an administrator's answer about a system process is a rule for every
// user; a multi-port question's host scope covers the host on any port.
func TestSystemAnswerMakesASystemRule(t *testing.T) {
	a := Attempt{Key: Key{UID: 0, Dest: netip.MustParseAddrPort("10.0.0.2:20000"), Proto: enforce.TCP}, Exe: "/usr/bin/curl",
		System: true, Ports: []uint16{20000, 20001}}
	r := RuleFor(a, api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever}, time.Now())
	if r.Owner != nil {
		t.Errorf("system answer made a rule owned by %d", *r.Owner)
	}
	if r.Remote != "10.0.0.2" || r.Port != rules.Any || r.Protocol != "tcp" {
		t.Errorf("host scope of two ports: %s port %s %s", r.Remote, r.Port, r.Protocol)
	}
	a.System, a.Ports = false, nil
	r = RuleFor(a, api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever}, time.Now())
	if r.Owner == nil || *r.Owner != 0 || r.Port != "20000" {
		t.Errorf("ordinary answer: owner %v port %s", r.Owner, r.Port)
	}
}
