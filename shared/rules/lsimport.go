package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The keys of a Little Snitch rule. Metadata keys carry no condition: a rule that has them means the same
// without them. Any other key might narrow the rule in a way this importer cannot see, so such a rule is
// imported disabled and flagged.
var (
	lsRuleKeys = map[string]bool{
		"action": true, "process": true, "via": true, "owner": true, "direction": true, "priority": true,
		"disabled": true, "ports": true, "protocol": true, "remote": true, "remote-hosts": true,
		"remote-domains": true, "remote-addresses": true, "notes": true,
	}
	lsMetaKeys = map[string]bool{
		"creationDate": true, "modificationDate": true, "lastUsedDate": true, "uid": true, "help": true, "identifier": true,
	}
	lsTopKeys = map[string]bool{
		"name": true, "description": true, "rules": true, "denied-remote-notes": true, "allowed-remote-notes": true,
		"denied-remote-domains": true, "denied-remote-hosts": true, "denied-remote-addresses": true,
		"allowed-remote-domains": true, "allowed-remote-hosts": true, "allowed-remote-addresses": true,
	}
)

// lsImport converts one rule group.
type lsImport struct {
	file       string
	data       []byte
	pos        *positions
	opts       ImportOptions
	prefix     string // rule id prefix, "ls-<group>"
	group      string // group name for notes
	provenance string
	t          *tally
	rules      []Rule
	lists      []NamedList
	ids        map[string]bool
	threshold  int
}

// ImportLittleSnitch converts a Little Snitch rule group (.lsrules); see ImportLittleSnitchFile. Named
// lists it makes are left out of this form's result (the rules still name them): callers that store
// rules use ImportLittleSnitchFile.
func ImportLittleSnitch(name string, data []byte, now time.Time) ([]Rule, ImportReport, error) {
	res, err := ImportLittleSnitchFile(name, data, ImportOptions{Now: now})
	if err != nil {
		return nil, ImportReport{}, err
	}
	return res.Rules, res.Report, nil
}

// ImportLittleSnitchFile converts a Little Snitch rule group (.lsrules) into Tattle rules and named lists.
//
// Each source rule becomes one Tattle rule per application, remote, port and protocol it names (its
// remotes, ports and protocols are alternatives). Never wider than the source: a rule whose conditions
// can all be kept is imported exactly; a rule for outgoing and incoming connections keeps its outgoing part
// (reported); a rule whose narrowing condition cannot be kept (via, owner "me" in a system import, a macOS
// network category, an unknown key) is imported disabled with the reason in its note (reported); a rule
// that cannot be imported at all (ask, incoming only, ICMP only, an unmapped macOS application) is refused
// (reported). Block list keys and rules with more than ImportOptions.ListThreshold remotes become named
// lists; so do the largest groups of similar rules when the result would exceed MaxRulesPerFile. The error
// is for input that is not a rule group at all; it names the file, line and column.
func ImportLittleSnitchFile(name string, data []byte, opts ImportOptions) (*ImportResult, error) {
	top, err := decodeTop(name, data)
	if err != nil {
		return nil, err
	}
	data = trimBOM(data)
	li := &lsImport{file: name, data: data, pos: newPositions(name, data), opts: opts, t: newTally(), ids: map[string]bool{}, threshold: opts.ListThreshold}
	li.t.files = 1
	if li.threshold <= 0 {
		li.threshold = DefaultListThreshold
	}
	li.opts.Now = opts.Now.Round(0)
	if raw, ok := top["name"]; ok {
		if err := json.Unmarshal(raw, &li.group); err != nil {
			return nil, &FieldError{File: name, Index: -1, Field: "name", Msg: "must be a string", Err: err}
		}
	}
	li.prefix = "ls-" + groupSlug(li.group, name)
	li.provenance = "Imported from Little Snitch"
	if li.group != "" {
		li.provenance = fmt.Sprintf("Imported from Little Snitch rule group %q", short(li.group))
	}
	for _, key := range sortedKeys(top) {
		if !lsTopKeys[key] {
			li.t.info(fmt.Sprintf("top-level key %q is not part of the Little Snitch format; ignored", short(key)))
		}
	}
	if raw, ok := top["rules"]; ok && string(raw) != "null" {
		var rules []json.RawMessage
		if err := json.Unmarshal(raw, &rules); err != nil {
			return nil, &FieldError{File: name, Index: -1, Field: "rules", Msg: "must be a list of rules", Err: err}
		}
		offs := arrayOffsets(data, "rules")
		for i, raw := range rules {
			where := name
			if i < len(offs) {
				where = li.pos.at(offs[i])
			}
			if err := li.rule(i, where, raw); err != nil {
				return nil, err
			}
		}
	}
	for _, action := range []string{ActionDeny, ActionAllow} {
		word := map[string]string{ActionDeny: "denied", ActionAllow: "allowed"}[action]
		var notes string
		if raw, ok := top[word+"-remote-notes"]; ok {
			if json.Unmarshal(raw, &notes) != nil {
				li.t.info(word + "-remote-notes is not a string; ignored")
			}
		}
		note := cleanNote(notes)
		if note == "" {
			note = li.provenance
		}
		for _, kind := range []string{"domains", "hosts", "addresses"} {
			key := word + "-remote-" + kind
			raw, ok := top[key]
			if !ok {
				continue
			}
			entries, ok := stringOrList(raw)
			if !ok {
				li.t.note(key, outRefused, li.pos.at(0), key+" is not a list of strings")
				continue
			}
			offs := arrayOffsets(data, key)
			if err := li.blocklist(key, kind, action, note, entries, offs); err != nil {
				return nil, err
			}
		}
	}
	li.fold()
	res := &ImportResult{Rules: li.rules, Lists: li.lists}
	res.Report = li.t.report(len(li.rules), len(li.lists))
	return res, nil
}

