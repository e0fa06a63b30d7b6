package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Little Snitch rule groups (.lsrules) are JSON:
//
//	{"name": "…", "description": "…",
//	 "rules": [{"action": "allow"|"deny"|"ask", "process": "/path"|"any", "via": "/path",
//	            "owner": "me"|"any", "direction": "outgoing"|"incoming", "priority": "regular"|"high",
//	            "disabled": bool, "ports": "443"|"80-90"|"any", "protocol": "tcp"|"udp"|"icmp"|…,
//	            "remote": "any"|"local-net"|"multicast"|"broadcast"|"bonjour"|"dns-servers"|"bpf",
//	            "remote-hosts": "h"|["h", …], "remote-domains": "d"|["d", …],
//	            "remote-addresses": "a, b-c, net/len"|[…], "notes": "…"}],
//	 "denied-remote-domains": […], "denied-remote-hosts": […], "denied-remote-addresses": […],
//	 "denied-remote-notes": "…"}
//
// The remotes of one rule are alternatives, so a rule with several hosts becomes one Tattle rule per host
// (and per port, when ports are listed with commas).

var lsRuleKeys = map[string]bool{
	"action": true, "process": true, "via": true, "owner": true, "direction": true, "priority": true,
	"disabled": true, "ports": true, "protocol": true, "remote": true, "remote-hosts": true,
	"remote-domains": true, "remote-addresses": true, "notes": true,
}

// ImportLittleSnitch converts a Little Snitch rule group (.lsrules) into Tattle rules. Rule ids are
// "ls-<group>-<n>" (n counts source rules from 1; "-<k>" is added when one source rule becomes several) and
// "ls-<group>-dd-<k>", "-dh-<k>", "-da-<k>" for the denied-remote-domains/hosts/addresses lists. Rules are
// created at now, last "forever", and are enabled unless the source disables them.
//
// What cannot be expressed is left out and explained in the report, never dropped silently: incoming rules,
// "ask" rules, rules for "via" processes or only for the importing user ("owner": "me"), ICMP and other
// protocols, and special remotes (local-net, multicast, broadcast, bonjour, dns-servers, bpf). A source rule
// is left out whole when a condition it depends on cannot be kept, since dropping a condition would widen
// it; single malformed hosts or addresses among several are left out alone. The error is for input that is
// not a rule group at all (not JSON, not an object, "rules" not a list).
func ImportLittleSnitch(name string, data []byte, now time.Time) ([]Rule, ImportReport, error) {
	top, err := decodeTop(name, data)
	if err != nil {
		return nil, ImportReport{}, err
	}
	im := newImporter(name, now)
	var groupName, deniedNotes string
	if raw, ok := top["name"]; ok {
		if err := json.Unmarshal(raw, &groupName); err != nil {
			return nil, ImportReport{}, &FieldError{File: name, Index: -1, Field: "name", Msg: "must be a string", Err: err}
		}
	}
	if raw, ok := top["denied-remote-notes"]; ok {
		if err := json.Unmarshal(raw, &deniedNotes); err != nil {
			im.skip("denied-remote-notes is not a string; ignored")
		}
	}
	prefix := "ls-" + groupSlug(groupName, name)
	provenance := "Imported from Little Snitch"
	if groupName != "" {
		provenance = fmt.Sprintf("Imported from Little Snitch rule group %q", short(groupName))
	}
	for _, key := range sortedKeys(top) {
		switch key {
		case "name", "description", "rules", "denied-remote-domains", "denied-remote-hosts", "denied-remote-addresses", "denied-remote-notes":
		default:
			im.skip("top-level key %q is not part of the Little Snitch format this importer knows; ignored", short(key))
		}
	}

	if raw, ok := top["rules"]; ok && string(raw) != "null" {
		var rules []json.RawMessage
		if err := json.Unmarshal(raw, &rules); err != nil {
			return nil, ImportReport{}, &FieldError{File: name, Index: -1, Field: "rules", Msg: "must be a list of rules", Err: err}
		}
		for i, raw := range rules {
			if err := im.lsRule(prefix, provenance, i, raw); err != nil {
				return nil, ImportReport{}, err
			}
		}
	}

	note := cleanNote(deniedNotes)
	if note == "" {
		note = provenance
	}
	for _, list := range []struct{ key, tag, kind string }{
		{"denied-remote-domains", "dd", remoteDomain},
		{"denied-remote-hosts", "dh", remoteHost},
		{"denied-remote-addresses", "da", ""},
	} {
		raw, ok := top[list.key]
		if !ok {
			continue
		}
		entries, ok := stringOrList(raw)
		if !ok {
			im.skip("%s is not a list of strings; ignored", list.key)
			continue
		}
		k := 0
		for _, e := range entries {
			var remotes []string
			var msg string
			if list.kind == "" {
				remotes, msg = remotesForAddresses(e)
			} else {
				var r string
				r, msg = remoteForHost(strings.TrimPrefix(strings.TrimSpace(e), "."), list.kind)
				if r != "" {
					remotes = []string{r}
				}
			}
			if msg != "" {
				im.skip("%s: %s; entry skipped", list.key, msg)
			}
			for _, remote := range remotes {
				k++
				r := Rule{ID: fmt.Sprintf("%s-%s-%d", prefix, list.tag, k), Application: Any, Remote: remote, Port: Any,
					Protocol: Any, Action: ActionDeny, Duration: DurationForever, Enabled: true, Note: note}
				if err := im.add(r, fmt.Sprintf("%s entry %q", list.key, short(e))); err != nil {
					return nil, ImportReport{}, err
				}
			}
		}
	}
	return im.result()
}

