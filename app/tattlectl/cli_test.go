package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string // in stderr
	}{
		{nil, "Usage: tattlectl"},
		{[]string{"frob"}, `"frob" is not a command`},
		{[]string{"rules"}, "rules needs a subcommand: list, add, remove"},
		{[]string{"rules", "frob"}, `"frob" is not a subcommand of rules`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "--bogus"}, "flag provided but not defined: -bogus\ntattlectl: run 'tattlectl status --help' for usage"},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"rules", "add"}, "give exactly one of --allow and --deny"},
		{[]string{"rules", "add", "--allow", "--deny"}, "give exactly one of --allow and --deny"},
		{[]string{"rules", "add", "--allow", "x"}, `unexpected argument "x"`},
		{[]string{"rules", "remove"}, "give the id of at least one rule"},
		{[]string{"rules", "enable"}, "give the id of at least one rule"},
		{[]string{"rules", "import"}, "give one file to import"},
		{[]string{"rules", "import", "--format", "xml", "f"}, `--format: "xml" is not a format; use tattle, lsrules, opensnitch`},
		{[]string{"rules", "export", "a", "b"}, "give at most one file"},
		{[]string{"mode", "loud"}, `"loud" is not a mode; use alert, silent-allow, silent-deny`},
		{[]string{"mode", "alert", "silent-deny"}, "give one mode"},
		{[]string{"monitor", "--interval", "1ms"}, "--interval: 1ms is too short"},
		{[]string{"monitor", "--interval", "soon"}, `invalid value "soon" for flag -interval`},
	} {
		te := newTestEnv(t)
		if code := te.run(tc.args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, code, exitUsage, te.err)
		}
		if !strings.Contains(te.err.String(), tc.msg) {
			t.Errorf("%q: stderr %q does not say %q", tc.args, te.err, tc.msg)
		}
		if len(te.h.connects) != 0 {
			t.Errorf("%q: connected to the helper despite a usage error", tc.args)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "rules", "add"}, {"rules", "add", "--help"}, {"monitor", "-h"}, {"rules", "--help"}} {
		te := newTestEnv(t)
		if code := te.run(args...); code != exitOK {
			t.Errorf("%q: exit %d; stderr %q", args, code, te.err)
		}
		if !strings.Contains(te.out.String(), "Usage: tattlectl") || !strings.Contains(te.out.String(), "Exit status") {
			t.Errorf("%q: help is %q", args, te.out)
		}
	}
	te := newTestEnv(t)
	te.run("rules", "add", "--help")
	for _, want := range []string{"--allow", "--app PATH", "--until TIME", "--user", "(default any)"} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("rules add --help lacks %q:\n%s", want, te.out)
		}
	}
	te.run("--version")
	if te.out.String() != "tattlectl "+version+"\n" {
		t.Errorf("--version printed %q", te.out)
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	te := newTestEnv(t)
	ids, ni, err := idArgs(te.env, "rules remove", []string{"a", "--no-interactive", "b"})
	if err != nil || !ni || !reflect.DeepEqual(ids, []string{"a", "b"}) {
		t.Errorf("got %q, %v, %v", ids, ni, err)
	}
	ids, ni, err = idArgs(te.env, "rules remove", []string{"a", "--", "--no-interactive", "-b"})
	if err != nil || ni || !reflect.DeepEqual(ids, []string{"a", "--no-interactive", "-b"}) {
		t.Errorf("after --: got %q, %v, %v", ids, ni, err)
	}
}

