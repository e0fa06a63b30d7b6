package rules

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"time"
)

// OpenSnitch keeps one rule per JSON file in a directory (/etc/opensnitchd/rules):
//
//	{"created": "…", "updated": "…", "name": "000-allow-dns", "description": "…", "enabled": true,
//	 "precedence": false, "nolog": false, "action": "allow"|"deny"|"reject", "duration": "always"|"until restart"|"30m"|…,
//	 "operator": {"type": "simple"|"regexp"|"network"|"list"|"lists", "operand": "process.path"|"dest.host"|…,
//	              "sensitive": false, "data": "…", "list": [operators, ANDed] }}
//
// Older versions stored a "list" operator's members as a JSON string in "data" instead of in "list"; both
// forms are read. Its daemon sorts the rules by name and takes the first matching rule that is a deny or
// reject or has "precedence"; a matching allow without precedence is remembered and decides only when no such
// rule matches further on. Comparisons are case-insensitive unless "sensitive" is set; regular expressions are
// Go's, unanchored, matched against the (lower-cased) value. "lists" operators name a directory of list files:
// lists.domains (exact host names), lists.ips (addresses), lists.nets (networks), lists.domains_regexp.

// osOperator is an OpenSnitch rule condition. Type "list" ANDs the conditions in List.
type osOperator struct {
	Type      string       `json:"type"`
	Operand   string       `json:"operand"`
	Sensitive bool         `json:"sensitive"`
	Data      string       `json:"data"`
	List      []osOperator `json:"list"`
}

type osRule struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Enabled     bool       `json:"enabled"`
	Precedence  bool       `json:"precedence"`
	Action      string     `json:"action"`
	Duration    string     `json:"duration"`
	Operator    osOperator `json:"operator"`
}

var osTopKeys = map[string]bool{
	"created": true, "updated": true, "name": true, "description": true, "enabled": true, "precedence": true,
	"nolog": true, "action": true, "duration": true, "operator": true,
}

// maxOperatorDepth bounds nested "list" operators; real rules nest one level.
const maxOperatorDepth = 16

// maxAlternatives bounds how many strings a regular expression may stand for to be imported as alternatives.
const maxAlternatives = 256

// maxOrderRules bounds the rules the ordering step may add; beyond it the set is refused.
const maxOrderRules = 20000

// SourceFile is one file given to an import.
type SourceFile struct {
	Name string // as the user named it (for messages)
	Data []byte
}

// ListDir is an OpenSnitch list directory that "lists" operators name, with its files.
type ListDir struct {
	Path  string // as the rules name it ("/etc/opensnitchd/blocklists/ads")
	Files []SourceFile
}

// ImportOpenSnitch converts one OpenSnitch rule file; see ImportOpenSnitchSet.
func ImportOpenSnitch(name string, data []byte, now time.Time) ([]Rule, ImportReport, error) {
	res, err := ImportOpenSnitchSet([]SourceFile{{Name: name, Data: data}}, nil, ImportOptions{Now: now})
	if err != nil {
		return nil, ImportReport{}, err
	}
	return res.Rules, res.Report, nil
}

// osAtom is one conjunctive Tattle rule standing for (part of) an OpenSnitch rule, with the place in
// OpenSnitch's order of the rule it stands for.
type osAtom struct {
	rule   Rule
	c      Compiled
	pos    int  // position of its source rule in name order
	strong bool // deny/reject or precedence: decides as soon as it matches
	src    int  // index of the source rule
	fixer  bool // added by the ordering step
	dead   bool
}

// osSource is one parsed rule with where it came from.
type osSource struct {
	file  string
	where string
	rule  osRule
	key   string
	atoms []osAtom
	// why the rule cannot be imported exactly ("" when it can)
	why string
	// invalid rules are not loaded by OpenSnitch either, so they take no part in its decisions
	invalid bool
}

