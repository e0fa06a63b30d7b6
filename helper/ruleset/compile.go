// Package ruleset turns the rules in force into what the kernel enforces, and keeps the rest for the helper.
//
// A rule goes into the kernel maps when the kernel can match it exactly: an executable path (resolved to its
// device and inode), a Flatpak app or snap (one scope per executable), an AppImage (the file's AppImage
// identity) or any application; an address, prefix or any remote; one port, a short range or any; TCP, UDP
// or both; a list that holds addresses only (the built-in list:resolvers, Options.ListAddrs), one entry per
// address. Rules about names (hosts, domains, other lists) and wide port ranges stay in userspace and are
// evaluated by the helper for the attempts the kernel reports as undecided.
//
// Precedence must come out the same on both sides. Rules are taken in precedence order (rules.Compare); a
// kernel-capable rule that a higher-precedence userspace rule could override is kept out of the kernel too, so
// the kernel never decides what the helper would decide differently: those attempts reach the helper instead.
// Where several rules compile to the same kernel entry, the one of higher precedence owns it.
package ruleset

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// MaxExpandedPorts is the widest port range compiled into kernel entries (one per port).
const MaxExpandedPorts = 16

// MaxKernelDestinations is the destination entries compiled rules may use: half the kernel map, so that
// replacing one rule set by another (new entries go in before stale ones go out) always fits. Rules beyond
// it are evaluated by the helper.
const MaxKernelDestinations = 131072

// Where says where a rule is enforced.
type Where string

const (
	InKernel    Where = "kernel"
	InUserspace Where = "userspace"
	Inactive    Where = "inactive"
)

// Placement records where one rule went and why.
type Placement struct {
	RuleID string
	Where  Where
	Reason string // why not in the kernel (empty when it is)
}

// Result is one compilation.
type Result struct {
	Kernel     enforce.Verdicts
	Active     []rules.Compiled // every active rule, highest precedence first (what the helper evaluates)
	Placements []Placement
	KernelIDs  map[uint32]string // kernel rule number -> rule ID, for events and counters
	// Paths lists, per executable identity, the rule paths that name it. The helper matches path rules by
	// identity: a path reported from another mount namespace (a bind mount over /usr/bin/firefox, say) must
	// not borrow firefox's rules, and a rule naming a symlink must match the program it points to.
	Paths map[identity.Executable][]string
	// Vias names, per script identity (identity.ViaIdentity), the script path of the via rules that name it:
	// matched by identity too, for the same reasons.
	Vias map[identity.Executable]string
	// Packaged names the Flatpak app or snap of each executable that a packaged rule resolved to, for the
	// rules the helper evaluates. (ostree hard-links identical files: two apps' byte-identical executable is
	// one file to the kernel, and takes the first app's name.)
	Packaged map[identity.Executable]PackagedName
	// AppImages names, per AppImage identity (identity.AppImageOf), the path of the AppImage rules that name
	// it, so the rules the helper evaluates match it by identity too.
	AppImages map[identity.Executable]string
	// Names are the host, domain and wildcard rules whose learned addresses the helper may install in the
	// kernel, highest precedence first.
	Names []NameRule
}

// NameRule is a rule about names (host, domain, wildcard or a list of them) whose addresses, once learned from DNS, become kernel entries in its scope.
type NameRule struct {
	Rule     *rules.Compiled
	Scope    enforce.Scope
	Ports    []uint16 // 0: any port
	Protos   []enforce.Protocol
	Verdict  enforce.Verdict
	KernelID uint32
	// Blocked names a rule of higher precedence, evaluated in userspace, that could also match this rule's
	// attempts for reasons other than names: the kernel must keep asking, so no address is installed.
	Blocked string
}

// Stat resolves an executable path to its identity.
type Stat func(path string) (identity.Executable, error)

// PackagedExe is one executable file of a packaged application: a file of a Flatpak app's deployment, of a
// snap's mounted revision.
type PackagedExe struct {
	Path string
	UID  uint32 // identity.AnyUID for a system-wide installation; else the user whose own installation holds it
}

// Packaged lists the executables of a packaged application (kind rules.AppFlatpak or rules.AppSnap; value
// its ID or name). Its processes are known by these files' identities, like any program's: a sandbox's
// metadata (/.flatpak-info, a scope's name) is never consulted, since any program can fake it.
type Packaged func(kind rules.AppKind, value string) []PackagedExe

