package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// orderOS makes Tattle's precedence reproduce OpenSnitch's decisions over the active atoms.
//
// OpenSnitch decides a flow by the first matching strong rule (deny, reject, or precedence) in name order,
// else allows it when an allow matches. Tattle decides by the matching rule of highest precedence. For every
// two atoms with different actions that some flow matches both of, OpenSnitch's choice between them (the
// strong one; of two strong ones the earlier) must rank higher in Tattle, or there must be an atom for
// exactly the flows they share, with the winner's action, that ranks above the loser. Then on every flow the
// highest-ranked matching atom has OpenSnitch's action: if it had not, it and OpenSnitch's deciding atom
// would be such a pair. Such an added atom covers only flows of the winner, which comes before it in
// OpenSnitch's order with the same action, so adding it changes nothing there. A loser that ranks no lower
// than the added atom would be is covered by the winner whole: OpenSnitch never lets it decide, and it is
// left out.
func orderOS(atoms []osAtom, srcs []*osSource) (out []osAtom, added, dropped int, why string) {
	keys := map[string]int{}
	for i := range atoms {
		keys[atomKey(&atoms[i])] = i
	}
	name := func(a *osAtom) string {
		s := srcs[a.src]
		return fmt.Sprintf("%q (%s)", short(s.rule.Name), s.where)
	}
	fixN := map[int]int{}
	for pass := 0; ; pass++ {
		changed := false
		for i := 0; i < len(atoms); i++ {
			for j := i + 1; j < len(atoms); j++ {
				a, b := &atoms[i], &atoms[j]
				if a.dead || b.dead || a.rule.Action == b.rule.Action {
					continue
				}
				meet, overlap, ok := atomMeet(a, b)
				if !overlap {
					continue
				}
				w, l := a, b
				if !a.strong || b.strong && b.pos < a.pos {
					w, l = b, a
				}
				if Compare(&w.c, &l.c) < 0 {
					continue
				}
				// The added atom may be anything from the shared flows up to the winner (it only ever decides flows
				// the winner decides, with the winner's action): the exact meet, else the meet with the winner's
				// remote, which Tattle can always write.
				var cands []Rule
				if ok {
					cands = append(cands, meet)
				}
				wide := meet
				wide.Remote = w.rule.Remote
				cands = append(cands, wide)
				// Already kept: an atom with the winner's action that covers every flow both match and ranks above
				// the loser (one added for another pair, say).
				fixed := false
				for k := range atoms {
					x := &atoms[k]
					if !x.dead && x.rule.Action == w.rule.Action && Compare(&x.c, &l.c) < 0 && coversMeet(&x.c, meet, ok, w, l) {
						fixed = true
						break
					}
				}
				if fixed {
					continue
				}
				var fx osAtom
				found := false
				for _, cand := range cands {
					f := *w
					f.fixer = true
					f.rule = cand
					f.rule.Action, f.rule.Duration, f.rule.Until, f.rule.Enabled = w.rule.Action, w.rule.Duration, w.rule.Until, true
					f.rule.Note, f.rule.Created, f.rule.Modified, f.rule.Direction = w.rule.Note, w.rule.Created, w.rule.Modified, DirectionOutgoing
					f.rule.ID = fmt.Sprintf("%s-order-%d", osID(srcs[w.src].rule.Name, srcs[w.src].file), fixN[w.src]+1)
					c, err := Compile(f.rule)
					if err != nil {
						continue
					}
					f.c = c
					if Compare(&f.c, &l.c) < 0 {
						fx, found = f, true
						break
					}
				}
				if !found {
					if ok && sameFields(meet, l.rule) {
						// The loser is covered by the winner whole: OpenSnitch never lets it decide.
						l.dead = true
						dropped++
						changed = true
						continue
					}
					return nil, 0, 0, fmt.Sprintf("OpenSnitch lets %s decide over %s where both match, but Tattle ranks %s higher, and no Tattle rule can cover the connections both match (%s) without covering more",
						name(w), name(l), name(l), describeMeet(w, l))
				}
				fixN[w.src]++
				keys[atomKey(&fx)] = len(atoms)
				atoms = append(atoms, fx)
				added++
				changed = true
				if added > maxOrderRules {
					return nil, 0, 0, fmt.Sprintf("reproducing OpenSnitch's order would take more than %d extra rules; split the set", maxOrderRules)
				}
			}
		}
		if !changed {
			break
		}
	}
	for i := range atoms {
		if !atoms[i].dead {
			out = append(out, atoms[i])
		}
	}
	return out, added, dropped, ""
}