func trimBOM(data []byte) []byte {
	if len(data) >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf {
		return data[3:]
	}
	return data
}

// add keeps a finished rule; the id is made unique within the import.
func (li *lsImport) add(r Rule, key, where string) error {
	if len(li.rules) >= maxImportRules {
		return &FieldError{File: li.file, Index: -1,
			Msg: fmt.Sprintf("would make more than %d rules even with named lists; split the group", maxImportRules)}
	}
	r.Direction = DirectionOutgoing
	r.Created, r.Modified = li.opts.Now, li.opts.Now
	if r.Duration == "" {
		r.Duration = DurationForever
	}
	if li.opts.Owner != nil && r.Owner == nil {
		u := *li.opts.Owner
		r.Owner = &u
	}
	base := r.ID
	for k := 2; li.ids[r.ID]; k++ {
		r.ID = fmt.Sprintf("%s-%d", base, k)
	}
	if err := r.Validate(); err != nil {
		li.t.note(key, outRefused, where, fmt.Sprintf("cannot be stored: %v", err))
		return nil
	}
	li.ids[r.ID] = true
	li.rules = append(li.rules, r)
	return nil
}

// blocklist converts one of the top-level block list keys: "any process, this action, these remotes".
func (li *lsImport) blocklist(key, kind, action, note string, entries []string, offs []int64) error {
	tag := map[string]string{"domains": "d", "hosts": "h", "addresses": "a"}[kind]
	tag = action[:1] + tag // dd, dh, da, ad, ah, aa
	var remotes []string
	for k, e := range entries {
		where := li.pos.at(0)
		if k < len(offs) {
			where = li.pos.at(offs[k])
		}
		ek := fmt.Sprintf("%s#%d", key, k)
		li.t.rule(ek)
		rs, msg := lsRemotes(kind, e)
		if msg != "" {
			li.t.note(ek, outRefused, where, key+": "+msg)
			continue
		}
		remotes = append(remotes, rs...)
	}
	remotes = dedupe(remotes)
	if len(remotes) == 0 {
		return nil
	}
	base := Rule{ID: fmt.Sprintf("%s-%s", li.prefix, tag), Application: Any, Port: Any, Protocol: Any, Action: action,
		Duration: DurationForever, Enabled: true, Note: note}
	if len(remotes) > li.threshold {
		remote := li.makeList(listName(li.prefix, key), kind == "hosts", remotes, key)
		base.Remote = remote
		return li.add(base, key, li.pos.at(0))
	}
	for k, remote := range remotes {
		r := base
		r.ID = fmt.Sprintf("%s-%d", base.ID, k+1)
		r.Remote = remote
		if err := li.add(r, key, li.pos.at(0)); err != nil {
			return err
		}
	}
	return nil
}