// PackagedName is the packaged application an executable identity belongs to.
type PackagedName struct {
	Kind  rules.AppKind
	Value string
}

// Options are a compilation's inputs beyond the rules and the time.
type Options struct {
	Stat Stat
	// Resting holds more rules inactive: rule ID -> why (an executable that changed since the rule was made).
	Resting map[string]string
	// Packaged resolves Flatpak and snap applications to their executables; nil: their rules match nothing.
	Packaged Packaged
	// ListAddrs gives the addresses of a list that holds addresses only (the built-in "list:resolvers"), as
	// single-address prefixes; ok false for any other list. Such a list's rules compile to one kernel entry per
	// address (none when the list is empty), and are compiled again when the list changes.
	ListAddrs func(list string) (addrs []netip.Prefix, ok bool)
}

type candidate struct {
	c       rules.Compiled
	scope   enforce.Scope
	scopeOK bool   // the application (and owner) has a kernel scope
	missing bool   // the rule names an executable path that does not exist now
	reason  string // non-empty: cannot go into the kernel
	// addrList: a rule on an address-only list (Options.ListAddrs), whose kernel entries are addrs.
	addrList bool
	addrs    []netip.Prefix
}

// userspaceRule is a rule the helper evaluates. When its application has a kernel scope, an ASK region in that
// scope covers every attempt it could match, so less specific scopes' kernel verdicts cannot pre-empt it.
type userspaceRule struct {
	c      *rules.Compiled
	scope  enforce.Scope
	carved bool
}

// scopeRank is the kernel's lookup order of scopes: lower is consulted first.
func scopeRank(s enforce.Scope) int {
	rank := 0
	if s.App.IsAny() {
		rank += 2
	}
	if s.UID == identity.AnyUID {
		rank++
	}
	return rank
}

// Compile places rules. now decides which timed rules are still active.
func Compile(rs []rules.Rule, now time.Time, stat Stat) (Result, error) {
	return CompileWith(rs, now, stat, nil)
}

// CompileWith is Compile with more rules held inactive: resting maps rule IDs to why (an executable that
// changed since the rule was made, say).
func CompileWith(rs []rules.Rule, now time.Time, stat Stat, resting map[string]string) (Result, error) {
	return CompileOptions(rs, now, Options{Stat: stat, Resting: resting})
}