// ImportOpenSnitchSet converts a set of OpenSnitch rule files (a rules directory) into Tattle rules that
// decide every flow as OpenSnitch decides it (see the package comment of this file for OpenSnitch's
// order), or refuses the set and says why. Tattle ranks rules by specificity, so where OpenSnitch's order
// and Tattle's precedence disagree on flows two rules both match, the importer adds the rule for exactly
// those flows with the action OpenSnitch takes (it ranks above both in Tattle), drops rules that OpenSnitch
// never lets decide, and refuses the set when such a rule cannot be written (an address network and a host
// name at once, say).
//
// Rules with a condition Tattle cannot express exactly (process.command, process.env.*, process.parent.*,
// process.hash.*, source.*, iface.*, unanchored or open-ended regular expressions, lists.domains_regexp) are
// reported; if one of them is enabled the set is refused, since leaving it out would change what OpenSnitch
// decides. Invalid regular expressions are refused as invalid: OpenSnitch does not load those rules either.
// Disabled rules are imported disabled. The error is for files that are not OpenSnitch rules; it names the
// file, line and column.
func ImportOpenSnitchSet(files []SourceFile, dirs []ListDir, opts ImportOptions) (*ImportResult, error) {
	t := newTally()
	t.files = len(files)
	now := opts.Now.Round(0)
	// OpenSnitch loads the files in name order; a later file with the same rule name replaces the earlier.
	files = append([]SourceFile(nil), files...)
	sort.SliceStable(files, func(i, j int) bool { return filepath.Base(files[i].Name) < filepath.Base(files[j].Name) })
	byName := map[string]int{}
	var srcs []*osSource
	for _, f := range files {
		s, err := parseOSFile(f, t)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		if j, dup := byName[s.rule.Name]; dup {
			t.note(srcs[j].key, outRefused, srcs[j].where, fmt.Sprintf("another file defines a rule of the same name, which OpenSnitch loads instead (%s)", s.where))
			srcs[j].why, srcs[j].invalid = "replaced", true
			srcs[j] = s
			continue
		}
		byName[s.rule.Name] = len(srcs)
		srcs = append(srcs, s)
	}
	// The daemon's order: rule names, sorted as Go sorts strings.
	sort.SliceStable(srcs, func(i, j int) bool { return srcs[i].rule.Name < srcs[j].rule.Name })

	lists := &osLists{dirs: dirs, made: map[string]string{}}
	var blocking []string
	for i, s := range srcs {
		if s.why != "" {
			continue
		}
		s.atoms, s.why, s.invalid = convertOS(s, i, lists, opts, now)
		switch {
		case s.invalid:
			t.note(s.key, outRefused, s.where, s.why)
		case s.why != "":
			t.note(s.key, outRefused, s.where, s.why)
			if s.rule.Enabled {
				blocking = append(blocking, fmt.Sprintf("%s (%s)", s.where, s.why))
			}
		case len(s.atoms) == 0:
			t.info(fmt.Sprintf("rule %q at %s can never match a TCP or UDP connection in OpenSnitch; nothing to import", short(s.rule.Name), s.where))
		}
	}
	refuseAll := func(why string) *ImportResult {
		for _, s := range srcs {
			t.note(s.key, outRefused, s.where, "the set is not imported: "+why)
		}
		return &ImportResult{Report: t.report(0, 0)}
	}
	if len(blocking) > 0 {
		return refuseAll(fmt.Sprintf("%d enabled %s cannot be imported exactly, and leaving %s out would change what OpenSnitch decides; first: %s",
			len(blocking), plural(len(blocking), "rule", "rules"), plural(len(blocking), "it", "them"), blocking[0])), nil
	}

	var active []osAtom
	for _, s := range srcs {
		if s.rule.Enabled && s.why == "" {
			active = append(active, s.atoms...)
		}
	}
	ordered, added, dropped, why := orderOS(active, srcs)
	if why != "" {
		return refuseAll(why), nil
	}
	if added > 0 {
		t.info(fmt.Sprintf("%d %s added so that Tattle's precedence decides as OpenSnitch's name order does", added, plural(added, "rule was", "rules were")))
	}
	if dropped > 0 {
		t.info(fmt.Sprintf("%d %s left out: OpenSnitch never lets them decide (a rule before them covers them)", dropped, plural(dropped, "rule is", "rules are")))
	}
	res := &ImportResult{}
	ids := map[string]bool{}
	emit := func(r Rule) {
		base := r.ID
		for k := 2; ids[r.ID]; k++ {
			r.ID = fmt.Sprintf("%s-%d", base, k)
		}
		ids[r.ID] = true
		res.Rules = append(res.Rules, r)
	}
	for _, a := range ordered {
		emit(a.rule)
	}
	for _, s := range srcs {
		if !s.rule.Enabled && s.why == "" {
			for _, a := range s.atoms {
				emit(a.rule)
			}
			if len(s.atoms) > 0 {
				t.info("disabled OpenSnitch rules are imported disabled; enabled later, they rank by Tattle's precedence, not OpenSnitch's order")
			}
		}
	}
	for _, l := range lists.out {
		res.Lists = append(res.Lists, l)
	}
	res.Report = t.report(len(res.Rules), len(res.Lists))
	return res, nil
}