// lsRule converts source rule i. The error is only for an import grown too large.
func (im *importer) lsRule(prefix, provenance string, i int, raw json.RawMessage) error {
	where := fmt.Sprintf("rule %d", i+1)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		im.skip("%s: is not a JSON object; skipped", where)
		return nil
	}
	str := func(key string) (string, bool) {
		raw, ok := m[key]
		if !ok {
			return "", true
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	if p, ok := str("process"); ok && p != "" {
		where = fmt.Sprintf("rule %d (%s)", i+1, short(p))
	}
	skip := func(format string, args ...any) error {
		im.skip("%s: %s; rule skipped", where, fmt.Sprintf(format, args...))
		return nil
	}
	for _, key := range sortedKeys(m) {
		if !lsRuleKeys[key] {
			return skip("it uses %q, which this importer does not know, so it cannot tell what the rule covers", short(key))
		}
	}
	for _, key := range []string{"action", "process", "via", "owner", "direction", "priority", "protocol", "remote", "notes"} {
		if _, ok := str(key); !ok {
			return skip("%q is not a string", key)
		}
	}

	action, _ := str("action")
	switch strings.ToLower(action) {
	case ActionAllow, ActionDeny:
		action = strings.ToLower(action)
	case "ask", "":
		return skip("it is an \"ask\" rule; Tattle asks whenever no rule decides, so it needs no rule for that")
	default:
		return skip("its action %q is not allow or deny", short(action))
	}

	process, _ := str("process")
	app := ""
	switch {
	case process == "":
		return skip("it names no process")
	case strings.EqualFold(process, Any):
		app = Any
	default:
		if !strings.HasPrefix(process, "/") {
			return skip("its process %q is not an absolute path", short(process))
		}
		if _, _, msg := parseApplication(process); msg != "" {
			return skip("its process path cannot be used: %s", msg)
		}
		app = process
	}
	if via, _ := str("via"); via != "" {
		return skip("it applies only when the process runs via %q, which Tattle rules cannot express", short(via))
	}
	switch owner, _ := str("owner"); strings.ToLower(owner) {
	case "", Any:
	case "me":
		return skip("it applies only to the user who made it (owner \"me\"); recreate it as your own rule in Tattle")
	default:
		return skip("its owner %q is not understood", short(owner))
	}
	switch dir, _ := str("direction"); strings.ToLower(dir) {
	case "", DirectionOutgoing:
	case "incoming":
		return skip("it is about incoming connections, which Tattle does not filter")
	default:
		return skip("its direction %q is not understood", short(dir))
	}

	enabled := true
	if raw, ok := m["disabled"]; ok {
		var disabled bool
		if json.Unmarshal(raw, &disabled) != nil {
			return skip("\"disabled\" is not true or false")
		}
		enabled = !disabled
	}

	proto := Any
	switch p, _ := str("protocol"); strings.ToLower(p) {
	case "", Any:
	case ProtocolTCP, "6":
		proto = ProtocolTCP
	case ProtocolUDP, "17":
		proto = ProtocolUDP
	default:
		return skip("its protocol %q is not TCP or UDP, which is all Tattle filters", short(p))
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
			return skip("\"ports\" is not a string like \"443\" or \"80-90\"")
		}
		ports = ports[:0]
		for _, p := range list {
			p = strings.ReplaceAll(strings.TrimSpace(p), " ", "")
			if strings.EqualFold(p, Any) || p == "" && len(list) == 1 {
				ports = []string{Any}
				break
			}
			if _, _, msg := parsePort(p); msg != "" {
				return skip("its ports %q: %s", short(s), msg)
			}
			ports = append(ports, p)
		}
	}

	var remotes []string
	remote, _ := str("remote")
	switch strings.ToLower(remote) {
	case Any:
		remotes = []string{Any}
	case "":
	default:
		im.skip("%s: its remote %q (a macOS network category) has no Tattle equivalent; left out", where, short(remote))
	}
	specific := 0
	if remotes == nil {
		for _, f := range []struct{ key, kind string }{{"remote-hosts", remoteHost}, {"remote-domains", remoteDomain}, {"remote-addresses", ""}} {
			raw, ok := m[f.key]
			if !ok {
				continue
			}
			entries, ok := stringOrList(raw)
			if !ok {
				return skip("%q is not a string or a list of strings", f.key)
			}
			for _, e := range entries {
				specific++
				var msg string
				if f.kind == "" {
					var rs []string
					rs, msg = remotesForAddresses(e)
					remotes = append(remotes, rs...)
				} else {
					var r string
					host := strings.TrimSpace(e)
					if f.kind == remoteDomain {
						host = strings.TrimPrefix(host, ".")
					}
					r, msg = remoteForHost(host, f.kind)
					if r != "" {
						remotes = append(remotes, r)
					}
				}
				if msg != "" {
					im.skip("%s: %s: %s; that entry left out", where, f.key, msg)
				}
			}
		}
		if remote == "" && specific == 0 {
			remotes = []string{Any} // a rule that names no remote covers every remote
		}
	}
	if len(remotes) == 0 {
		// Never fall back to "any": that would turn a rule about some destinations into one about all.
		return skip("none of its remotes can be expressed in Tattle")
	}
	remotes = dedupe(remotes)

	if p, _ := str("priority"); p != "" && !strings.EqualFold(p, "regular") && !strings.EqualFold(p, "default") {
		im.skip("%s: its priority %q is not kept; Tattle ranks rules by how specific they are (see PRECEDENCE.md)", where, short(p))
	}
	notes, _ := str("notes")
	note := cleanNote(notes)
	if note == "" {
		note = provenance
	}

	n := len(remotes) * len(ports)
	if len(im.rules)+n > maxImportRules {
		return im.tooMany()
	}
	k := 0
	for _, remote := range remotes {
		for _, port := range ports {
			k++
			id := fmt.Sprintf("%s-%d", prefix, i+1)
			if n > 1 {
				id = fmt.Sprintf("%s-%d-%d", prefix, i+1, k)
			}
			r := Rule{ID: id, Application: app, Remote: remote, Port: port, Protocol: proto, Action: action,
				Duration: DurationForever, Enabled: enabled, Note: note}
			if err := im.add(r, where); err != nil {
				return err
			}
		}
	}
	return nil
}

