package rules

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const sampleFile = `{
  "version": 1,
  "name": "Office policy",
  "rules": [
    {
      "id": "curl-example",
      "application": "/usr/bin/curl",
      "direction": "outgoing",
      "remote": "domain:example.com",
      "port": "443",
      "protocol": "tcp",
      "action": "allow",
      "duration": "forever",
      "enabled": true,
      "note": "release downloads <& friends>",
      "created": "2024-05-01T12:00:00Z",
      "modified": "2024-05-02T08:30:00.5+02:00"
    },
    {
      "id": "block-ads",
      "application": "any",
      "remote": "list:ads",
      "port": "any",
      "protocol": "any",
      "action": "deny",
      "duration": "forever",
      "enabled": true
    },
    {
      "id": "alice-ssh",
      "application": "flatpak:org.gnome.Boxes",
      "owner": 1000,
      "direction": "outgoing",
      "remote": "10.0.0.0/8",
      "port": "22-2222",
      "protocol": "tcp",
      "action": "allow",
      "duration": "until-time",
      "until": "2030-01-01T00:00:00Z",
      "enabled": false,
      "created": "2024-05-01T12:00:00Z",
      "modified": "2024-05-01T12:00:00Z"
    }
  ]
}
`

func TestParseSample(t *testing.T) {
	f, err := Parse("10-office.json", []byte(sampleFile))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 1 || f.Name != "Office policy" || len(f.Rules) != 3 {
		t.Fatalf("got %+v", f)
	}
	r := f.Rules[2]
	if r.Owner == nil || *r.Owner != 1000 || !r.Until.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) || r.Enabled {
		t.Errorf("rule 3: %+v", r)
	}
	if f.Rules[1].Direction != "outgoing" {
		t.Errorf("a missing direction was read as %q", f.Rules[1].Direction)
	}
	if f.Rules[1].Owner != nil || !f.Rules[1].Created.IsZero() {
		t.Errorf("rule 2: %+v", f.Rules[1])
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	f, err := Parse("a.json", []byte(sampleFile))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out, []byte("}\n")) || !bytes.Contains(out, []byte("\n  \"rules\": [")) {
		t.Errorf("not indented JSON with a trailing newline:\n%s", out)
	}
	if bytes.Contains(out, []byte(`"until"`)) != true || bytes.Count(out, []byte(`"until"`)) != 1 {
		t.Errorf("until is written for other durations too:\n%s", out)
	}
	if !bytes.Contains(out, []byte("<& friends>")) {
		t.Errorf("HTML characters were escaped:\n%s", out)
	}
	g, err := Parse("b.json", out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if !equalFiles(f, g) {
		t.Errorf("round trip changed the file:\n%+v\n%+v", f, g)
	}
	again, err := Marshal(g)
	if err != nil || !bytes.Equal(out, again) {
		t.Errorf("Marshal is not stable (%v):\n%s\n---\n%s", err, out, again)
	}
}