// parseOSFile reads one rule file. Broken JSON is an error; a file that is JSON but not a rule is reported.
func parseOSFile(f SourceFile, t *tally) (*osSource, error) {
	top, err := decodeTop(f.Name, f.Data)
	if err != nil {
		return nil, err
	}
	data := trimBOM(f.Data)
	where := lineCol(f.Name, data, 0)
	s := &osSource{file: f.Name, where: where, key: "os:" + f.Name}
	t.rule(s.key)
	if _, ok := top["operator"]; !ok {
		return nil, &FieldError{File: f.Name, Index: -1, Field: "operator", Msg: "is missing; this is not an OpenSnitch rule"}
	}
	if err := json.Unmarshal(data, &s.rule); err != nil {
		return nil, &FieldError{File: f.Name, Index: -1, Msg: "is not an OpenSnitch rule: a field has the wrong type", Err: err}
	}
	for _, key := range sortedKeys(top) {
		if !osTopKeys[key] {
			t.info(fmt.Sprintf("key %q is not part of the OpenSnitch format; ignored (%s)", short(key), where))
		}
	}
	return s, nil
}

// osConds is what the conditions of one rule add up to: per dimension the alternatives (nil: no condition).
type osConds struct {
	apps, owners, remotes, protos []string
	ports                         []uint16
	portsSet                      bool
}

// convertOS turns source rule s (at position pos) into atoms. why says why it cannot be imported exactly;
// invalid marks rules OpenSnitch itself does not load.
func convertOS(s *osSource, pos int, lists *osLists, opts ImportOptions, now time.Time) ([]osAtom, string, bool) {
	r := &s.rule
	base := Rule{ID: osID(r.Name, s.file), Enabled: r.Enabled, Direction: DirectionOutgoing, Created: now, Modified: now}
	strong := r.Precedence
	switch strings.ToLower(r.Action) {
	case ActionAllow:
		base.Action = ActionAllow
	case ActionDeny, "reject":
		base.Action = ActionDeny
		strong = true
	default:
		return nil, fmt.Sprintf("its action %q is not allow, deny or reject", short(r.Action)), true
	}
	switch d := strings.ToLower(strings.TrimSpace(r.Duration)); d {
	case "always", "":
		base.Duration = DurationForever
	case "until restart":
		base.Duration = DurationUntilRestart
	case "once":
		return nil, "it is a rule for one connection (duration \"once\"), which OpenSnitch keeps in memory only", false
	default:
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return nil, fmt.Sprintf("its duration %q is not understood", short(r.Duration)), true
		}
		base.Duration, base.Until = DurationUntilTime, now.Add(dur)
	}
	base.Note = cleanNote(r.Description)
	if base.Note == "" {
		base.Note = cleanNote("Imported from OpenSnitch rule " + strconv.Quote(short(r.Name)))
	}
	var c osConds
	if why, invalid := c.collect(&r.Operator, 0, lists); why != "" {
		return nil, why, invalid
	}
	if opts.Owner != nil {
		u := strconv.FormatUint(uint64(*opts.Owner), 10)
		if c.owners == nil {
			c.owners = []string{u}
		} else if contains(c.owners, u) {
			c.owners = []string{u}
		} else {
			c.owners = []string{}
		}
	}
	one := func(v []string) []string {
		if v == nil {
			return []string{""}
		}
		return v
	}
	portRanges := []string{Any}
	if c.portsSet {
		portRanges = compressPorts(c.ports)
	}
	var atoms []osAtom
	for _, app := range one(c.apps) {
		for _, owner := range one(c.owners) {
			for _, remote := range one(c.remotes) {
				for _, port := range portRanges {
					for _, proto := range one(c.protos) {
						a := base
						a.Application, a.Remote, a.Port, a.Protocol = Any, Any, port, Any
						if app != "" {
							a.Application = app
						}
						if remote != "" {
							a.Remote = remote
						}
						if owner != "" {
							u, _ := strconv.ParseUint(owner, 10, 32)
							v := uint32(u)
							a.Owner = &v
						}
						if proto != "" {
							// tcp/udp are IPv4 in OpenSnitch, tcp6/udp6 IPv6; Tattle's protocol covers both, so the
							// family is pinned by the remote.
							p, v6 := proto[:3], strings.HasSuffix(proto, "6")
							a.Protocol = p
							pinned, keep, ok := pinFamily(a.Remote, v6)
							if !ok {
								return nil, fmt.Sprintf("it limits protocol %q (one address family) together with the name or list %q, which Tattle cannot express", proto, short(a.Remote)), false
							}
							if !keep {
								continue
							}
							a.Remote = pinned
						}
						if err := a.Validate(); err != nil {
							return nil, fmt.Sprintf("cannot be stored: %v", err), false
						}
						cc, _ := Compile(a)
						atoms = append(atoms, osAtom{rule: a, c: cc, pos: pos, strong: strong, src: pos})
					}
				}
			}
		}
	}
	if len(atoms) > 1 {
		for k := range atoms {
			atoms[k].rule.ID = fmt.Sprintf("%s-%d", base.ID, k+1)
			atoms[k].c.Rule.ID = atoms[k].rule.ID
		}
	}
	return atoms, "", false
}