// CompileOptions places rules with every input given.
func CompileOptions(rs []rules.Rule, now time.Time, o Options) (Result, error) {
	stat := o.Stat
	res := Result{
		Kernel:    enforce.Verdicts{Defaults: map[enforce.Scope]enforce.Ruling{}, Destinations: map[enforce.Destination]enforce.Ruling{}},
		KernelIDs: map[uint32]string{},
		Paths:     map[identity.Executable][]string{},
		Vias:      map[identity.Executable]string{},
		Packaged:  map[identity.Executable]PackagedName{},
		AppImages: map[identity.Executable]string{},
	}
	var cands []candidate
	for _, r := range rs {
		c, err := rules.Compile(r)
		if err != nil {
			return Result{}, fmt.Errorf("compile rule %q: %w", r.ID, err)
		}
		why := inactive(r, now)
		if why == "" {
			why = o.Resting[r.ID]
		}
		if why != "" {
			res.Placements = append(res.Placements, Placement{RuleID: r.ID, Where: Inactive, Reason: why})
			continue
		}
		if c.AppKind == rules.AppFlatpak || c.AppKind == rules.AppSnap {
			cands = append(cands, packagedCandidates(c, o, &res)...)
			continue
		}
		cd := candidate{c: c}
		cd.scope, cd.reason = kernelScope(c, stat)
		if c.AppKind == rules.AppPath && cd.reason == "" && !slices.Contains(res.Paths[cd.scope.App], c.AppValue) {
			res.Paths[cd.scope.App] = append(res.Paths[cd.scope.App], c.AppValue)
		}
		if c.Rule.Via != "" && cd.reason == "" {
			res.Vias[cd.scope.App] = c.Rule.Via
		}
		if c.AppKind == rules.AppImage && cd.reason == "" {
			if _, taken := res.AppImages[cd.scope.App]; !taken {
				res.AppImages[cd.scope.App] = c.AppValue
			}
		}
		cd.scopeOK = cd.reason == ""
		cd.missing = !cd.scopeOK && (c.AppKind == rules.AppPath || c.AppKind == rules.AppImage)
		if cd.reason == "" {
			cd.reason = kernelReason(c)
			if c.RemoteKind == rules.RemoteList && o.ListAddrs != nil {
				if addrs, ok := o.ListAddrs(c.Name); ok {
					cd.addrList, cd.addrs = true, addrs
					cd.reason = addrListReason(c, addrs)
				}
			}
		}
		cands = append(cands, cd)
	}
	sort.SliceStable(cands, func(i, j int) bool { return rules.Compare(&cands[i].c, &cands[j].c) < 0 })

	var userspace []userspaceRule
	nextID := uint32(1)
	for i := range cands {
		cd := &cands[i]
		if i == 0 || cands[i-1].c.Rule.ID != cd.c.Rule.ID {
			// A packaged app's rule is one candidate per executable, adjacent after the stable sort.
			res.Active = append(res.Active, cd.c)
		}
		if cd.reason == "" {
			for _, u := range userspace {
				if !overlaps(u.c, &cd.c) || (u.carved && scopeRank(u.scope) < scopeRank(cd.scope)) {
					continue
				}
				cd.reason = fmt.Sprintf("rule %q takes precedence and is evaluated in userspace", u.c.Rule.ID)
				break
			}
		}
		if cd.reason != "" {
			u := userspaceRule{c: &cd.c, scope: cd.scope}
			switch {
			case cd.scopeOK:
				installAsk(&res.Kernel, cd)
				u.carved = true
				if nr, ok := nameRule(cd, userspace, nextID); ok {
					res.KernelIDs[nextID] = cd.c.Rule.ID
					nextID++
					res.Names = append(res.Names, nr)
				}
			case cd.c.Rule.Owner != nil && !cd.missing:
				// A user's rule for a packaged app: the kernel cannot tell the app apart, but it can tell the
				// user. Asking for that user's attempts in the region keeps everyone else's rules in the kernel.
				owned := *cd
				owned.scope = enforce.Scope{App: identity.Any, UID: *cd.c.Rule.Owner}
				installAsk(&res.Kernel, &owned)
				u.scope, u.carved = owned.scope, true
			}
			// A rule for an executable that does not exist matches no process's kernel identity; it waits
			// for the file (the daemon recompiles periodically) without holding other rules back.
			if !cd.missing {
				userspace = append(userspace, u)
			}
			res.Placements = append(res.Placements, Placement{RuleID: cd.c.Rule.ID, Where: InUserspace, Reason: cd.reason})
			continue
		}
		if n := entriesOf(cd); len(res.Kernel.Destinations)+n > MaxKernelDestinations {
			cd.reason = fmt.Sprintf("the kernel's rule table holds %d entries; this rule needs %d more", MaxKernelDestinations, n)
			userspace = append(userspace, userspaceRule{c: &cd.c, scope: cd.scope})
			res.Placements = append(res.Placements, Placement{RuleID: cd.c.Rule.ID, Where: InUserspace, Reason: cd.reason})
			continue
		}
		id := nextID
		nextID++
		res.KernelIDs[id] = cd.c.Rule.ID
		install(&res.Kernel, cd, enforce.Ruling{Verdict: verdictOf(cd.c), RuleID: id})
		res.Placements = append(res.Placements, Placement{RuleID: cd.c.Rule.ID, Where: InKernel})
	}
	res.Placements = mergePlacements(res.Placements)
	return res, nil
}