func TestBuildRule(t *testing.T) {
	te := newTestEnv(t)
	build := func(args ...string) (rules.Rule, []string, error) {
		o, err := parseAdd(te.env, args)
		if err != nil {
			return rules.Rule{}, nil, err
		}
		return buildRule(o, te.env)
	}

	r, notes, err := build("--deny", "--app", "curl", "--remote", "host:example.com", "--port", "443", "--protocol", "tcp", "--note", "no tracking")
	if err != nil {
		t.Fatal(err)
	}
	if r.Application != "/usr/bin/curl" || r.Action != "deny" || r.Owner != nil || r.Duration != "forever" ||
		!r.Enabled || r.Note != "no tracking" || r.Direction != "outgoing" || !r.Created.Equal(testNow) {
		t.Errorf("rule %+v", r)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "--app curl is /usr/bin/curl") {
		t.Errorf("notes %q", notes)
	}
	if !regexp.MustCompile(`^deny-curl-example-com-443-[a-z2-9]{6}$`).MatchString(r.ID) {
		t.Errorf("generated id %q", r.ID)
	}

	// Relative paths are made absolute; --user makes a rule for the caller's uid; --until implies until-time.
	r, _, err = build("--allow", "--app", "./app", "--user", "--until", "2h", "--id", "mine")
	if err != nil {
		t.Fatal(err)
	}
	if r.Application != "/home/alice/src/app" || r.Owner == nil || *r.Owner != 1000 || r.ID != "mine" ||
		r.Duration != "until-time" || !r.Until.Equal(testNow.Add(2*time.Hour)) {
		t.Errorf("rule %+v", r)
	}
	r, _, err = build("--allow", "--app", "../opt/app", "--duration", "until-time", "--until", "2030-01-01T00:00:00Z")
	if err != nil || r.Application != "/home/alice/opt/app" || r.Until.Year() != 2030 {
		t.Errorf("rule %+v, %v", r, err)
	}
	r, _, err = build("--allow", "--app", "appimage:Apps/x.AppImage")
	if err != nil || r.Application != "appimage:/home/alice/src/Apps/x.AppImage" {
		t.Errorf("appimage: %q, %v", r.Application, err)
	}
	r, _, err = build("--allow", "--app", "flatpak:org.example.App", "--remote", "2001:db8::1")
	if err != nil || r.Application != "flatpak:org.example.App" || !strings.HasPrefix(r.ID, "allow-org-example-app-2001-db8-1-") {
		t.Errorf("flatpak: %+v, %v", r, err)
	}
	r, _, err = build("--allow")
	if err != nil || r.Application != "any" || !regexp.MustCompile(`^allow-any-[a-z2-9]{6}$`).MatchString(r.ID) {
		t.Errorf("any: %+v, %v", r, err)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("generated rule does not validate: %v", err)
	}
	_, notes, _ = build("--allow", "--app", "/usr/local/bin/later")
	if len(notes) != 1 || !strings.Contains(notes[0], "does not exist (yet)") {
		t.Errorf("notes for a missing program: %q", notes)
	}

	// Validation errors name the flag at fault and are usage errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--allow", "--port", "99999"}, `--port: "99999" is out of range 1-65535`},
		{[]string{"--allow", "--port", "80-20"}, `--port: "80-20" is a range that ends before it starts`},
		{[]string{"--allow", "--remote", "example.com"}, `--remote: "example.com" is not a remote; for a host name write "host:example.com"`},
		{[]string{"--allow", "--remote", "10.0.0.1/8"}, `--remote: "10.0.0.1/8" has bits set`},
		{[]string{"--allow", "--protocol", "icmp"}, `--protocol: "icmp" is not supported`},
		{[]string{"--allow", "--duration", "always"}, `--duration: "always" is not a duration`},
		{[]string{"--allow", "--duration", "until-time"}, `--until: is missing`},
		{[]string{"--allow", "--duration", "forever", "--until", "2h"}, `--until: is set, but only applies to duration "until-time"`},
		{[]string{"--allow", "--until", "tomorrow"}, `--until: "tomorrow" is not a time`},
		{[]string{"--allow", "--id", "has space"}, `--id: "has space" contains ' '`},
		{[]string{"--allow", "--note", "two\nlines"}, `--note: contains the control character U+000A`},
		{[]string{"--allow", "--app", "flatpak:nope"}, `--app: "nope" is not a flatpak id`},
		{[]string{"--allow", "--app", "nosuchprogram"}, `--app: "nosuchprogram" is not a program in PATH`},
	} {
		_, _, err := build(tc.args...)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestRulesAdd(t *testing.T) {
	te := newTestEnv(t)
	if code := te.run("rules", "add", "--allow", "--app", "/usr/bin/curl", "--port", "443", "--user", "--id", "c"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	if te.out.String() != "c\n" {
		t.Errorf("printed %q, want the id", te.out)
	}
	want := api.Rule{ID: "c", Application: "/usr/bin/curl", Owner: 1000, Direction: "outgoing", Remote: "any",
		Port: "443", Protocol: "any", Action: "allow", Duration: "forever", Enabled: true,
		Created: testNow.Unix(), Modified: testNow.Unix()}
	if !reflect.DeepEqual(te.h.added, []api.Rule{want}) {
		t.Errorf("helper got %+v\nwant %+v", te.h.added, want)
	}
	if !reflect.DeepEqual(te.h.connects, []bool{true}) || te.h.closed != 1 {
		t.Errorf("connects %v (want interactive), closed %d", te.h.connects, te.h.closed)
	}

	// --no-interactive, before or after the command, turns interactive authorization off.
	for _, args := range [][]string{
		{"--no-interactive", "rules", "add", "--deny"},
		{"rules", "add", "--deny", "--no-interactive"},
		{"rules", "remove", "x", "--no-interactive"},
		{"mode", "--no-interactive", "alert"},
	} {
		te := newTestEnv(t)
		if code := te.run(args...); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, te.err)
		}
		if !reflect.DeepEqual(te.h.connects, []bool{false}) {
			t.Errorf("%q: connects %v, want non-interactive", args, te.h.connects)
		}
	}
}