// pinFamily limits a remote to one address family: "any" becomes 0.0.0.0/0 or ::/0, an address or network
// of that family stays, one of the other family never matches (keep false). Names and lists cannot be
// limited (ok false).
func pinFamily(remote string, v6 bool) (string, bool, bool) {
	if remote == Any {
		if v6 {
			return "::/0", true, true
		}
		return "0.0.0.0/0", true, true
	}
	spec, msg := parseRemote(remote)
	if msg != "" || spec.kind != RemoteIP && spec.kind != RemoteCIDR {
		return "", false, false
	}
	return remote, spec.prefix.Addr().Is6() == v6, true
}

// compressPorts writes a set of ports as the fewest ranges.
func compressPorts(ports []uint16) []string {
	ps := append([]uint16(nil), ports...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var out []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] <= ps[j]+1 {
			j++
		}
		if ps[i] == ps[j] {
			out = append(out, strconv.Itoa(int(ps[i])))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		}
		i = j + 1
	}
	return out
}

// collect folds op into c. why says what cannot be expressed; invalid is for conditions OpenSnitch itself
// refuses to load.
func (c *osConds) collect(op *osOperator, depth int, lists *osLists) (why string, invalid bool) {
	if depth > maxOperatorDepth {
		return "its conditions are nested too deeply", true
	}
	typ, operand := strings.ToLower(op.Type), op.Operand
	if typ == "list" || operand == "list" {
		members := op.List
		if len(members) == 0 && strings.TrimSpace(op.Data) != "" {
			// The older form: the members as a JSON string in data.
			if err := json.Unmarshal([]byte(op.Data), &members); err != nil {
				return fmt.Sprintf("its operator list is stored in \"data\" but is not a JSON list of operators: %v", err), true
			}
		}
		if len(members) == 0 {
			return "its operator list is empty, so it is not clear what it matches", true
		}
		for i := range members {
			if why, inv := c.collect(&members[i], depth+1, lists); why != "" {
				return why, inv
			}
		}
		return "", false
	}
	if operand == "true" {
		return "", false
	}
	data := op.Data
	var alts []string // the values the condition accepts (lower case when the comparison ignores case)
	switch typ {
	case "simple":
		alts = []string{data}
	case "network":
		if operand != "dest.network" {
			return fmt.Sprintf("it matches %s, which Tattle rules cannot express", short(operand)), false
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(data))
		if err != nil || p.Addr().Zone() != "" {
			return fmt.Sprintf("its network %q is not a network (OpenSnitch does not load it either)", short(data)), true
		}
		return c.addRemotes([]string{prefixRemote(netip.PrefixFrom(p.Addr().Unmap(), unmapBits(p)).Masked())}), false
	case "regexp":
		expr := data
		if !op.Sensitive {
			expr = strings.ToLower(expr)
		}
		if _, err := regexp.Compile(expr); err != nil {
			return fmt.Sprintf("its regular expression %q is invalid (%v); OpenSnitch does not load it either", short(data), err), true
		}
		if operand == "dest.host" {
			if rs, ok := hostPatterns(expr); ok {
				return c.addRemotes(rs), false
			}
		}
		set, ok := finiteLanguage(expr)
		if !ok {
			return fmt.Sprintf("its regular expression %q on %s matches an open-ended set of values, which Tattle cannot express exactly; write host, domain or wildcard rules instead", short(data), short(operand)), false
		}
		alts = set
	case "lists":
		return lists.collect(c, operand, data)
	default:
		return fmt.Sprintf("its condition type %q is not understood", short(op.Type)), true
	}

	switch operand {
	case "process.path":
		var apps []string
		for _, a := range alts {
			if _, _, msg := parseApplication(a); msg == "" && strings.HasPrefix(a, "/") {
				apps = append(apps, a)
			}
			// Anything else is never a process's path: that alternative matches nothing.
		}
		c.apps = intersectStrings(c.apps, apps)
	case "user.id":
		var us []string
		for _, a := range alts {
			if u, err := strconv.ParseUint(a, 10, 32); err == nil && strconv.FormatUint(u, 10) == a && u != uint64(^uint32(0)) {
				us = append(us, a)
			}
		}
		c.owners = intersectStrings(c.owners, us)
	case "dest.port":
		var ps []uint16
		for _, a := range alts {
			if p, err := strconv.ParseUint(a, 10, 16); err == nil && strconv.FormatUint(p, 10) == a && p > 0 {
				ps = append(ps, uint16(p))
			}
		}
		if c.portsSet {
			var both []uint16
			for _, p := range ps {
				for _, q := range c.ports {
					if p == q {
						both = append(both, p)
					}
				}
			}
			ps = both
		}
		c.ports, c.portsSet = ps, true
	case "protocol":
		var ps []string
		for _, a := range alts {
			switch p := strings.ToLower(a); p {
			case "tcp", "udp", "tcp6", "udp6":
				if op.Sensitive && p != a {
					continue
				}
				if len(p) == 3 {
					p += "4"
				}
				ps = append(ps, p)
			}
			// udplite, icmp, …: Tattle sees no such connections, so that alternative matches nothing here.
		}
		c.protos = intersectStrings(c.protos, ps)
	case "dest.ip":
		var rs []string
		for _, a := range alts {
			addr, err := netip.ParseAddr(a)
			// OpenSnitch compares the address as text, so only its canonical spelling ever matches.
			if err == nil && addr.Zone() == "" && strings.EqualFold(addr.String(), a) && (op.Sensitive == false || addr.String() == a) {
				rs = append(rs, addr.Unmap().String())
			}
		}
		return c.addRemotes(rs), false
	case "dest.host":
		var rs []string
		for _, a := range alts {
			if op.Sensitive && strings.ToLower(a) != a {
				continue // names arrive in lower case; an upper-case name never matches case-sensitively
			}
			r, msg := remoteForHost(a, remoteHost)
			if msg != "" || !strings.HasPrefix(r, remoteHost) {
				continue // not a host name: OpenSnitch's name is never that
			}
			rs = append(rs, r)
		}
		return c.addRemotes(rs), false
	case "dest.network":
		return fmt.Sprintf("it compares dest.network as text (%q), which OpenSnitch does not do", short(data)), true
	default:
		switch {
		case strings.HasPrefix(operand, "process.env."):
			return fmt.Sprintf("it matches the environment variable %s, which Tattle rules cannot express", short(strings.TrimPrefix(operand, "process.env."))), false
		case strings.HasPrefix(operand, "process.hash."):
			return "it matches the program's checksum, which Tattle rules cannot express (Tattle identifies programs by file, not hash)", false
		case strings.HasPrefix(operand, "process.parent"):
			return "it matches the parent process, which Tattle rules cannot express", false
		case operand == "process.command":
			return "it matches the command line, which Tattle rules cannot express", false
		}
		return fmt.Sprintf("it matches %s, which Tattle rules cannot express", short(operand)), false
	}
	return "", false
}