func describeMeet(w, l *osAtom) string {
	return fmt.Sprintf("%s and %s", w.rule.Remote, l.rule.Remote)
}

func atomKey(a *osAtom) string { return meetKey(a.rule, a) }

func meetKey(r Rule, w *osAtom) string {
	o := "-"
	if r.Owner != nil {
		o = strconv.FormatUint(uint64(*r.Owner), 10)
	}
	return fmt.Sprint(r.Application, "|", o, "|", r.Remote, "|", r.Port, "|", r.Protocol, "|", w.rule.Action)
}

// atomMeet is the rule for the flows both a and b match: overlap says whether there can be such flows, ok
// whether one rule can say exactly which.
func atomMeet(a, b *osAtom) (Rule, bool, bool) {
	var r Rule
	switch {
	case a.c.AppKind == AppAny:
		r.Application = b.rule.Application
	case b.c.AppKind == AppAny || a.rule.Application == b.rule.Application:
		r.Application = a.rule.Application
	default:
		return r, false, false
	}
	switch {
	case a.rule.Owner == nil:
		r.Owner = b.rule.Owner
	case b.rule.Owner == nil || *a.rule.Owner == *b.rule.Owner:
		r.Owner = a.rule.Owner
	default:
		return r, false, false
	}
	switch {
	case a.c.Proto == Any:
		r.Protocol = b.c.Proto
	case b.c.Proto == Any || a.c.Proto == b.c.Proto:
		r.Protocol = a.c.Proto
	default:
		return r, false, false
	}
	switch {
	case a.c.PortHi == 0:
		r.Port = b.rule.Port
	case b.c.PortHi == 0:
		r.Port = a.rule.Port
	default:
		lo, hi := max(a.c.PortLo, b.c.PortLo), min(a.c.PortHi, b.c.PortHi)
		switch {
		case lo > hi:
			return r, false, false
		case lo == hi:
			r.Port = strconv.Itoa(int(lo))
		default:
			r.Port = fmt.Sprintf("%d-%d", lo, hi)
		}
	}
	remote, overlap, ok := remoteMeet(a.c, b.c)
	r.Remote = remote
	r.Direction = DirectionOutgoing
	return r, overlap, ok
}

// remoteMeet is the remote for the destinations both a and b cover.
func remoteMeet(a, b Compiled) (string, bool, bool) {
	if a.RemoteKind == RemoteAny {
		return b.Rule.Remote, true, true
	}
	if b.RemoteKind == RemoteAny {
		return a.Rule.Remote, true, true
	}
	isAddr := func(c Compiled) bool { return c.RemoteKind == RemoteIP || c.RemoteKind == RemoteCIDR }
	if isAddr(a) && isAddr(b) {
		if !a.Prefix.Overlaps(b.Prefix) {
			return "", false, false
		}
		p := a.Prefix
		if b.Prefix.Bits() > p.Bits() {
			p = b.Prefix
		}
		return prefixRemote(netip.PrefixFrom(p.Addr(), p.Bits())), true, true
	}
	if isAddr(a) || isAddr(b) {
		return "", true, false // an address and a name or list: flows can match both, no one rule says which
	}
	if b.RemoteKind == RemoteHost {
		a, b = b, a
	}
	if a.RemoteKind == RemoteHost {
		switch b.RemoteKind {
		case RemoteHost:
			if asciiEqualFold(a.Name, b.Name) {
				return a.Rule.Remote, true, true
			}
			return "", false, false
		case RemoteDomain:
			if inDomain(a.Name, b.Name) {
				return a.Rule.Remote, true, true
			}
			return "", false, false
		case RemoteWildcard:
			if wildcardMatch(b.Name, a.Name) {
				return a.Rule.Remote, true, true
			}
			return "", false, false
		}
		return "", true, false
	}
	if a.RemoteKind == RemoteDomain && b.RemoteKind == RemoteDomain {
		switch {
		case inDomain(a.Name, b.Name):
			return a.Rule.Remote, true, true
		case inDomain(b.Name, a.Name):
			return b.Rule.Remote, true, true
		}
		return "", false, false
	}
	if a.RemoteKind == RemoteList && b.RemoteKind == RemoteList && a.Name == b.Name {
		return a.Rule.Remote, true, true
	}
	if a.RemoteKind == RemoteWildcard && b.RemoteKind == RemoteDomain {
		a, b = b, a
	}
	if b.RemoteKind == RemoteWildcard && (a.RemoteKind == RemoteDomain || a.RemoteKind == RemoteWildcard) {
		// Every name a wildcard matches ends in its labels after the last "*".
		tb := wildcardTail(b.Name)
		ta := a.Name
		if a.RemoteKind == RemoteWildcard {
			ta = wildcardTail(a.Name)
		}
		switch {
		case tb == "" || ta == "":
		case !inDomain(ta, tb) && !inDomain(tb, ta):
			return "", false, false
		case a.RemoteKind == RemoteWildcard && a.Name == b.Name:
			return a.Rule.Remote, true, true
		case a.RemoteKind == RemoteDomain && inDomain(tb, ta):
			return b.Rule.Remote, true, true // all the wildcard's names are in the domain
		case a.RemoteKind == RemoteDomain && b.Name == "*."+tb && inDomain(ta, tb) && ta != tb:
			return a.Rule.Remote, true, true // "*.tail" covers every name under tail, so all of the domain's
		}
	}
	return "", true, false
}