// packagedCandidates is a Flatpak or snap rule as one candidate per executable of the app: each is a kernel
// scope like a path rule's. A user's own installation counts only for that user: another user's rule (or a
// rule for everyone) never reaches into files that user could write.
func packagedCandidates(c rules.Compiled, o Options, res *Result) []candidate {
	var exes []PackagedExe
	if o.Packaged != nil {
		exes = o.Packaged(c.AppKind, c.AppValue)
	}
	var out []candidate
	seen := map[enforce.Scope]bool{}
	for _, pe := range exes {
		exe, err := o.Stat(pe.Path)
		if err != nil {
			continue
		}
		s := enforce.Scope{App: exe, UID: identity.AnyUID}
		switch {
		case c.Rule.Owner != nil && pe.UID != identity.AnyUID && pe.UID != *c.Rule.Owner:
			continue
		case c.Rule.Owner != nil:
			s.UID = *c.Rule.Owner
		case pe.UID != identity.AnyUID:
			s.UID = pe.UID
		}
		if seen[s] {
			continue // a file hard-linked twice into one deployment (ostree shares identical files)
		}
		seen[s] = true
		if _, taken := res.Packaged[exe]; !taken {
			res.Packaged[exe] = PackagedName{Kind: c.AppKind, Value: c.AppValue}
		}
		out = append(out, candidate{c: c, scope: s, scopeOK: true, reason: kernelReason(c)})
	}
	if len(out) == 0 {
		// Not installed (now): it matches no process, and holds no other rule back. An attempt from a newly
		// installed app's files makes the helper compile again (helper/daemon).
		return []candidate{{c: c, missing: true, reason: "no installed executables of " + c.Rule.Application + " found"}}
	}
	return out
}

// mergePlacements reports each rule once: a packaged app's rule is in the kernel when every one of its
// executables' entries is.
func mergePlacements(ps []Placement) []Placement {
	at := map[string]int{}
	out := ps[:0]
	for _, p := range ps {
		i, dup := at[p.RuleID]
		if !dup {
			at[p.RuleID] = len(out)
			out = append(out, p)
			continue
		}
		if out[i].Where == InKernel && p.Where != InKernel {
			out[i] = p
		}
	}
	return out
}

func inactive(r rules.Rule, now time.Time) string {
	switch {
	case !r.Enabled:
		return "disabled"
	case r.Duration == "until-time" && !now.Before(r.Until):
		return "expired " + r.Until.Format(time.RFC3339)
	case r.Duration == rules.DurationOnce:
		return "applies to one connection only"
	}
	return ""
}

// kernelScope resolves the rule's application and owner to a kernel scope.
func kernelScope(c rules.Compiled, stat Stat) (enforce.Scope, string) {
	s := enforce.Scope{App: identity.Any, UID: identity.AnyUID}
	if c.Rule.Owner != nil {
		s.UID = *c.Rule.Owner
	}
	switch c.AppKind {
	case rules.AppAny:
	case rules.AppPath:
		exe, err := stat(c.AppValue)
		if err != nil {
			return s, fmt.Sprintf("executable not found (%v); matched by path in userspace", err)
		}
		s.App = exe
		if c.Rule.Via != "" {
			// The kernel knows an interpreter's process by (interpreter, script): see shared/identity.
			script, err := stat(c.Rule.Via)
			if err != nil {
				return s, fmt.Sprintf("script not found (%v); matched by path in userspace", err)
			}
			s.App = identity.ViaIdentity(exe, script)
		}
	case rules.AppImage:
		// The kernel knows an AppImage's processes by the AppImage file: see shared/identity.
		file, err := stat(c.AppValue)
		if err != nil {
			return s, fmt.Sprintf("AppImage not found (%v); matched by path in userspace", err)
		}
		s.App = identity.AppImageOf(file)
	default:
		return s, "unknown application kind"
	}
	return s, ""
}

// kernelReason says why the rule's remote, port or protocol cannot be a kernel entry ("" when they can).
func kernelReason(c rules.Compiled) string {
	switch {
	case c.Rule.Direction != "" && c.Rule.Direction != "outgoing":
		return "only outgoing connections are enforced"
	}
	switch c.RemoteKind {
	case rules.RemoteAny, rules.RemoteIP, rules.RemoteCIDR:
	default:
		return "names are matched in userspace until DNS attribution installs their addresses"
	}
	if c.RemoteKind != rules.RemoteAny && c.Prefix.Addr().Is6() && c.Prefix.Contains(netip.MustParseAddr("::ffff:0.0.0.0")) {
		// The kernel keeps IPv4 addresses IPv4-mapped: such a network would also match IPv4 there.
		return "an IPv6 network spanning the IPv4-mapped range"
	}
	if c.PortLo != 0 && int(c.PortHi)-int(c.PortLo)+1 > MaxExpandedPorts {
		return fmt.Sprintf("port range wider than %d ports", MaxExpandedPorts)
	}
	return ""
}