// unmapBits is the prefix length of p once an IPv4-mapped address is written as IPv4.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		if b := p.Bits() - 96; b >= 0 {
			return b
		}
		return 0
	}
	return p.Bits()
}

// addRemotes ANDs a remote condition with the ones collected. The message says when the two cannot be
// written as one Tattle remote (a name and an address network at once, say).
func (c *osConds) addRemotes(rs []string) string {
	rs = dedupe(append([]string{}, rs...))
	if c.remotes == nil {
		c.remotes = rs
		return ""
	}
	out := []string{}
	for _, a := range c.remotes {
		for _, b := range rs {
			m, overlap, ok := remoteMeet(mustRemote(a), mustRemote(b))
			if !overlap {
				continue
			}
			if !ok {
				return fmt.Sprintf("it requires the destination to be %q and %q at once, which one Tattle rule cannot express", short(a), short(b))
			}
			out = append(out, m)
		}
	}
	c.remotes = dedupe(out)
	return ""
}

func mustRemote(r string) Compiled {
	c, err := Compile(Rule{ID: "x", Application: Any, Remote: r, Port: Any, Protocol: Any, Action: ActionAllow, Duration: DurationForever})
	if err != nil {
		return Compiled{RemoteKind: RemoteAny, Rule: Rule{Remote: Any}}
	}
	return c
}

