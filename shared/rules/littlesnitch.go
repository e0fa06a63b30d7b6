package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
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