// makeList records a named list and returns the remote that names it. Entries are Tattle remotes
// (host:, domain:, addresses, networks).
func (li *lsImport) makeList(name string, exact bool, remotes []string, source string) string {
	for k := 2; li.hasList(name); k++ {
		name = fmt.Sprintf("%s-%d", strings.TrimSuffix(name, fmt.Sprintf("-%d", k-1)), k)
	}
	entries := make([]string, 0, len(remotes))
	for _, r := range remotes {
		entries = append(entries, strings.TrimPrefix(strings.TrimPrefix(r, remoteDomain), remoteHost))
	}
	li.lists = append(li.lists, NamedList{Name: name, Exact: exact, Entries: entries,
		Source: fmt.Sprintf("%s of %s", source, li.file)})
	li.t.info(fmt.Sprintf("%d entries of %s became the named list %q (one rule)", len(entries), source, name))
	return remoteList + name
}

func (li *lsImport) hasList(name string) bool {
	for _, l := range li.lists {
		if l.Name == name {
			return true
		}
	}
	return false
}

// lsRemotes maps one remote entry of a kind ("hosts", "domains", "addresses") to Tattle remotes.
func lsRemotes(kind, e string) ([]string, string) {
	switch kind {
	case "addresses":
		return remotesForAddresses(e)
	case "domains":
		r, msg := remoteForHost(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(e), "*."), "."), remoteDomain)
		if msg != "" {
			return nil, msg
		}
		return []string{r}, ""
	default:
		r, msg := remoteForHost(strings.TrimSpace(e), remoteHost)
		if msg != "" {
			return nil, msg
		}
		return []string{r}, ""
	}
}