func verdictOf(c rules.Compiled) enforce.Verdict {
	if c.Rule.Action == "deny" {
		return enforce.Deny
	}
	return enforce.Allow
}

func protoOf(p string) enforce.Protocol {
	switch p {
	case "tcp":
		return enforce.TCP
	case "udp":
		return enforce.UDP
	}
	return enforce.AnyProtocol
}

// addrListReason is kernelReason for a rule on an address-only list: its other fields, and its addresses.
func addrListReason(c rules.Compiled, addrs []netip.Prefix) string {
	other := c
	other.RemoteKind = rules.RemoteAny
	if why := kernelReason(other); why != "" {
		return why
	}
	mapped := netip.MustParseAddr("::ffff:0.0.0.0")
	for _, p := range addrs {
		if !p.IsValid() || (p.Addr().Is6() && p.Contains(mapped)) {
			return fmt.Sprintf("list address %v cannot be a kernel entry", p)
		}
	}
	return ""
}

// entriesOf is how many destination entries a kernel-capable rule compiles to.
func entriesOf(cd *candidate) int {
	c := &cd.c
	if c.RemoteKind == rules.RemoteAny && c.PortLo == 0 && c.Proto == "any" {
		return 0 // a scope default
	}
	n := 1
	if cd.addrList {
		n = len(cd.addrs)
	}
	if c.PortLo != 0 {
		n = int(c.PortHi) - int(c.PortLo) + 1
	}
	if c.Proto == "any" {
		n *= 2
	}
	return n
}

// nameRule describes a host, domain or wildcard rule for installing learned addresses, if it is one whose
// remote is the only thing the kernel cannot match.
func nameRule(cd *candidate, higher []userspaceRule, id uint32) (NameRule, bool) {
	switch cd.c.RemoteKind {
	case rules.RemoteHost, rules.RemoteDomain, rules.RemoteWildcard, rules.RemoteList:
	default:
		return NameRule{}, false
	}
	if cd.c.Rule.Direction != "" && cd.c.Rule.Direction != rules.DirectionOutgoing {
		return NameRule{}, false
	}
	if cd.c.PortLo != 0 && int(cd.c.PortHi)-int(cd.c.PortLo)+1 > MaxExpandedPorts {
		return NameRule{}, false
	}
	nr := NameRule{Rule: &cd.c, Scope: cd.scope, Verdict: verdictOf(cd.c), KernelID: id}
	if cd.c.PortLo == 0 {
		nr.Ports = []uint16{0}
	} else {
		for p := int(cd.c.PortLo); p <= int(cd.c.PortHi); p++ {
			nr.Ports = append(nr.Ports, uint16(p))
		}
	}
	if cd.c.Proto == "any" {
		nr.Protos = []enforce.Protocol{enforce.TCP, enforce.UDP}
	} else {
		nr.Protos = []enforce.Protocol{protoOf(cd.c.Proto)}
	}
	for _, u := range higher {
		switch u.c.RemoteKind {
		case rules.RemoteHost, rules.RemoteDomain, rules.RemoteWildcard, rules.RemoteList:
			continue // decided by the names themselves: the helper checks them per address
		}
		if overlaps(u.c, &cd.c) {
			nr.Blocked = u.c.Rule.ID
			break
		}
	}
	return nr, true
}

// installAsk covers every attempt a userspace rule could match, in its own scope, with ASK entries: names may
// resolve to any address, and port ranges too wide to expand are covered as any port.
func installAsk(v *enforce.Verdicts, cd *candidate) {
	region := *cd
	switch cd.c.RemoteKind {
	case rules.RemoteIP, rules.RemoteCIDR:
	default:
		region.c.RemoteKind = rules.RemoteAny
	}
	if region.c.PortLo != 0 && int(region.c.PortHi)-int(region.c.PortLo)+1 > MaxExpandedPorts {
		region.c.PortLo, region.c.PortHi = 0, 0
	}
	install(v, &region, enforce.Ruling{Verdict: enforce.Ask})
}

