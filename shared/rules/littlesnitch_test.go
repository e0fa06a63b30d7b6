package rules

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// lsSample is a rule group as a Mac user might export it from Little Snitch, with rules of every kind the
// importer has to deal with.
const lsSample = `{
  "name": "Dev Tools & Updates",
  "description": "Rules for developer tools on my workstation.",
  "rules": [
    {
      "action": "allow",
      "process": "/usr/bin/git",
      "remote-hosts": ["github.com", "gitlab.com", "140.82.112.3"],
      "ports": "22, 443",
      "protocol": "tcp",
      "notes": "Git over SSH and HTTPS"
    },
    {
      "action": "allow",
      "process": "/Applications/LaunchBar.app/Contents/MacOS/LaunchBar",
      "remote-hosts": "sw-update.obdev.at"
    },
    {
      "action": "deny",
      "process": "any",
      "remote-domains": ["doubleclick.net", ".google-analytics.com"],
      "priority": "high"
    },
    {
      "action": "allow",
      "process": "/usr/sbin/ntpd",
      "remote-addresses": "192.0.2.0/24, 198.51.100.10-198.51.100.20",
      "ports": "123",
      "protocol": "udp"
    },
    { "action": "allow", "process": "/usr/sbin/sshd", "direction": "incoming", "ports": "22" },
    { "action": "allow", "process": "/usr/sbin/avahi-daemon", "remote": "bonjour" },
    { "action": "deny", "process": "/usr/bin/ping", "protocol": "icmp", "remote": "any" },
    { "action": "allow", "process": "/usr/bin/python3", "via": "/usr/bin/pip", "remote-domains": "pypi.org" },
    { "action": "allow", "process": "/usr/bin/firefox", "owner": "me", "remote": "any" },
    { "action": "ask", "process": "/usr/bin/wget", "remote": "any" },
    { "action": "allow", "process": "/usr/bin/curl", "remote-hosts": ["example.com", "bad host!"], "disabled": true },
    { "action": "deny", "process": "/usr/lib/slack/slack", "remote": "local-net" },
    { "action": "allow", "process": "/usr/bin/thunderbird", "remote-domains": "mail.example.org", "ports": "993", "codeRequirement": "x" },
    { "action": "allow", "process": "/usr/bin/rsync" }
  ],
  "denied-remote-domains": ["facebook.com", "twitter.com"],
  "denied-remote-hosts": ["ads.example.net"],
  "denied-remote-addresses": ["203.0.113.0/24", "not-an-ip"],
  "denied-remote-notes": "Social media block"
}`