func intersectStrings(have, next []string) []string {
	next = dedupe(append([]string{}, next...))
	if have == nil {
		return next
	}
	out := []string{}
	for _, a := range have {
		if contains(next, a) {
			out = append(out, a)
		}
	}
	return out
}

// hostPatterns translates the regular expressions that say "these domains and their subdomains" or "names
// under these domains" into domain: and wildcard: remotes. The expression is already lower case when the
// comparison ignores case.
func hostPatterns(expr string) ([]string, bool) {
	for _, f := range []struct{ prefix, kind string }{
		{`^(.*\.)?`, remoteDomain}, {`^(.+\.)?`, remoteDomain},
		{`^.*\.`, remoteWildcard + "*."}, {`^.+\.`, remoteWildcard + "*."}, {`^(.*\.)`, remoteWildcard + "*."}, {`^(.+\.)`, remoteWildcard + "*."},
	} {
		rest, found := strings.CutPrefix(expr, f.prefix)
		if !found {
			continue
		}
		names, ok := finiteLanguage("^" + rest)
		if !ok {
			return nil, false
		}
		var out []string
		for _, n := range names {
			r := f.kind + n
			if _, msg := parseRemote(r); msg != "" {
				return nil, false
			}
			out = append(out, r)
		}
		return out, true
	}
	return nil, false
}

// finiteLanguage returns every string a fully anchored expression (^…$) matches, when they are few.
func finiteLanguage(expr string) ([]string, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return nil, false
	}
	body := &syntax.Regexp{Op: syntax.OpConcat, Sub: re.Sub[1 : len(re.Sub)-1]}
	set, ok := expand(body)
	if !ok {
		return nil, false
	}
	return dedupe(set), len(set) > 0
}