// remotesForAddresses maps a Little Snitch address list ("a, b-c, net/len") to remotes.
func remotesForAddresses(s string) ([]string, string) {
	var out []string
	var bad []string
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		rs, msg := remotesForAddress(part)
		if msg != "" {
			bad = append(bad, msg)
			continue
		}
		out = append(out, rs...)
	}
	return out, strings.Join(bad, "; ")
}

// stringOrList reads a JSON string or list of strings, as Little Snitch allows for its remote keys.
func stringOrList(raw json.RawMessage) ([]string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, true
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list, true
	}
	return nil, false
}

func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

type lsExportRule struct {
	Action          string `json:"action"`
	Process         string `json:"process"`
	Direction       string `json:"direction"`
	Remote          string `json:"remote,omitempty"`
	RemoteHosts     string `json:"remote-hosts,omitempty"`
	RemoteDomains   string `json:"remote-domains,omitempty"`
	RemoteAddresses string `json:"remote-addresses,omitempty"`
	Ports           string `json:"ports,omitempty"`
	Protocol        string `json:"protocol,omitempty"`
	Disabled        bool   `json:"disabled,omitempty"`
	Notes           string `json:"notes,omitempty"`
}

type lsExportFile struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Rules       []lsExportRule `json:"rules"`
}

