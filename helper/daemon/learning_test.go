package daemon

import (
	"testing"

	"github.com/tattlefw/tattle/shared/rules"
)

func proposal(app, remote, port string, uid uint32) rules.Rule {
	return rules.Rule{Application: app, Owner: &uid, Remote: remote, Port: port, Protocol: "tcp"}
}

func TestProposalsDeduplicate(t *testing.T) {
	p := newProposals(10, []rules.Rule{proposal("/usr/bin/a", "10.0.0.1", "443", 1000)})
	if ok, _ := p.admit(proposal("/usr/bin/a", "10.0.0.1", "443", 1000)); ok {
		t.Error("a proposal already stored was proposed again")
	}
	if ok, _ := p.admit(proposal("/usr/bin/a", "10.0.0.1", "80", 1000)); !ok {
		t.Error("another port was not proposed")
	}
	if ok, _ := p.admit(proposal("/usr/bin/a", "10.0.0.1", "80", 1000)); ok {
		t.Error("the same attempt twice made two proposals")
	}
	if ok, _ := p.admit(proposal("/usr/bin/a", "10.0.0.1", "80", 1001)); !ok {
		t.Error("another user's attempt was not proposed")
	}
	sys := proposal("/usr/bin/a", "10.0.0.1", "80", 0)
	sys.Owner = nil
	if ok, _ := p.admit(sys); !ok {
		t.Error("a system process's attempt was not proposed apart from uid 0's")
	}
	failed := proposal("/usr/bin/b", "10.0.0.1", "80", 1000)
	p.admit(failed)
	p.forget(failed)
	if ok, _ := p.admit(failed); !ok {
		t.Error("a proposal that could not be stored was not tried again")
	}
}

func TestProposalsBounded(t *testing.T) {
	p := newProposals(3, nil)
	admitted, fullReports := 0, 0
	for port := range 10 {
		ok, full := p.admit(proposal("/usr/bin/a", "10.0.0.1", string(rune('0'+port)), 1000))
		if ok {
			admitted++
		}
		if full {
			fullReports++
		}
	}
	if admitted != 3 || fullReports != 1 {
		t.Errorf("admitted %d (want 3), reported full %d times (want once)", admitted, fullReports)
	}
}