func TestStateCommands(t *testing.T) {
	te := newTestEnv(t)
	if code := te.run("rules", "remove", "a", "b"); code != 0 || !reflect.DeepEqual(te.h.removed, []string{"a", "b"}) {
		t.Errorf("remove: exit %d, removed %v", code, te.h.removed)
	}
	te.run("rules", "disable", "a")
	te.run("rules", "enable", "b")
	if !reflect.DeepEqual(te.h.enabled, map[string]bool{"a": false, "b": true}) {
		t.Errorf("enabled %v", te.h.enabled)
	}
	te.h.status.Mode = api.ModeSilentAllow
	if code := te.run("mode"); code != 0 || te.out.String() != "silent-allow\n" {
		t.Errorf("mode: exit %d, printed %q", code, te.out)
	}
	if code := te.run("mode", "silent-deny"); code != 0 || te.h.mode != api.ModeSilentDeny {
		t.Errorf("set mode: exit %d, helper mode %q", code, te.h.mode)
	}
	// Reads are never interactive; changes are.
	if want := []bool{true, true, true, false, true}; !reflect.DeepEqual(te.h.connects, want) {
		t.Errorf("connects %v, want %v", te.h.connects, want)
	}
}

func TestImportExport(t *testing.T) {
	te := newTestEnv(t)
	te.files["corp.lsrules"] = []byte(`{"name": "corp", "rules": []}`)
	te.h.skipped = []string{"not imported (1 rule): \"ask\" rules\nneed no rule"}
	te.h.importSum = api.ImportSummary{Imported: 2, Summary: "1 file, 3 source rules: 2 imported exactly, 0 reported, 1 refused; 2 Tattle rules, 0 named lists"}
	if code := te.run("rules", "import", "corp.lsrules"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	if te.h.imported.format != api.FormatLittleSnitch || !te.h.imported.system || string(te.h.imported.data) != `{"name": "corp", "rules": []}` || te.h.imported.req.DryRun {
		t.Errorf("helper got %+v", te.h.imported)
	}
	if te.out.String() != "imported: "+te.h.importSum.Summary+"\n" {
		t.Errorf("stdout %q", te.out)
	}
	if te.err.String() != "tattlectl: not imported (1 rule): \"ask\" rules need no rule\n" {
		t.Errorf("stderr %q", te.err)
	}
	te.out.Reset()
	te.err.Reset()
	if code := te.run("rules", "import", "--dry-run", "corp.lsrules"); code != 0 || !te.h.imported.req.DryRun || !strings.HasPrefix(te.out.String(), "dry run, nothing changed: ") {
		t.Errorf("dry run: exit %d, stdout %q, request %+v", code, te.out, te.h.imported.req)
	}
	// A directory is an OpenSnitch rules directory; the list directories its rules name are sent along.
	te.files["rules/000-a.json"] = []byte(`{"name":"000-a","enabled":true,"action":"deny","operator":{"type":"lists","operand":"lists.domains","data":"/etc/opensnitchd/ads"}}`)
	te.files["rules/001-b.json"] = []byte(`{"name":"001-b","enabled":true,"action":"allow","operator":{"type":"simple","operand":"true"}}`)
	te.files["rules/notes.txt"] = []byte("not a rule")
	te.files["saved/ads/hosts.txt"] = []byte("0.0.0.0 ads.example\n")
	if code := te.run("rules", "import", "--lists", "saved", "rules"); code != 0 {
		t.Fatalf("directory import: exit %d: %s", code, te.err)
	}
	req := te.h.imported.req
	if req.Format != api.FormatOpenSnitch || len(req.Files) != 2 || req.Files[0].Name != "rules/000-a.json" ||
		len(req.ListDirs) != 1 || req.ListDirs[0].Path != "/etc/opensnitchd/ads" || len(req.ListDirs[0].Files) != 1 {
		t.Errorf("directory import sent %+v", req)
	}
	// Nothing imported is a failure.
	te.h.importSum = api.ImportSummary{Summary: "1 file, 1 source rule: 0 imported exactly, 0 reported, 1 refused; 0 Tattle rules, 0 named lists"}
	if code := te.run("rules", "import", "corp.lsrules"); code != exitFailed || !strings.Contains(te.err.String(), "nothing was imported from corp.lsrules") {
		t.Errorf("empty import: exit %d, stderr %q", code, te.err)
	}
	te.h.importSum.Imported = 2

	te.stdin = strings.NewReader(`{"version": 1, "rules": []}`)
	if code := te.run("rules", "import", "--user", "-"); code != 0 || te.h.imported.format != api.FormatTattle || te.h.imported.system {
		t.Errorf("stdin import: exit %d, helper got %+v", code, te.h.imported)
	}
	if code := te.run("rules", "import", "missing.json"); code != exitFailed || !strings.Contains(te.err.String(), "missing.json") {
		t.Errorf("missing file: exit %d, stderr %q", code, te.err)
	}
	te.files["x.json"] = []byte(`{"weird": true}`)
	if code := te.run("rules", "import", "x.json"); code != exitUsage || !strings.Contains(te.err.String(), "give --format") {
		t.Errorf("unknown format: exit %d, stderr %q", code, te.err)
	}

	te.h.export = []byte("{}\n")
	te.h.skipped = nil
	if code := te.run("rules", "export"); code != 0 || te.out.String() != "{}\n" || te.h.exportFormat != api.FormatTattle {
		t.Errorf("export: exit %d, stdout %q, format %q", code, te.out, te.h.exportFormat)
	}
	if code := te.run("rules", "export", "out.lsrules"); code != 0 || string(te.files["out.lsrules"]) != "{}\n" || te.h.exportFormat != api.FormatLittleSnitch {
		t.Errorf("export to file: exit %d, file %q, format %q", code, te.files["out.lsrules"], te.h.exportFormat)
	}
	if code := te.run("rules", "export", "--format", "lsrules", "-"); code != 0 || te.h.exportFormat != api.FormatLittleSnitch {
		t.Errorf("export --format: exit %d, format %q", code, te.h.exportFormat)
	}
	// There is no OpenSnitch export (see parseExport): tattlectl says so instead of asking the helper.
	if code := te.run("rules", "export", "--format", "opensnitch", "-"); code != exitUsage || !strings.Contains(te.err.String(), "cannot be exported; use tattle, lsrules") {
		t.Errorf("export --format opensnitch: exit %d, stderr %q", code, te.err)
	}
}

func TestGuessFormat(t *testing.T) {
	for _, tc := range []struct {
		file, data, want string
	}{
		{"a.lsrules", "not even json", api.FormatLittleSnitch},
		{"a.json", `{"version": 1, "rules": []}`, api.FormatTattle},
		{"a.json", `{"rules": [{"application": "any"}]}`, api.FormatTattle},
		{"a.json", `{"name": "x", "rules": [{"process": "any", "action": "allow"}]}`, api.FormatLittleSnitch},
		{"a.json", `{"name": "x", "denied-remote-hosts": ["ads.example"]}`, api.FormatLittleSnitch},
		{"a.json", "\ufeff" + `{"name": "x", "action": "allow", "duration": "always", "operator": {"type": "simple"}}`, api.FormatOpenSnitch},
	} {
		got, err := guessFormat(tc.file, []byte(tc.data))
		if err != nil || got != tc.want {
			t.Errorf("%s %s: got %q, %v; want %q", tc.file, tc.data, got, err, tc.want)
		}
	}
	if _, err := guessFormat("a.json", []byte("[1,2")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("broken JSON: %v", err)
	}
}

func sampleRules() []api.Rule {
	return []api.Rule{
		{ID: "curl-https", Application: "/usr/bin/curl", Owner: api.NoOwner, Direction: "outgoing", Remote: "any",
			Port: "443", Protocol: "tcp", Action: "allow", Duration: "forever", Enabled: true,
			Created: testNow.Unix(), Modified: testNow.Unix(), Source: "/var/lib/tattle/rules.json"},
		{ID: "no-ads", Application: "any", Owner: 1000, Direction: "outgoing", Remote: "domain:ads.example",
			Port: "any", Protocol: "any", Action: "deny", Duration: "until-time", Until: testNow.Add(48 * time.Hour).Unix(),
			Enabled: false, Note: "bad\x1b[31m", Created: testNow.Unix(), Modified: testNow.Unix(), Source: "/var/lib/tattle/rules.json"},
		{ID: "corp", Application: "/opt/corp/agent", Owner: 1234, Direction: "outgoing", Remote: "10.0.0.0/8",
			Port: "8000-8100", Protocol: "udp", Action: "allow", Duration: "forever", Enabled: true,
			Source: "/etc/tattle/rules.d/corp.json", ReadOnly: true},
	}
}

func TestRulesTable(t *testing.T) {
	te := newTestEnv(t)
	te.h.rules = sampleRules()
	if code := te.run("rules", "list"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	want := `ID          ENABLED  ACTION  APPLICATION      REMOTE              PORT       PROTO  OWNER   DURATION                SOURCE
curl-https  yes      allow   /usr/bin/curl    any                 443        tcp    system  forever                 user
no-ads      no       deny    any              domain:ads.example  any        any    alice   until 2024-05-03 12:00  user
corp        yes      allow   /opt/corp/agent  10.0.0.0/8          8000-8100  udp    1234    forever                 /etc/tattle/rules.d/corp.json
`
	if te.out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", te.out, want)
	}
}

func TestRulesJSON(t *testing.T) {
	te := newTestEnv(t)
	te.h.rules = sampleRules()
	if code := te.run("rules", "list", "--json"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	var got []map[string]any
	if err := json.Unmarshal(te.out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, te.out)
	}
	if len(got) != 3 {
		t.Fatalf("%d rules", len(got))
	}
	// The same field names as rule files, plus where the rule lives.
	if got[0]["id"] != "curl-https" || got[0]["application"] != "/usr/bin/curl" || got[0]["owner"] != nil ||
		got[0]["source"] != "/var/lib/tattle/rules.json" || got[0]["read_only"] != false || got[0]["created"] != "2024-05-01T12:00:00Z" {
		t.Errorf("rule 0: %v", got[0])
	}
	if got[1]["owner"] != 1000.0 || got[1]["until"] != "2024-05-03T12:00:00Z" || got[1]["enabled"] != false {
		t.Errorf("rule 1: %v", got[1])
	}
	if got[2]["read_only"] != true {
		t.Errorf("rule 2: %v", got[2])
	}
	te.h.rules = nil
	te.run("rules", "list", "--json")
	if te.out.String() != "[]\n" {
		t.Errorf("no rules: %q", te.out)
	}
}

func TestStatus(t *testing.T) {
	te := newTestEnv(t)
	te.h.status = api.Status{Version: "0.1.0", Backend: "cgroup", Mode: "alert", Rules: 12, KernelEntries: 30, Problems: 1, EventsLost: 5,
		Pending: 2, Holding: "xtables NFQUEUE", Names: "DNS answers to local sockets (cgroup_skb capture)",
		Traffic: "off: eth0: add clsact qdisc: operation not supported"}
	te.h.problems = []api.Problem{{File: "/etc/tattle/rules.d/bad.json", Error: `rule 2: field "port": "x" is not a port`}}
	if code := te.run("status"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	want := `Version:         0.1.0
Backend:         cgroup
Mode:            alert
Rules:           12
Kernel entries:  30
Problems:        1
Events lost:     5
Holding:         xtables NFQUEUE
Host names:      DNS answers to local sockets (cgroup_skb capture)
Traffic:         off: eth0: add clsact qdisc: operation not supported
Questions open:  2
  /etc/tattle/rules.d/bad.json: rule 2: field "port": "x" is not a port
`
	if te.out.String() != want {
		t.Errorf("status:\n%s\nwant:\n%s", te.out, want)
	}
	te.run("status", "--json")
	if want := `{"version":"0.1.0","backend":"cgroup","mode":"alert","rules":12,"kernel_entries":30,"problems":1,"events_lost":5,"pending":2,"holding":"xtables NFQUEUE","names":"DNS answers to local sockets (cgroup_skb capture)","traffic":"off: eth0: add clsact qdisc: operation not supported"}` + "\n"; te.out.String() != want {
		t.Errorf("status --json: %s\nwant %s", te.out, want)
	}
}

func sampleFlows() []api.Flow {
	ms := func(d time.Duration) int64 { return testNow.Add(d).UnixMilli() }
	return []api.Flow{
		{Exe: "/usr/bin/curl", Dev: 2049, Ino: 11, UID: 1000, Dest: "93.184.215.14:443", Protocol: "tcp",
			Attempts: 3, Allowed: 3, FirstSeen: ms(-time.Hour), LastSeen: ms(-2 * time.Minute), LastPID: 77, Verdict: "allow", RuleID: "curl-https",
			TxBytes: 1536, RxBytes: 20 << 20, TxPackets: 3, RxPackets: 900},
		{Exe: "", Dev: 2049, Ino: 12, UID: 0, Dest: "[2001:db8::1]:53", Protocol: "udp",
			Attempts: 1, Undecided: 1, FirstSeen: ms(-48 * time.Hour), LastSeen: ms(-48 * time.Hour), Verdict: "undecided"},
		{Exe: "/usr/bin/python3.11", Dev: 2049, Ino: 13, UID: 4242, Dest: "127.0.0.1:8080", Protocol: "tcp",
			Attempts: 9, Denied: 9, FirstSeen: ms(-time.Minute), LastSeen: ms(-time.Second), Verdict: "deny"},
	}
}

func TestMonitorOnce(t *testing.T) {
	te := newTestEnv(t)
	te.h.flows = sampleFlows()
	if code := te.run("monitor", "--once"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	want := `APPLICATION               USER   DESTINATION             PROTO  ATTEMPTS  ALLOWED  DENIED  UNDECIDED  SENT     RECEIVED  VERDICT    LAST SEEN
/usr/bin/python3.11       4242   127.0.0.1:8080          tcp    9         0        9       0          0 B      0 B       deny       11:59:59
/usr/bin/curl             alice  93.184.215.14:443       tcp    3         3        0       0          1.5 KiB  20.0 MiB  allow      11:58:00
(unknown, inode 2049:12)  root   DNS server 2001:db8::1  udp    1         0        0       1          0 B      0 B       undecided  2024-04-29 12:00
`
	if te.out.String() != want {
		t.Errorf("monitor --once:\n%s\nwant:\n%s", te.out, want)
	}

	te.run("monitor", "--once", "--json")
	lines := strings.Split(strings.TrimSuffix(te.out.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("--json printed %d lines, want 1", len(lines))
	}
	var got []flowJSON
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil || len(got) != 3 {
		t.Fatalf("--json: %v: %s", err, lines[0])
	}
	if f := got[1]; f.Exe != "/usr/bin/curl" || f.User != "alice" || f.Destination != "93.184.215.14:443" ||
		f.LastSeen != "2024-05-01T11:58:00.000Z" || f.RuleID != "curl-https" || f.LastPID != 77 {
		t.Errorf("flow %+v", f)
	}
}

func TestMonitorRefreshes(t *testing.T) {
	te := newTestEnv(t)
	te.h.flows = sampleFlows()
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	code := run(ctx, []string{"monitor", "--json", "--interval", "100ms"}, te.env)
	if code != 0 {
		t.Fatalf("exit %d after Ctrl-C, want 0: %s", code, te.err)
	}
	if n := strings.Count(te.out.String(), "\n"); n < 3 {
		t.Errorf("%d refreshes in 350ms at 100ms", n)
	}

	// On a terminal the screen is redrawn and the table cut to its height.
	te = newTestEnv(t)
	te.h.flows = sampleFlows()
	te.terminal = true
	te.termRows = func() int { return 5 }
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	run(ctx, []string{"monitor"}, te.env)
	out := te.out.String()
	if !strings.HasPrefix(out, "\x1b[H\x1b[2J3 flows at 12:00:00") || !strings.Contains(out, "… 2 more") {
		t.Errorf("terminal output %q", out)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{&client.Error{Kind: client.Unreachable, Name: "org.freedesktop.DBus.Error.ServiceUnknown", Method: "x",
			Msg: "cannot reach tattled: The name io.github.tattlefw.Tattle1 was not provided by any .service files"},
			exitUnreachable, "tattlectl: cannot reach tattled: The name io.github.tattlefw.Tattle1 was not provided by any .service files\ntattlectl: is tattled installed? (sudo meson install -C build)\n"},
		{&client.Error{Kind: client.Unreachable, Msg: "cannot connect to the system bus: dial unix /run/dbus/system_bus_socket: connect: connection refused"},
			exitUnreachable, "is tattled installed? (sudo meson install -C build)"},
		{&client.Error{Kind: client.Unreachable, Name: "org.freedesktop.DBus.Error.Spawn.ChildExited", Method: "x", Msg: "tattled could not be started"},
			exitUnreachable, "journalctl -u tattled"},
		{&client.Error{Kind: client.AccessDenied, Name: api.ErrAccessDenied, Method: "x", Msg: "access denied: not authorized"},
			exitDenied, "tattlectl: access denied: not authorized\n"},
		{&client.Error{Kind: client.AccessDenied, Name: client.ErrInteractiveAuthorizationRequired, Method: "x", Msg: "access denied: needs a password"},
			exitDenied, "without --no-interactive"},
		{&client.Error{Kind: client.AccessDenied, Name: api.ErrAccessDenied, Method: "x",
			Msg: "access denied: not authorized to change the mode: needs io.github.tattlefw.tattle.manage-rules (the request did not allow interactive authentication)"},
			exitDenied, "run it without --no-interactive (or with sudo)"},
		{&client.Error{Kind: client.AccessDenied, Name: api.ErrAccessDenied, Method: "x", Msg: "access denied: Rejected send message, 1 matched rules"},
			exitDenied, "is tattled's bus policy installed?"},
		{&client.Error{Kind: client.InvalidArgs, Name: api.ErrInvalidArgs, Method: "x", Msg: `rule "a": field "port": bad`},
			exitFailed, "tattlectl: rule \"a\": field \"port\": bad\n"},
		{&client.Error{Kind: client.NotFound, Name: api.ErrNotFound, Method: "x", Msg: `no rule "zz"`}, exitFailed, `no rule "zz"`},
		{&client.Error{Kind: client.ReadOnly, Name: api.ErrReadOnly, Method: "x", Msg: "read-only"}, exitFailed, "read-only"},
		{&client.Error{Kind: client.Canceled, Method: "x", Msg: "interrupted"}, exitInterrupted, "interrupted"},
		{errors.New("open x: no such file"), exitFailed, "tattlectl: open x: no such file\n"},
		{usagef("bad"), exitUsage, "tattlectl: bad\ntattlectl: run 'tattlectl rules remove --help' for usage\n"},
	} {
		te := newTestEnv(t)
		te.h.err = tc.err
		code := te.run("rules", "remove", "zz")
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.err, code, tc.code)
		}
		if !strings.Contains(te.err.String(), tc.msg) {
			t.Errorf("%v: stderr %q, want %q", tc.err, te.err, tc.msg)
		}
	}

	// A D-Bus error reply, as the client classifies it, ends in the same codes.
	te := newTestEnv(t)
	te.connect = func(bool) (Helper, error) {
		return nil, &client.Error{Kind: client.Unreachable, Msg: "cannot connect to the system bus: connection refused", Err: dbus.ErrClosed}
	}
	if code := te.run("status"); code != exitUnreachable || !strings.Contains(te.err.String(), "is tattled installed?") {
		t.Errorf("no bus: exit %d, stderr %q", code, te.err)
	}
}

func TestCell(t *testing.T) {
	if got := cell("a\tb\x1b[31mc\n"); got != "a?b?[31mc?" {
		t.Errorf("cell = %q", got)
	}
	if cell("") != "-" {
		t.Error("empty cell")
	}
}

// A question covering many ports of one host says how many (issue 10).
func TestPortsLabel(t *testing.T) {
	q := api.Question{Port: 20000, PortCount: 3000, Ports: []uint16{20000, 20001, 20002, 20003, 20004, 20005, 20006, 20007, 20008}}
	if got, want := portsLabel(q), "3,000 ports (20000, 20001, 20002, 20003, 20004, 20005, 20006, 20007, …)"; got != want {
		t.Errorf("portsLabel = %q, want %q", got, want)
	}
	if got := portsLabel(api.Question{Port: 443, PortCount: 1, Ports: []uint16{443}}); got != "port 443" {
		t.Errorf("one port: %q", got)
	}
}

// A DNS query is shown as going to a DNS server, never under a host name that resolved to the same address.
func TestDNSServerShownAsSuch(t *testing.T) {
	var b strings.Builder
	showQuestion(&b, api.Question{ID: 1, Exe: "/usr/bin/x", Addr: "10.0.0.1", Port: 53, PortCount: 1, Protocol: "udp",
		Host: "router.example"}, 0, false, time.Now())
	if !strings.Contains(b.String(), "to:       DNS server 10.0.0.1 port 53 udp") || strings.Contains(b.String(), "router.example") {
		t.Errorf("question shows:\n%s", b.String())
	}
	if got := destLabel(api.Flow{Dest: "10.0.0.1:53", Host: "router.example"}); got != "DNS server 10.0.0.1" {
		t.Errorf("flow label %q", got)
	}
}

// A factory rule (shipped with Tattle) is marked as such in the table and in --json.
func TestRulesListMarksFactoryRules(t *testing.T) {
	factory := api.Rule{ID: "factory-ntp-chronyd", Application: "/usr/sbin/chronyd", Owner: api.NoOwner, Direction: "outgoing",
		Remote: "any", Port: "123", Protocol: "udp", Action: "allow", Duration: "forever", Enabled: true,
		Source: "/usr/share/tattle/rules.d/ntp.json", ReadOnly: true, Factory: true}
	te := newTestEnv(t)
	te.h.rules = append(sampleRules(), factory)
	if code := te.run("rules", "list"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	lines := strings.Split(strings.TrimSpace(te.out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "factory-ntp-chronyd") || !strings.HasSuffix(last, "Factory (ntp.json)") {
		t.Errorf("factory row %q", last)
	}
	if strings.Count(te.out.String(), "Factory") != 1 {
		t.Errorf("only the factory rule is marked:\n%s", te.out)
	}
	te = newTestEnv(t)
	te.h.rules = append(sampleRules(), factory)
	if code := te.run("rules", "list", "--json"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.err)
	}
	var got []map[string]any
	if err := json.Unmarshal(te.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got[3]["factory"] != true || got[3]["read_only"] != true || got[0]["factory"] != false || got[2]["factory"] != false {
		t.Errorf("factory field: %v / %v / %v", got[3], got[0], got[2])
	}
}