// wildcardTail is the labels of a wildcard after its last "*" ("" when it ends in one).
func wildcardTail(w string) string {
	i := strings.LastIndex(w, "*")
	if i < 0 {
		return w
	}
	return strings.TrimPrefix(w[i+1:], ".")
}

// sameFields reports whether two rules cover the same connections (application, owner, remote, port,
// protocol).
func sameFields(a, b Rule) bool {
	return a.Application == b.Application && sameOwnerPtr(a.Owner, b.Owner) && a.Remote == b.Remote && a.Port == b.Port && a.Protocol == b.Protocol
}

func sameOwnerPtr(a, b *uint32) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// coversMeet reports whether x matches every flow that both w and l match (meet is their meet; when the
// meet's remote cannot be written, covering either one's remote is enough).
func coversMeet(x *Compiled, meet Rule, remoteOK bool, w, l *osAtom) bool {
	if x.AppKind != AppAny && x.Rule.Application != meet.Application {
		return false
	}
	if x.Rule.Owner != nil && (meet.Owner == nil || *meet.Owner != *x.Rule.Owner) {
		return false
	}
	if x.Proto != Any && x.Proto != meet.Protocol {
		return false
	}
	if x.PortHi != 0 {
		lo, hi, msg := parsePort(meet.Port)
		if msg != "" || hi == 0 || lo < x.PortLo || hi > x.PortHi {
			return false
		}
	}
	if remoteOK {
		return remoteCovers(x, mustRemote(meet.Remote))
	}
	return remoteCovers(x, w.c) || remoteCovers(x, l.c)
}

// remoteCovers reports whether x's remote covers every destination r's does.
func remoteCovers(x *Compiled, r Compiled) bool {
	switch x.RemoteKind {
	case RemoteAny:
		return true
	case RemoteIP, RemoteCIDR:
		return (r.RemoteKind == RemoteIP || r.RemoteKind == RemoteCIDR) && x.Prefix.Bits() <= r.Prefix.Bits() && x.Prefix.Contains(r.Prefix.Addr())
	case RemoteHost:
		return r.RemoteKind == RemoteHost && asciiEqualFold(x.Name, r.Name)
	case RemoteDomain:
		return (r.RemoteKind == RemoteHost || r.RemoteKind == RemoteDomain) && inDomain(r.Name, x.Name)
	case RemoteWildcard:
		return r.RemoteKind == RemoteHost && wildcardMatch(x.Name, r.Name) || r.RemoteKind == RemoteWildcard && x.Name == r.Name
	case RemoteList:
		return r.RemoteKind == RemoteList && x.Name == r.Name
	}
	return false
}