func TestImportLittleSnitch(t *testing.T) {
	rules, rep, err := ImportLittleSnitch("dev.lsrules", []byte(lsSample), t0)
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ app, remote, port, proto, action string }
	got := map[string]want{}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.ID, err)
		}
		if !r.Created.Equal(t0) || !r.Modified.Equal(t0) || r.Duration != DurationForever || r.Direction != DirectionOutgoing || r.Owner != nil {
			t.Errorf("%s: %+v", r.ID, r)
		}
		got[r.ID] = want{r.Application, r.Remote, r.Port, r.Protocol, r.Action}
	}
	p := "ls-dev-tools-updates-"
	expect := map[string]want{
		p + "1-1":  {"/usr/bin/git", "host:github.com", "22", "tcp", "allow"},
		p + "1-2":  {"/usr/bin/git", "host:github.com", "443", "tcp", "allow"},
		p + "1-3":  {"/usr/bin/git", "host:gitlab.com", "22", "tcp", "allow"},
		p + "1-4":  {"/usr/bin/git", "host:gitlab.com", "443", "tcp", "allow"},
		p + "1-5":  {"/usr/bin/git", "140.82.112.3", "22", "tcp", "allow"},
		p + "1-6":  {"/usr/bin/git", "140.82.112.3", "443", "tcp", "allow"},
		p + "3-1":  {"any", "domain:doubleclick.net", "any", "any", "deny"},
		p + "3-2":  {"any", "domain:google-analytics.com", "any", "any", "deny"},
		p + "4-1":  {"/usr/sbin/ntpd", "192.0.2.0/24", "123", "udp", "allow"},
		p + "4-2":  {"/usr/sbin/ntpd", "198.51.100.10/31", "123", "udp", "allow"},
		p + "4-3":  {"/usr/sbin/ntpd", "198.51.100.12/30", "123", "udp", "allow"},
		p + "4-4":  {"/usr/sbin/ntpd", "198.51.100.16/30", "123", "udp", "allow"},
		p + "4-5":  {"/usr/sbin/ntpd", "198.51.100.20", "123", "udp", "allow"},
		p + "6":    {"/usr/sbin/avahi-daemon", "any", "any", "any", "allow"},
		p + "8":    {"/usr/bin/python3", "domain:pypi.org", "any", "any", "allow"},
		p + "9":    {"/usr/bin/firefox", "any", "any", "any", "allow"},
		p + "11":   {"/usr/bin/curl", "host:example.com", "any", "any", "allow"},
		p + "12":   {"/usr/lib/slack/slack", "any", "any", "any", "deny"},
		p + "13":   {"/usr/bin/thunderbird", "domain:mail.example.org", "993", "any", "allow"},
		p + "14":   {"/usr/bin/rsync", "any", "any", "any", "allow"},
		p + "dd-1": {"any", "domain:facebook.com", "any", "any", "deny"},
		p + "dd-2": {"any", "domain:twitter.com", "any", "any", "deny"},
		p + "dh-1": {"any", "host:ads.example.net", "any", "any", "deny"},
		p + "da-1": {"any", "203.0.113.0/24", "any", "any", "deny"},
	}
	if !reflect.DeepEqual(got, expect) {
		for id, w := range expect {
			if got[id] != w {
				t.Errorf("%s: got %+v, want %+v", id, got[id], w)
			}
		}
		for id, g := range got {
			if _, ok := expect[id]; !ok {
				t.Errorf("unexpected rule %s: %+v", id, g)
			}
		}
	}
	if rep.Imported != len(rules) {
		t.Errorf("report says %d imported, got %d rules", rep.Imported, len(rules))
	}
	for _, r := range rules {
		switch r.ID {
		case p + "11":
			if r.Enabled {
				t.Error("a disabled source rule was imported enabled")
			}
		case p + "1-1":
			if r.Note != "Git over SSH and HTTPS" {
				t.Errorf("note %q", r.Note)
			}
		case p + "dd-1":
			if r.Note != "Social media block" {
				t.Errorf("note %q", r.Note)
			}
		case p + "14":
			if !r.Enabled || !strings.Contains(r.Note, "Dev Tools & Updates") {
				t.Errorf("rule 14: enabled %v, note %q", r.Enabled, r.Note)
			}
		case p + "6", p + "8", p + "9", p + "12", p + "13":
			// A narrowing condition Tattle cannot keep: imported disabled and flagged, never broader.
			if r.Enabled || !strings.HasPrefix(r.Note, "[import: disabled, lost ") {
				t.Errorf("%s: enabled %v, note %q", r.ID, r.Enabled, r.Note)
			}
		}
	}
	report := strings.Join(rep.Skipped, "\n")
	for _, w := range []string{
		`priority "high" is not kept`,
		"not imported (1 rule): Tattle filters outgoing connections only",
		`the macOS network category "bonjour"`,
		"not imported (1 rule): Tattle filters TCP and UDP only; a rule for icmp",
		`owner "me" (import it with --user`,
		`via "/usr/bin/pip"`,
		`"ask" rules need no rule`,
		`remote-hosts: "bad host!"`,
		`the macOS network category "local-net"`,
		`key "codeRequirement"`,
		`"/Applications/LaunchBar.app/Contents/MacOS/LaunchBar" is not in the table of known applications`,
		"by hand — at dev.lsrules:13:5",
		"denied-remote-addresses: \"not-an-ip\" is not an address",
	} {
		if !strings.Contains(report, w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}

	again, rep2, _ := ImportLittleSnitch("dev.lsrules", []byte(lsSample), t0)
	if !reflect.DeepEqual(rules, again) || !reflect.DeepEqual(rep, rep2) {
		t.Error("importing twice gives different results")
	}
	if _, err := Marshal(&File{Version: FormatVersion, Name: "Dev", Rules: rules}); err != nil {
		t.Errorf("imported rules do not make a file: %v", err)
	}
}

