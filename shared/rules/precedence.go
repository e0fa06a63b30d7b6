package rules

import (
	"cmp"
	"strings"
	"time"
)

// Compare orders two rules by precedence: negative if a takes precedence over b, positive if b does, 0 only
// if neither is preferred (same specificity, action, creation time and id). The order, step by step, is the
// table in PRECEDENCE.md; each step only breaks ties left by the steps before it.
func Compare(a, b *Compiled) int {
	// Each key is "more is stronger", so b's value is compared with a's to put the stronger rule first.
	if c := cmp.Compare(appRank(b), appRank(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(ownerRank(b), ownerRank(a)); c != 0 {
		return c
	}
	at, as := remoteRank(a)
	bt, bs := remoteRank(b)
	if c := cmp.Compare(bt, at); c != 0 {
		return c
	}
	if c := cmp.Compare(bs, as); c != 0 {
		return c
	}
	if c := cmp.Compare(portRank(b), portRank(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(protoRank(b), protoRank(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(actionRank(b), actionRank(a)); c != 0 {
		return c
	}
	if c := a.Rule.Created.Compare(b.Rule.Created); c != 0 {
		return c // older first: a new rule should not silently override an established one of equal standing
	}
	return strings.Compare(a.Rule.ID, b.Rule.ID)
}

// Decide returns the rule that decides f: of the rules that match it, the one of highest precedence. It
// returns nil when none matches (the flow is undecided). Of rules that compare equal, the first in the slice
// wins. The result points into rules.
func Decide(rules []Compiled, f Flow, lists ListLookup, now time.Time) *Compiled {
	var best *Compiled
	for i := range rules {
		c := &rules[i]
		if (best == nil || Compare(c, best) < 0) && c.Matches(f, lists, now) {
			best = c
		}
	}
	return best
}

func appRank(c *Compiled) int {
	if c.AppKind == AppAny {
		return 0
	}
	return 1
}

func ownerRank(c *Compiled) int {
	if c.Rule.Owner == nil {
		return 0
	}
	return 1
}

// remoteRank returns the remote's tier and, within the tier, its specificity (more is more specific).
func remoteRank(c *Compiled) (tier, spec int) {
	switch c.RemoteKind {
	case RemoteIP, RemoteHost:
		return 6, 0
	case RemoteCIDR:
		// Fewer free bits is a smaller network. Counting free bits rather than prefix length puts an IPv4 /24
		// and an IPv6 /120 (both 256 addresses) level; they can never match the same flow anyway.
		return 5, c.Prefix.Bits() - c.Prefix.Addr().BitLen()
	case RemoteDomain:
		return 4, strings.Count(c.Name, ".") + 1
	case RemoteWildcard:
		literals := 0
		for label := range strings.SplitSeq(c.Name, ".") {
			if label != "*" {
				literals++
			}
		}
		return 3, literals
	case RemoteList:
		return 2, 0
	}
	return 1, 0 // any
}

// portRank: a single port beats a range, a narrower range beats a wider one, any range beats any port.
func portRank(c *Compiled) int {
	if c.PortHi == 0 {
		return 0
	}
	return 1<<17 - (int(c.PortHi) - int(c.PortLo) + 1)
}

func protoRank(c *Compiled) int {
	if c.Proto == ProtocolTCP || c.Proto == ProtocolUDP {
		return 1
	}
	return 0
}

// actionRank: deny beats allow on a tie, so an equal-standing deny is never overridden.
func actionRank(c *Compiled) int {
	if c.Rule.Action == ActionDeny {
		return 1
	}
	return 0
}