func TestMarshalValidates(t *testing.T) {
	good := goodRule()
	bad := goodRule()
	bad.ID = "second"
	bad.Protocol = "icmp"
	for name, f := range map[string]*File{
		"nil":          nil,
		"version 0":    {Rules: []Rule{good}},
		"bad rule":     {Version: 1, Rules: []Rule{good, bad}},
		"duplicate id": {Version: 1, Rules: []Rule{good, good}},
		"bad name":     {Version: 1, Name: "a\nb"},
	} {
		if _, err := Marshal(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	out, err := Marshal(&File{Version: 1})
	if err != nil || !bytes.Contains(out, []byte(`"rules": []`)) {
		t.Errorf("an empty file is written as %s (%v); want an empty rules list", out, err)
	}
	r := goodRule()
	r.Direction = ""
	f := &File{Version: 1, Rules: []Rule{r}}
	out, _ = Marshal(f)
	if !bytes.Contains(out, []byte(`"direction": "outgoing"`)) || f.Rules[0].Direction != "" {
		t.Errorf("direction not filled in the output, or the input was changed:\n%s", out)
	}
}

// ruleJSON returns one rule's JSON with a field replaced (value is raw JSON) or, with value "", removed.
func ruleJSON(field, value string) string {
	fields := []struct{ k, v string }{
		{"id", `"block-ads"`}, {"application", `"any"`}, {"remote", `"domain:ads.example"`}, {"port", `"any"`},
		{"protocol", `"any"`}, {"action", `"deny"`}, {"duration", `"forever"`}, {"enabled", `true`},
	}
	var parts []string
	found := false
	for _, f := range fields {
		if f.k == field {
			found = true
			if value == "" {
				continue
			}
			f.v = value
		}
		parts = append(parts, fmt.Sprintf("%q: %s", f.k, f.v))
	}
	if !found && value != "" {
		parts = append(parts, fmt.Sprintf("%q: %s", field, value))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// fileWith puts the given rule as the third rule of a file after two good ones.
func fileWith(rule string) string {
	return `{"version": 1, "rules": [
  ` + strings.Replace(ruleJSON("", ""), "block-ads", "one", 1) + `,
  ` + strings.Replace(ruleJSON("", ""), "block-ads", "two", 1) + `,
  ` + rule + `
]}`
}

// manyRules is a rules file of n distinct deny-everything rules.
func manyRules(n int) string {
	var b strings.Builder
	b.WriteString(`{"version":1,"rules":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"r%d","application":"any","remote":"any","port":"any","protocol":"any","action":"deny","duration":"forever","enabled":true}`, i)
	}
	b.WriteString("]}")
	return b.String()
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		input string
		want  []string // parts of the message besides the file name
	}{
		{"truncated in a rule", fileWith(ruleJSON("", ""))[:len(fileWith(ruleJSON("", "")))-30], []string{"rule 3", "ends early", "truncated"}},
		{"truncated at top level", `{"version": 1, "rul`, []string{"ends early"}},
		{"truncated after the rules", `{"version": 1, "rules": []`, []string{"ends early"}},
		{"empty input", ``, []string{"ends early"}},
		{"syntax error in a rule", fileWith(`{"id": "block-ads", "port": "any",, }`), []string{"rule 3", "invalid JSON", "line 4"}},
		{"not an object", `[]`, []string{"JSON object", "found a list"}},
		{"rule not an object", fileWith(`"x"`), []string{"rule 3", "JSON object", "a string"}},
		{"rules not a list", `{"version":1,"rules":{}}`, []string{`field "rules"`, "list of rules"}},
		{"rules null", `{"version":1,"rules":null}`, []string{`field "rules"`, "list of rules"}},
		{"trailing data", `{"version":1,"rules":[]} {}`, []string{"more data", "line 1, column 26"}},
		{"trailing garbage", `{"version":1,"rules":[]} x`, []string{"invalid JSON"}},
		{"unknown top-level field", `{"version":1,"rules":[],"comment":"x"}`, []string{`field "comment"`, "not a rule file field"}},
		{"duplicate top-level field", `{"version":1,"rules":[],"rules":[]}`, []string{`field "rules"`, "twice"}},
		{"bad version", `{"version":2,"rules":[]}`, []string{`field "version"`, "version 2 is not supported"}},
		{"newer format", `{"version":2,"rules":[{"id":"x","scope":"new"}]}`, []string{`field "version"`, "version 2 is not supported", "upgrade Tattle"}},
		{"version as string", `{"version":"1","rules":[]}`, []string{`field "version"`, `not "1"`}},
		{"version fraction", `{"version":1.5,"rules":[]}`, []string{`field "version"`, "number 1"}},
		{"version null", `{"version":null,"rules":[]}`, []string{`field "version"`}},
		{"missing version", `{"rules":[]}`, []string{`field "version"`, "missing"}},
		{"missing rules", `{"version":1}`, []string{`field "rules"`, "missing"}},
		{"name not a string", `{"version":1,"name":7,"rules":[]}`, []string{`field "name"`, "must be a string"}},
		{"name with newline", `{"version":1,"name":"a\nb","rules":[]}`, []string{`field "name"`, "control character"}},
		{"unknown rule field", fileWith(ruleJSON("prot", `"tcp"`)), []string{`rule 3 (id "block-ads")`, `field "prot"`, "not a rule field"}},
		{"field in wrong case", fileWith(ruleJSON("Port", `"443"`)), []string{`rule 3 (id "block-ads")`, `field "Port"`, `did you mean "port"`}},
		{"field twice", fileWith(strings.Replace(ruleJSON("", ""), `"port": "any"`, `"port": "any", "port": "443"`, 1)), []string{`rule 3 (id "block-ads")`, `field "port"`, "twice"}},
		{"port as number", fileWith(ruleJSON("port", `443`)), []string{`rule 3 (id "block-ads")`, `field "port"`, "not a number", "line 4"}},
		{"huge port number", fileWith(ruleJSON("port", `99999999999`)), []string{`rule 3 (id "block-ads")`, `field "port"`, "not a number"}},
		{"huge port string", fileWith(ruleJSON("port", `"99999999999"`)), []string{`rule 3 (id "block-ads")`, `field "port"`, "out of range 1-65535"}},
		{"port null", fileWith(ruleJSON("port", `null`)), []string{`rule 3 (id "block-ads")`, `field "port"`, "not null"}},
		{"port list", fileWith(ruleJSON("port", `["80"]`)), []string{`rule 3 (id "block-ads")`, `field "port"`, "not a list"}},
		{"enabled as string", fileWith(ruleJSON("enabled", `"yes"`)), []string{`rule 3 (id "block-ads")`, `field "enabled"`, "true or false", "not a string"}},
		{"enabled missing", fileWith(ruleJSON("enabled", "")), []string{`rule 3 (id "block-ads")`, `field "enabled"`, "missing"}},
		{"id missing", fileWith(ruleJSON("id", "")), []string{"rule 3", `field "id"`, "missing"}},
		{"id as number", fileWith(ruleJSON("id", "7")), []string{"rule 3", `field "id"`, "not a number"}},
		{"owner negative", fileWith(ruleJSON("owner", "-1")), []string{`rule 3 (id "block-ads")`, `field "owner"`, "-1 is not a user id"}},
		{"owner huge", fileWith(ruleJSON("owner", "99999999999")), []string{`rule 3 (id "block-ads")`, `field "owner"`, "99999999999 is not a user id"}},
		{"owner fraction", fileWith(ruleJSON("owner", "1000.5")), []string{`rule 3 (id "block-ads")`, `field "owner"`, "not a user id"}},
		{"owner as string", fileWith(ruleJSON("owner", `"1000"`)), []string{`rule 3 (id "block-ads")`, `field "owner"`, "not a string"}},
		{"owner any uid", fileWith(ruleJSON("owner", "4294967295")), []string{`rule 3 (id "block-ads")`, `field "owner"`, "not a user id"}},
		{"bad time", fileWith(ruleJSON("created", `"yesterday"`)), []string{`rule 3 (id "block-ads")`, `field "created"`, "not a time"}},
		{"time as number", fileWith(ruleJSON("created", `1714564800`)), []string{`rule 3 (id "block-ads")`, `field "created"`, "not a number"}},
		{"bad value", fileWith(ruleJSON("protocol", `"icmp"`)), []string{`rule 3 (id "block-ads")`, `field "protocol"`, `"icmp" is not supported`}},
		{"until without until-time", fileWith(ruleJSON("until", `"2030-01-01T00:00:00Z"`)), []string{`rule 3 (id "block-ads")`, `field "until"`}},
		{"huge note", fileWith(ruleJSON("note", `"`+strings.Repeat("x", 2<<20)+`"`)), []string{`rule 3 (id "block-ads")`, `field "note"`, "2097152 bytes"}},
		{"huge unknown field name", fileWith(ruleJSON(strings.Repeat("k", 1<<20), `1`)), []string{`rule 3 (id "block-ads")`, "not a rule field"}},
		{"duplicate ids", fileWith(strings.Replace(ruleJSON("", ""), "block-ads", "one", 1)), []string{`rule 3 (id "one")`, `field "id"`, "rule 1 has the same id"}},
		{"too many rules", manyRules(MaxRulesPerFile + 1), []string{"rule 10001", "at most 10000 rules"}},
		{"invalid UTF-8", "{\"version\":1,\"name\":\"\xff\",\"rules\":[]}", []string{"not UTF-8", "byte 21"}},
		{"byte-order mark", "\xef\xbb\xbf{}", []string{"byte-order mark"}},
		{"too large", `{"version":1,"name":"` + strings.Repeat(" ", MaxFileSize) + `","rules":[]}`, []string{"more than the 16777216"}},
	} {
		_, err := Parse("/etc/tattle/rules.d/10-admin.json", []byte(c.input))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want a *FieldError", c.name, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "/etc/tattle/rules.d/10-admin.json: ") {
			t.Errorf("%s: %q does not start with the file name", c.name, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not contain %q", c.name, msg, w)
			}
		}
		if len(msg) > 1000 {
			t.Errorf("%s: message of %d bytes", c.name, len(msg))
		}
	}
}

func TestParseAcceptsLimits(t *testing.T) {
	f, err := Parse("big.json", []byte(manyRules(MaxRulesPerFile)))
	if err != nil || len(f.Rules) != MaxRulesPerFile {
		t.Fatalf("%d rules: %v", MaxRulesPerFile, err)
	}
	if _, err := Marshal(f); err != nil {
		t.Fatal(err)
	}
	f, err = Parse("null-optionals.json", []byte(fileWith(ruleJSON("owner", "null")[:len(ruleJSON("owner", "null"))-1]+`, "note": null, "until": null}`)))
	if err != nil || f.Rules[2].Owner != nil || f.Rules[2].Note != "" {
		t.Errorf("null for optional fields: %v", err)
	}
}