func TestImportLittleSnitchShortForms(t *testing.T) {
	for _, c := range []struct {
		name, input string
		want        []string // remote|port|protocol|action of each rule
	}{
		{"blocklist only", `{"name":"Social Media Block List","denied-remote-domains":["facebook.com","twitter.com","youtube.com"]}`,
			[]string{"domain:facebook.com|any|any|deny", "domain:twitter.com|any|any|deny", "domain:youtube.com|any|any|deny"}},
		{"ports as a number", `{"rules":[{"action":"deny","process":"any","ports":25,"remote":"any"}]}`, []string{"any|25|any|deny"}},
		{"range of ports", `{"rules":[{"action":"allow","process":"/usr/bin/x","ports":"8000 - 8100","remote-hosts":"a.example"}]}`, []string{"host:a.example|8000-8100|any|allow"}},
		{"upper-case words", `{"rules":[{"action":"DENY","process":"ANY","protocol":"UDP","remote":"Any"}]}`, []string{"any|any|udp|deny"}},
		{"IPv6 range", `{"rules":[{"action":"deny","process":"any","remote-addresses":"2001:db8::-2001:db8::ffff"}]}`, []string{"2001:db8::/112|any|any|deny"}},
		{"host bits ignored", `{"rules":[{"action":"deny","process":"any","remote-addresses":["10.1.2.3/8"]}]}`, []string{"10.0.0.0/8|any|any|deny"}},
		{"duplicate hosts once", `{"rules":[{"action":"deny","process":"any","remote-hosts":["a.example","A.example","a.example"]}]}`, []string{"host:a.example|any|any|deny"}},
		{"empty group", `{"name":"nothing"}`, nil},
	} {
		rules, _, err := ImportLittleSnitch("x.lsrules", []byte(c.input), t0)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got []string
		for _, r := range rules {
			got = append(got, r.Remote+"|"+r.Port+"|"+r.Protocol+"|"+r.Action)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestImportLittleSnitchRefusesNonGroups(t *testing.T) {
	for name, input := range map[string]string{
		"not JSON":          `name: x`,
		"truncated":         `{"name": "x", "rules": [{"action": "allow"`,
		"a list":            `[{"action":"allow"}]`,
		"null":              `null`,
		"rules not a list":  `{"rules": {"action": "allow"}}`,
		"name not a string": `{"name": 5}`,
		"trailing data":     `{"name": "x"} {}`,
	} {
		if _, _, err := ImportLittleSnitch("in.lsrules", []byte(input), t0); err == nil || !strings.Contains(err.Error(), "in.lsrules") {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
	// A block list of any size is one named list and one rule.
	var hosts []string
	for i := range maxImportRules + 1 {
		hosts = append(hosts, "h"+strings.Repeat("x", i%5)+"-"+strconv.Itoa(i)+".example")
	}
	big, _ := json.Marshal(map[string]any{"denied-remote-hosts": hosts})
	res, err := ImportLittleSnitchFile("big.lsrules", big, ImportOptions{Now: t0})
	if err != nil || len(res.Rules) != 1 || len(res.Lists) != 1 || len(res.Lists[0].Entries) != maxImportRules+1 || !res.Lists[0].Exact ||
		res.Rules[0].Remote != "list:"+res.Lists[0].Name || res.Report.Exact != maxImportRules+1 {
		t.Errorf("block list import: %v", err)
	}
	// Too many rules even so (one rule with 30,000 ports for an application of four programs): refused as a
	// whole, not cut short.
	var ports []string
	for p := 1; p <= 30000; p++ {
		ports = append(ports, strconv.Itoa(p))
	}
	huge, _ := json.Marshal(map[string]any{"rules": []any{map[string]any{"action": "allow", "process": "org.mozilla.firefox", "ports": strings.Join(ports, ",")}}})
	if _, err := ImportLittleSnitchFile("huge.lsrules", huge, ImportOptions{Now: t0}); err == nil || !strings.Contains(err.Error(), "split the group") {
		t.Errorf("oversized import: %v", err)
	}
}

func TestExportLittleSnitch(t *testing.T) {
	mk := func(id string, mod func(*Rule)) Rule {
		r := goodRule()
		r.ID = id
		mod(&r)
		return r
	}
	rules := []Rule{
		mk("path-domain", func(r *Rule) {}),
		mk("any-net", func(r *Rule) {
			r.Application, r.Remote, r.Port, r.Protocol, r.Action = "any", "10.0.0.0/8", "any", "any", "deny"
		}),
		mk("host-range", func(r *Rule) {
			r.Remote, r.Port, r.Protocol, r.Enabled = "host:api.example.com", "8000-8100", "udp", false
		}),
		mk("ip", func(r *Rule) { r.Remote = "2001:db8::1" }),
		mk("flatpak", func(r *Rule) { r.Application = "flatpak:org.mozilla.firefox" }),
		mk("owned", func(r *Rule) { r.Owner = uid(1000) }),
		mk("wild", func(r *Rule) { r.Remote = "wildcard:*.example.*" }),
		mk("list", func(r *Rule) { r.Remote = "list:ads" }),
		mk("temp", func(r *Rule) { r.Duration = DurationUntilRestart }),
		mk("broken", func(r *Rule) { r.Port = "0" }),
	}
	out, rep, err := ExportLittleSnitch(rules)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 4 || len(rep.Skipped) != 6 {
		t.Errorf("exported %d, skipped %q", rep.Imported, rep.Skipped)
	}
	for _, w := range []string{`"flatpak"`, `"owned"`, `"wild"`, `"list"`, `"temp"`, `"broken"`} {
		if !strings.Contains(strings.Join(rep.Skipped, "\n"), w) {
			t.Errorf("report does not name rule %s: %q", w, rep.Skipped)
		}
	}
	back, rep2, err := ImportLittleSnitch("tattle.lsrules", out, t0)
	if err != nil || len(rep2.Skipped) != 0 {
		t.Fatalf("re-import: %v %q\n%s", err, rep2.Skipped, out)
	}
	if len(back) != 4 {
		t.Fatalf("re-imported %d rules:\n%s", len(back), out)
	}
	for i, orig := range []Rule{rules[0], rules[1], rules[2], rules[3]} {
		b := back[i]
		if b.Application != orig.Application || b.Remote != orig.Remote || b.Port != orig.Port || b.Protocol != orig.Protocol ||
			b.Action != orig.Action || b.Enabled != orig.Enabled {
			t.Errorf("rule %s came back as %+v", orig.ID, b)
		}
	}
	if _, _, err := ExportLittleSnitch(nil); err != nil {
		t.Error(err)
	}
}