// ExportLittleSnitch writes the rules that Little Snitch can express as an .lsrules rule group. Left out, and
// listed in the report: rules for Flatpak, snap or AppImage applications, rules of one user (Little Snitch
// can only say "the user who imports it"), wildcard and list remotes, and temporary rules (anything but
// "forever"). Invalid rules are left out too. Rules keep their order.
func ExportLittleSnitch(rules []Rule) ([]byte, ImportReport, error) {
	var rep ImportReport
	out := lsExportFile{Name: "Tattle rules", Description: "Exported from Tattle", Rules: []lsExportRule{}}
	for i := range rules {
		r := &rules[i]
		where := fmt.Sprintf("rule %d (id %q)", i+1, short(r.ID))
		c, err := Compile(*r)
		if err != nil {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: not exported, it is invalid: %v", where, err))
			continue
		}
		skip := func(why string) { rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: not exported: %s", where, why)) }
		e := lsExportRule{Action: r.Action, Direction: DirectionOutgoing, Disabled: !r.Enabled, Notes: r.Note}
		switch c.AppKind {
		case AppAny:
			e.Process = Any
		case AppPath:
			e.Process = c.AppValue
		default:
			skip(fmt.Sprintf("Little Snitch cannot name %s applications", c.AppKind))
			continue
		}
		if r.Owner != nil {
			skip(fmt.Sprintf("it applies only to uid %d, which Little Snitch cannot express", *r.Owner))
			continue
		}
		if r.Duration != DurationForever {
			skip(fmt.Sprintf("it is temporary (%s)", r.Duration))
			continue
		}
		switch c.RemoteKind {
		case RemoteAny:
			e.Remote = Any
		case RemoteIP, RemoteCIDR:
			e.RemoteAddresses = prefixRemote(c.Prefix)
		case RemoteHost:
			e.RemoteHosts = c.Name
		case RemoteDomain:
			e.RemoteDomains = c.Name
		default:
			skip(fmt.Sprintf("Little Snitch has no %s remotes", c.RemoteKind))
			continue
		}
		if c.PortHi != 0 {
			e.Ports = r.Port
		}
		if c.Proto != Any {
			e.Protocol = c.Proto
		}
		out.Rules = append(out.Rules, e)
	}
	rep.Imported = len(out.Rules)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return nil, rep, fmt.Errorf("encode Little Snitch rule group: %w", err)
	}
	return buf.Bytes(), rep, nil
}