// install adds a kernel-capable rule's entries, leaving entries a higher-precedence rule already owns.
func install(v *enforce.Verdicts, cd *candidate, r enforce.Ruling) {
	c := cd.c
	if cd.addrList {
		installAddrList(v, cd, r)
		return
	}
	if c.RemoteKind == rules.RemoteAny && c.PortLo == 0 && c.Proto == "any" {
		if _, taken := v.Defaults[cd.scope]; !taken {
			v.Defaults[cd.scope] = r
		}
		return
	}
	prefix := netip.MustParsePrefix("::/0") // any address: IPv4 is kept IPv4-mapped, so this covers both
	if c.RemoteKind != rules.RemoteAny {
		prefix = c.Prefix
	}
	ports, protos := portsProtos(c)
	for _, port := range ports {
		for _, proto := range protos {
			d := enforce.Destination{Scope: cd.scope, Prefix: prefix, Port: port, Proto: proto}
			if _, taken := v.Destinations[d]; !taken {
				v.Destinations[d] = r
			}
		}
	}
}

// overlaps reports whether some attempt could match both u and k.
func overlaps(u, k *rules.Compiled) bool {
	if u.AppKind != rules.AppAny && k.AppKind != rules.AppAny {
		// Different values of one kind name different applications. An executable path and a packaged
		// identity are taken as different too: a sandboxed app's processes run its own files, which host path
		// rules (resolved to host inodes) do not name.
		if u.AppKind != k.AppKind || u.AppValue != k.AppValue || u.Rule.Via != k.Rule.Via {
			return false
		}
	}
	if u.Rule.Owner != nil && k.Rule.Owner != nil && *u.Rule.Owner != *k.Rule.Owner {
		return false
	}
	if u.Proto != "any" && k.Proto != "any" && u.Proto != k.Proto {
		return false
	}
	if u.PortLo != 0 && k.PortLo != 0 && (u.PortHi < k.PortLo || k.PortHi < u.PortLo) {
		return false
	}
	uIP := u.RemoteKind == rules.RemoteIP || u.RemoteKind == rules.RemoteCIDR
	kIP := k.RemoteKind == rules.RemoteIP || k.RemoteKind == rules.RemoteCIDR
	if uIP && kIP && !u.Prefix.Overlaps(k.Prefix) {
		return false
	}
	return true
}

// portsProtos are the ports (0: any) and protocols a rule's kernel entries are made for.
func portsProtos(c rules.Compiled) ([]uint16, []enforce.Protocol) {
	var ports []uint16
	if c.PortLo == 0 {
		ports = []uint16{0}
	} else {
		for p := int(c.PortLo); p <= int(c.PortHi); p++ {
			ports = append(ports, uint16(p))
		}
	}
	if c.Proto == "any" {
		return ports, []enforce.Protocol{enforce.TCP, enforce.UDP}
	}
	return ports, []enforce.Protocol{protoOf(c.Proto)}
}

// installAddrList adds the entries of a rule on an address-only list: one per address, port and protocol. The
// kernel takes the longest prefix first, while precedence puts a list below every address and network rule: an
// address that an entry of a higher-precedence rule already covers (a network rule's, say a deny of 10.0.0.0/8)
// gets no entry, so that rule keeps deciding it, as it does in userspace.
func installAddrList(v *enforce.Verdicts, cd *candidate, r enforce.Ruling) {
	ports, protos := portsProtos(cd.c)
	for _, p := range cd.addrs {
		for _, port := range ports {
			for _, proto := range protos {
				d := enforce.Destination{Scope: cd.scope, Prefix: p, Port: port, Proto: proto}
				if _, taken := v.Destinations[d]; taken || covered(v, d) {
					continue
				}
				v.Destinations[d] = r
			}
		}
	}
}

// covered reports whether an entry already in v (from a rule of higher precedence) of dst's scope and protocol
// covers dst's address and port. Ask entries count too: they stand for a higher rule the helper evaluates.
func covered(v *enforce.Verdicts, dst enforce.Destination) bool {
	want := as128(dst.Prefix)
	for d := range v.Destinations {
		if d.Scope != dst.Scope || d.Proto != dst.Proto || (d.Port != 0 && d.Port != dst.Port) {
			continue
		}
		if p := as128(d.Prefix); p.Bits() <= want.Bits() && p.Contains(want.Addr()) {
			return true
		}
	}
	return false
}

// as128 is p on the kernel's 128-bit form (IPv4 IPv4-mapped): "::/0" covers IPv4 there.
func as128(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4() {
		return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
	}
	return p
}