// rule converts source rule i (at where). The error is only for an import grown too large.
func (li *lsImport) rule(i int, where string, raw json.RawMessage) error {
	key := fmt.Sprintf("r%d", i)
	li.t.rule(key)
	refuse := func(format string, args ...any) error {
		li.t.note(key, outRefused, where, fmt.Sprintf(format, args...))
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return refuse("a rule is not a JSON object")
	}
	str := func(k string) (string, bool) {
		raw, ok := m[k]
		if !ok {
			return "", true
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	for _, k := range []string{"action", "process", "via", "owner", "direction", "priority", "protocol", "remote", "notes"} {
		if _, ok := str(k); !ok {
			return refuse("%q is not a string", k)
		}
	}
	// lost collects narrowing conditions that cannot be kept: the rule is then imported disabled, flagged.
	var lost []string
	partial := false
	for _, k := range sortedKeys(m) {
		if !lsRuleKeys[k] && !lsMetaKeys[k] {
			lost = append(lost, fmt.Sprintf("key %q", short(k)))
		}
	}

	action, _ := str("action")
	switch strings.ToLower(action) {
	case ActionAllow, ActionDeny:
		action = strings.ToLower(action)
	case "ask", "":
		return refuse("\"ask\" rules need no rule in Tattle, which asks whenever no rule decides")
	default:
		return refuse("the action %q is not allow or deny", short(action))
	}

	process, _ := str("process")
	var apps []string
	switch {
	case process == "":
		return refuse("the rule names no process")
	case strings.EqualFold(process, Any):
		apps = []string{Any}
	case strings.HasPrefix(process, "/") && !strings.Contains(process, ".app/") && !strings.HasSuffix(process, ".app"):
		if _, _, msg := parseApplication(process); msg != "" {
			return refuse("its process path cannot be used: %s", msg)
		}
		apps = []string{process}
	default:
		mapped, appName, ok := macApplications(process)
		if !ok {
			return refuse("the macOS application %q is not in the table of known applications (shared/rules/appmap.json); make the rule for its Linux program by hand", short(process))
		}
		apps = mapped
		li.t.info(fmt.Sprintf("macOS application %q mapped to %s's Linux programs: %s", short(process), appName, strings.Join(mapped, ", ")))
	}
	// Rule.Via (a script an interpreter runs) is in the rule model, but rule files cannot store it yet
	// (shared/rules/parse.go), so a via rule is kept disabled and flagged until they can.
	if via, _ := str("via"); via != "" {
		lost = append(lost, fmt.Sprintf("via %q", short(via)))
	}
	var owner *uint32
	switch o, _ := str("owner"); strings.ToLower(o) {
	case "", Any:
	case "me":
		if li.opts.Owner != nil {
			u := *li.opts.Owner
			owner = &u
		} else {
			lost = append(lost, `owner "me" (import it with --user to make it yours)`)
		}
	default:
		return refuse("the owner %q is not understood", short(o))
	}
	switch dir, _ := str("direction"); strings.ToLower(dir) {
	case "", DirectionOutgoing:
	case "incoming":
		return refuse("Tattle filters outgoing connections only; incoming rules are not imported")
	case "any", "both":
		partial = true
		li.t.note(key, outReported, where, "a rule for both directions: its outgoing part is imported, its incoming part is not (Tattle filters outgoing connections)")
	default:
		return refuse("the direction %q is not understood", short(dir))
	}

	enabled := true
	if raw, ok := m["disabled"]; ok {
		var disabled bool
		if json.Unmarshal(raw, &disabled) != nil {
			return refuse("\"disabled\" is not true or false")
		}
		enabled = !disabled
	}

	var protos []string
	p, _ := str("protocol")
	var other []string
	for part := range strings.SplitSeq(p, ",") {
		switch w := strings.ToLower(strings.TrimSpace(part)); w {
		case "", Any:
			protos = append(protos, Any)
		case ProtocolTCP, "6":
			protos = append(protos, ProtocolTCP)
		case ProtocolUDP, "17":
			protos = append(protos, ProtocolUDP)
		default:
			other = append(other, w)
		}
	}
	protos = dedupe(protos)
	if len(protos) > 1 && contains(protos, Any) {
		protos = []string{Any}
	}
	if len(protos) == 2 { // tcp and udp are everything Tattle filters
		protos = []string{Any}
	}
	if len(other) > 0 {
		if len(protos) == 0 {
			return refuse("Tattle filters TCP and UDP only; a rule for %s is not imported", strings.Join(other, ", "))
		}
		partial = true
		li.t.note(key, outReported, where, fmt.Sprintf("its TCP/UDP part is imported; Tattle does not filter %s", strings.Join(other, ", ")))
	}

	ports := []string{Any}
	if raw, ok := m["ports"]; ok {
		var list []string
		var n json.Number
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			list = strings.Split(s, ",")
		case json.Unmarshal(raw, &n) == nil:
			s = n.String()
			list = []string{s}
		default:
			return refuse("\"ports\" is not a string like \"443\" or \"80-90\"")
		}
		ports = ports[:0]
		for _, p := range list {
			p = strings.ReplaceAll(strings.TrimSpace(p), " ", "")
			if strings.EqualFold(p, Any) || p == "" && len(list) == 1 {
				ports = []string{Any}
				break
			}
			if _, _, msg := parsePort(p); msg != "" {
				return refuse("its ports %q: %s", short(s), msg)
			}
			ports = append(ports, p)
		}
	}

	remotesByKind := map[string][]string{}
	kinds := []string{}
	remote, _ := str("remote")
	specific := 0
	switch strings.ToLower(remote) {
	case Any:
		remotesByKind["any"] = []string{Any}
		kinds = append(kinds, "any")
	case "":
	default:
		lost = append(lost, fmt.Sprintf("the macOS network category %q", short(remote)))
	}
	if remotesByKind["any"] == nil {
		for _, f := range []struct{ key, kind string }{{"remote-hosts", "hosts"}, {"remote-domains", "domains"}, {"remote-addresses", "addresses"}} {
			raw, ok := m[f.key]
			if !ok {
				continue
			}
			entries, ok := stringOrList(raw)
			if !ok {
				return refuse("%q is not a string or a list of strings", f.key)
			}
			for _, e := range entries {
				specific++
				rs, msg := lsRemotes(f.kind, e)
				if msg != "" {
					partial = true
					li.t.note(key, outReported, where, fmt.Sprintf("%s: %s; that entry is left out, the others are imported", f.key, msg))
					continue
				}
				if remotesByKind[f.kind] == nil {
					kinds = append(kinds, f.kind)
				}
				remotesByKind[f.kind] = append(remotesByKind[f.kind], rs...)
			}
		}
		if specific == 0 {
			if remote == "" {
				remotesByKind["any"] = []string{Any} // a rule that names no remote covers every remote
				kinds = append(kinds, "any")
			} else {
				remotesByKind["any"] = []string{Any} // the category is lost: kept disabled below
				kinds = append(kinds, "any")
			}
		}
	}
	if len(kinds) == 0 {
		return refuse("none of its remotes can be expressed in Tattle")
	}

	if pr, _ := str("priority"); pr != "" && !strings.EqualFold(pr, "regular") && !strings.EqualFold(pr, "default") {
		li.t.info(fmt.Sprintf("priority %q is not kept: Tattle ranks rules by how specific they are (shared/rules/PRECEDENCE.md)", short(pr)))
	}
	notes, _ := str("notes")
	if len(lost) > 0 {
		enabled = false
		li.t.note(key, outReported, where, "imported disabled: it depends on "+strings.Join(lost, ", ")+", which Tattle rules cannot express; enabling it would make it broader than written")
	}
	_ = partial

	var remotes []string
	for _, k := range kinds {
		rs := dedupe(remotesByKind[k])
		if len(rs) > li.threshold && k != "any" {
			rs = []string{li.makeList(listName(li.prefix, fmt.Sprint(i+1), k), k == "hosts", rs, fmt.Sprintf("rule %d's remote-%s", i+1, k))}
		}
		remotes = append(remotes, rs...)
	}
	n := len(apps) * len(remotes) * len(ports) * len(protos)
	if len(li.rules)+n > maxImportRules {
		return &FieldError{File: li.file, Index: i, Msg: fmt.Sprintf("would make more than %d rules; split the group", maxImportRules)}
	}
	k := 0
	for _, app := range apps {
		for _, remote := range remotes {
			for _, port := range ports {
				for _, proto := range protos {
					k++
					id := fmt.Sprintf("%s-%d", li.prefix, i+1)
					if n > 1 {
						id = fmt.Sprintf("%s-%d-%d", li.prefix, i+1, k)
					}
					r := Rule{ID: id, Application: app, Owner: owner, Remote: remote, Port: port, Protocol: proto,
						Action: action, Enabled: enabled}
					r.Note = li.note(notes, r, lost)
					if err := li.add(r, key, where); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// note fills Little Snitch's placeholders in a rule's notes and marks a rule imported disabled.
func (li *lsImport) note(notes string, r Rule, lost []string) string {
	if notes != "" {
		rem := r.Remote
		for _, p := range []string{remoteHost, remoteDomain, remoteList} {
			rem = strings.TrimPrefix(rem, p)
		}
		repl := strings.NewReplacer(
			"%REMOTE%", rem, "%REMOTE-HOSTS%", rem, "%REMOTE-DOMAINS%", rem, "%REMOTE-ADDRESSES%", rem,
			"%PROCESS%", r.Application, "%APPLICATION%", r.Application, "%PORT%", r.Port, "%PORTS%", r.Port,
			"%PROTOCOL%", r.Protocol, "%ACTION%", r.Action, "%DIRECTION%", DirectionOutgoing, "%GROUP%", li.group)
		notes = repl.Replace(notes)
	}
	note := cleanNote(notes)
	if note == "" {
		note = li.provenance
	}
	if len(lost) > 0 {
		note = cleanNote(FlaggedNotePrefix + strings.Join(lost, ", ") + "] " + note)
	}
	return note
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fold keeps a group within MaxRulesPerFile: while it is over, the largest set of rules that differ only in
// their remote (all host, domain or address remotes) becomes a named list and one rule.
func (li *lsImport) fold() {
	for len(li.rules) > MaxRulesPerFile {
		type groupKey struct {
			app, owner, port, proto, action, kind string
			enabled                               bool
		}
		groups := map[groupKey][]int{}
		var best groupKey
		for i, r := range li.rules {
			spec, msg := parseRemote(r.Remote)
			if msg != "" {
				continue
			}
			kind := ""
			switch spec.kind {
			case RemoteHost:
				kind = "hosts"
			case RemoteDomain:
				kind = "domains"
			case RemoteIP, RemoteCIDR:
				kind = "addresses"
			default:
				continue
			}
			o := ""
			if r.Owner != nil {
				o = fmt.Sprint(*r.Owner)
			}
			k := groupKey{r.Application, o, r.Port, r.Protocol, r.Action, kind, r.Enabled}
			groups[k] = append(groups[k], i)
			if len(groups[k]) > len(groups[best]) {
				best = k
			}
		}
		idx := groups[best]
		if len(idx) < 2 {
			return // nothing left to fold; the helper will say the group is too large
		}
		var remotes []string
		drop := map[int]bool{}
		for _, i := range idx {
			remotes = append(remotes, li.rules[i].Remote)
			drop[i] = true
		}
		first := li.rules[idx[0]]
		first.ID = fmt.Sprintf("%s-list-%d", li.prefix, len(li.lists)+1)
		first.Remote = li.makeList(listName(li.prefix, "group", best.kind), best.kind == "hosts", remotes, fmt.Sprintf("%d similar rules", len(idx)))
		out := li.rules[:0:0]
		for i, r := range li.rules {
			if !drop[i] {
				out = append(out, r)
			}
		}
		li.rules = append(out, first)
	}
}