func expand(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return expand(re.Sub[0])
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				out = append(out, string(r))
				if len(out) > maxAlternatives {
					return nil, false
				}
			}
		}
		return out, true
	case syntax.OpQuest:
		sub, ok := expand(re.Sub[0])
		if !ok {
			return nil, false
		}
		return append([]string{""}, sub...), true
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			sub, ok := expand(s)
			if !ok {
				return nil, false
			}
			out = append(out, sub...)
			if len(out) > maxAlternatives {
				return nil, false
			}
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, s := range re.Sub {
			sub, ok := expand(s)
			if !ok {
				return nil, false
			}
			var next []string
			for _, a := range out {
				for _, b := range sub {
					next = append(next, a+b)
					if len(next) > maxAlternatives {
						return nil, false
					}
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// osLists turns the list directories that rules name into named lists.
type osLists struct {
	dirs []ListDir
	made map[string]string // operand + dir -> list name
	out  []NamedList
}

func (l *osLists) collect(c *osConds, operand, dir string) (string, bool) {
	if strings.TrimSpace(dir) == "" {
		return fmt.Sprintf("its %s operator names no directory (OpenSnitch does not load it either)", short(operand)), true
	}
	key := operand + "\x00" + filepath.Clean(dir)
	if name, ok := l.made[key]; ok {
		return c.addRemotes([]string{remoteList + name}), false
	}
	var d *ListDir
	for i := range l.dirs {
		if filepath.Clean(l.dirs[i].Path) == filepath.Clean(dir) {
			d = &l.dirs[i]
		}
	}
	if operand == "lists.domains_regexp" {
		return fmt.Sprintf("it uses the regular-expression list directory %q, which Tattle lists cannot express", short(dir)), false
	}
	if d == nil {
		return fmt.Sprintf("it uses the list directory %q, which was not given to the import (tattlectl reads it when it exists on this machine)", short(dir)), false
	}
	var entries []string
	exact := false
	for _, f := range d.Files {
		// OpenSnitch reads the directory's non-hidden files whose names have a dot ("*.*").
		if base := filepath.Base(f.Name); strings.HasPrefix(base, ".") || !strings.Contains(base, ".") {
			continue
		}
		for line := range strings.SplitSeq(string(f.Data), "\n") {
			switch operand {
			case "lists.domains":
				// Only hosts-file lines count: "0.0.0.0 name" or "127.0.0.1 name"; the name is the rest of the line,
				// looked up exactly (no subdomains), against the lower-cased name.
				exact = true
				var host string
				switch {
				case len(line) < 9:
					continue
				case strings.HasPrefix(line, "127.0.0.1"):
					host = line[10:]
				case strings.HasPrefix(line, "0.0.0.0"):
					host = line[8:]
				default:
					continue
				}
				host = strings.TrimSpace(host)
				if host == "local" || host == "localhost" || host == "localhost.localdomain" || host == "broadcasthost" {
					continue
				}
				// An entry with upper-case letters or that is no host name never equals a connection's name.
				if _, msg := parseRemote(remoteHost + host); msg == "" && strings.ToLower(host) == host && !strings.HasSuffix(host, ".") {
					entries = append(entries, host)
				}
			case "lists.ips":
				v := strings.TrimSpace(line)
				if v == "" || v[0] == '#' {
					continue
				}
				// Compared as text with the address's canonical spelling.
				if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" && a.String() == v {
					entries = append(entries, a.Unmap().String())
				}
			case "lists.nets":
				v := strings.TrimSpace(line)
				if v == "" || v[0] == '#' {
					continue
				}
				if p, err := netip.ParsePrefix(v); err == nil && p.Addr().Zone() == "" {
					entries = append(entries, netip.PrefixFrom(p.Addr().Unmap(), unmapBits(p)).Masked().String())
				}
			default:
				return fmt.Sprintf("its list operand %q is not understood", short(operand)), true
			}
		}
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	name := listName("os", filepath.Base(dir), strings.TrimPrefix(operand, "lists."), fmt.Sprintf("%08x", h.Sum32()))
	l.made[key] = name
	l.out = append(l.out, NamedList{Name: name, Exact: exact, Entries: dedupe(entries), Source: operand + " " + dir})
	return c.addRemotes([]string{remoteList + name}), false
}

// osID derives a stable id from the rule's name (or file name), adding a hash when the name had to be cut or
// changed so that different names keep different ids.
func osID(ruleName, file string) string {
	src := ruleName
	if src == "" {
		base := filepath.Base(file)
		src = strings.TrimSuffix(base, filepath.Ext(base))
	}
	s := Slug(src, 40)
	if s == "" {
		s = "rule"
	}
	if s != src {
		h := fnv.New32a()
		h.Write([]byte(src))
		s = fmt.Sprintf("%s-%08x", s, h.Sum32())
	}
	return "os-" + s
}

// OpenSnitchListDirs returns the list directories the rule files' "lists" operators name, so that a client
// can send their files with the rules. Files that do not parse are passed over (the import reports them).
func OpenSnitchListDirs(files []SourceFile) []string {
	var out []string
	var walk func(op *osOperator, depth int)
	walk = func(op *osOperator, depth int) {
		if depth > maxOperatorDepth {
			return
		}
		if strings.EqualFold(op.Type, "lists") && strings.TrimSpace(op.Data) != "" {
			out = append(out, op.Data)
		}
		members := op.List
		if len(members) == 0 && (strings.EqualFold(op.Type, "list") || op.Operand == "list") && op.Data != "" {
			json.Unmarshal([]byte(op.Data), &members)
		}
		for i := range members {
			walk(&members[i], depth+1)
		}
	}
	for _, f := range files {
		var r osRule
		if json.Unmarshal(trimBOM(f.Data), &r) == nil {
			walk(&r.Operator, 0)
		}
	}
	sort.Strings(out)
	return dedupe(out)
}
