package rules

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Rule files as OpenSnitch (1.6) writes them to /etc/opensnitchd/rules.
var osSamples = map[string]string{
	"deny-analytics": `{
   "created": "2018-04-07T14:13:27.903996051+02:00",
   "updated": "2018-04-07T14:13:27.904060088+02:00",
   "name": "deny-simple-www-google-analytics-l-google-com",
   "enabled": true,
   "precedence": false,
   "action": "deny",
   "duration": "always",
   "operator": {
     "type": "simple",
     "sensitive": false,
     "operand": "dest.host",
     "data": "www-google-analytics.l.google.com"
   }
}`,
	"telnet-dns": `{
  "created": "2023-10-03T18:06:52.209804547+01:00",
  "updated": "2023-10-03T18:06:52.209857713+01:00",
  "name": "allow-telnet-dns",
  "description": "telnet may look up names",
  "enabled": true,
  "precedence": true,
  "nolog": false,
  "action": "allow",
  "duration": "always",
  "operator": {
    "type": "list",
    "operand": "list",
    "sensitive": false,
    "data": "[{\"type\": \"simple\", \"operand\": \"process.path\", \"sensitive\": false, \"data\": \"/usr/bin/telnet\"}, {\"type\": \"simple\", \"operand\": \"dest.port\", \"data\": \"53\", \"sensitive\": false}]",
    "list": [
      {"type": "simple", "operand": "process.path", "sensitive": false, "data": "/usr/bin/telnet", "list": null},
      {"type": "simple", "operand": "dest.port", "sensitive": false, "data": "53", "list": null}
    ]
  }
}`,
	"reject-lan-hour": `{"created":"2024-02-01T10:00:00Z","updated":"2024-02-01T10:00:00Z","name":"reject-lan","enabled":true,"precedence":false,
 "action":"reject","duration":"1h","operator":{"type":"network","operand":"dest.network","sensitive":false,"data":"10.1.2.3/8","list":null}}`,
	"domain-regexp": `{"name":"allow-example-and-subdomains","enabled":false,"precedence":false,"action":"allow","duration":"always",
 "operator":{"type":"list","operand":"list","list":[
   {"type":"simple","operand":"process.path","data":"/usr/lib/firefox/firefox"},
   {"type":"regexp","operand":"dest.host","data":"^(.*\\.)?Example\\.com$"}]}}`,
	"literal-regexp": `{"name":"allow-curl","enabled":true,"action":"allow","duration":"once",
 "operator":{"type":"regexp","operand":"process.path","data":"^/usr/bin/curl$"}}`,
	"user-ipv6": `{"name":"alice-v6-dns","enabled":true,"action":"allow","duration":"until restart",
 "operator":{"type":"list","operand":"list","list":[
   {"type":"simple","operand":"user.id","data":"1000"},
   {"type":"simple","operand":"protocol","data":"udp6"},
   {"type":"simple","operand":"dest.ip","data":"2001:db8::53"},
   {"type":"simple","operand":"dest.port","data":"53"}]}}`,
	"proto-widened": `{"name":"allow-ntp","enabled":true,"action":"allow","duration":"30s",
 "operator":{"type":"list","operand":"list","list":[
   {"type":"simple","operand":"process.path","data":"/usr/sbin/ntpd"},
   {"type":"simple","operand":"protocol","data":"udp"}]}}`,
	"everything": `{"name":"Allow Everything!","enabled":true,"action":"allow","duration":"always","operator":{"type":"simple","operand":"true","data":""}}`,
}

func TestImportOpenSnitch(t *testing.T) {
	type want struct {
		id, app, remote, port, proto, action, duration string
		owner                                          int64 // -1: none
		enabled                                        bool
		until                                          time.Duration
		report                                         string // part of the report, "" for none
	}
	for name, w := range map[string]want{
		"deny-analytics":  {"os-deny-simple-www-google-analytics-l-googl-", "any", "host:www-google-analytics.l.google.com", "any", "any", "deny", "forever", -1, true, 0, ""},
		"telnet-dns":      {"os-allow-telnet-dns", "/usr/bin/telnet", "any", "53", "any", "allow", "forever", -1, true, 0, ""},
		"reject-lan-hour": {"os-reject-lan", "any", "10.0.0.0/8", "any", "any", "deny", "until-time", -1, true, time.Hour, ""},
		"domain-regexp":   {"os-allow-example-and-subdomains", "/usr/lib/firefox/firefox", "domain:example.com", "any", "any", "allow", "forever", -1, false, 0, "imported disabled"},
		"user-ipv6":       {"os-alice-v6-dns", "any", "2001:db8::53", "53", "udp", "allow", "until-restart", 1000, true, 0, ""},
		"proto-widened":   {"os-allow-ntp", "/usr/sbin/ntpd", "0.0.0.0/0", "any", "udp", "allow", "until-time", -1, true, 30 * time.Second, ""},
		"everything":      {"os-allow-everything-", "any", "any", "any", "any", "allow", "forever", -1, true, 0, ""},
	} {
		rules, rep, err := ImportOpenSnitch(name+".json", []byte(osSamples[name]), t0)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(rules) != 1 || rep.Imported != 1 {
			t.Errorf("%s: %d rules, report %+v", name, len(rules), rep)
			continue
		}
		r := rules[0]
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		owner := int64(-1)
		if r.Owner != nil {
			owner = int64(*r.Owner)
		}
		if !strings.HasPrefix(r.ID, w.id) || r.Application != w.app || r.Remote != w.remote || r.Port != w.port || r.Protocol != w.proto ||
			r.Action != w.action || r.Duration != w.duration || owner != w.owner || r.Enabled != w.enabled {
			t.Errorf("%s: got %+v (owner %d)\nwant %+v", name, r, owner, w)
		}
		if w.until != 0 && !r.Until.Equal(t0.Add(w.until)) {
			t.Errorf("%s: until %v, want now+%v", name, r.Until, w.until)
		}
		report := strings.Join(rep.Skipped, "\n")
		if w.report == "" && report != "" || !strings.Contains(report, w.report) {
			t.Errorf("%s: report %q, want %q", name, report, w.report)
		}
		if !r.Created.Equal(t0) {
			t.Errorf("%s: created %v", name, r.Created)
		}
	}
}

func TestImportOpenSnitchSkips(t *testing.T) {
	rule := func(action, duration, operator string) string {
		return `{"name":"r","enabled":true,"precedence":false,"action":"` + action + `","duration":"` + duration + `","operator":` + operator + `}`
	}
	simple := func(operand, data string) string {
		return `{"type":"simple","operand":"` + operand + `","sensitive":false,"data":"` + data + `"}`
	}
	list := func(ops ...string) string {
		return `{"type":"list","operand":"list","list":[` + strings.Join(ops, ",") + `]}`
	}
	for name, c := range map[string][2]string{
		"regexp":            {rule("deny", "always", `{"type":"regexp","operand":"dest.host","data":".*\\.google\\.com"}`), "open-ended set of values"},
		"invalid regexp":    {rule("deny", "always", `{"type":"regexp","operand":"dest.host","data":"^(a"}`), "is invalid"},
		"once":              {rule("allow", "once", simple("dest.host", "a.example")), "duration \"once\""},
		"block lists":       {rule("deny", "always", `{"type":"lists","operand":"lists.domains","data":"/etc/opensnitchd/blocklists/ads"}`), "was not given to the import"},
		"command line":      {rule("allow", "always", simple("process.command", "python3 -m http.server")), "command line"},
		"environment":       {rule("allow", "always", simple("process.env.HOME", "/root")), "environment variable HOME"},
		"hash":              {rule("allow", "always", simple("process.hash.md5", "d41d8cd98f00b204e9800998ecf8427e")), "checksum"},
		"interface":         {rule("allow", "always", list(simple("process.path", "/usr/bin/x"), simple("iface.out", "wg0"))), "iface.out"},
		"source address":    {rule("allow", "always", simple("source.ip", "192.0.2.1")), "source.ip"},
		"host and address":  {rule("allow", "always", list(simple("dest.host", "a.example"), simple("dest.ip", "192.0.2.1"))), "which one Tattle rule cannot express"},
		"two hosts":         {rule("allow", "always", list(simple("dest.host", "a.example"), simple("dest.host", "b.example"))), "can never match"},
		"two users":         {rule("allow", "always", list(simple("user.id", "1000"), simple("user.id", "1001"))), "can never match"},
		"port range":        {rule("allow", "always", simple("dest.port", "80-90")), "can never match"},
		"bad port":          {rule("allow", "always", simple("dest.port", "70000")), "can never match"},
		"icmp":              {rule("deny", "always", simple("protocol", "icmp")), "can never match"},
		"relative path":     {rule("allow", "always", simple("process.path", "firefox")), "can never match"},
		"bad address":       {rule("allow", "always", simple("dest.ip", "300.0.0.1")), "can never match"},
		"bad network":       {rule("allow", "always", `{"type":"network","operand":"dest.network","data":"10.0.0.0"}`), "not a network"},
		"bad host":          {rule("allow", "always", simple("dest.host", "a b.example")), "can never match"},
		"bad uid":           {rule("allow", "always", simple("user.id", "alice")), "can never match"},
		"unknown type":      {rule("allow", "always", `{"type":"complex","operand":"dest.host","data":"x"}`), "not understood"},
		"ask":               {rule("ask", "always", simple("dest.host", "a.example")), "not allow, deny or reject"},
		"unknown duration":  {rule("allow", "forever and ever", simple("dest.host", "a.example")), "duration"},
		"negative duration": {rule("allow", "-5m", simple("dest.host", "a.example")), "duration"},
		"nested too deep":   {rule("allow", "always", strings.Repeat(`{"type":"list","operand":"list","list":[`, 40)+simple("dest.host", "a.example")+strings.Repeat(`]}`, 40)), "nested"},
		"empty list":        {rule("allow", "always", `{"type":"list","operand":"list","list":[]}`), "list is empty"},
		"legacy list junk":  {rule("allow", "always", `{"type":"list","operand":"list","data":"[{not json"}`), "not a JSON list"},
	} {
		rules, rep, err := ImportOpenSnitch(name+".json", []byte(c[0]), t0)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		report := strings.Join(rep.Skipped, "\n")
		if len(rules) != 0 || rep.Imported != 0 || !strings.Contains(report, c[1]) || !strings.Contains(report, name+".json:1:1") {
			t.Errorf("%s: %d rules, report %q; want it skipped for %q", name, len(rules), report, c[1])
		}
	}
}

func TestImportOpenSnitchRefusesNonRules(t *testing.T) {
	for name, input := range map[string]string{
		"not JSON":      `{"name": `,
		"a list":        `[]`,
		"no operator":   `{"name":"x","action":"allow","duration":"always"}`,
		"wrong type":    `{"name":"x","enabled":"yes","action":"allow","operator":{"type":"simple","operand":"true"}}`,
		"trailing data": `{"name":"x","action":"allow","operator":{"type":"simple","operand":"true"}} x`,
	} {
		if _, _, err := ImportOpenSnitch("/etc/opensnitchd/rules/x.json", []byte(input), t0); err == nil || !strings.Contains(err.Error(), "x.json") {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
}

func TestOpenSnitchIDs(t *testing.T) {
	for _, c := range [][3]string{
		{"allow-curl", "x.json", "os-allow-curl"},
		{"", "/etc/opensnitchd/rules/allow-curl.json", "os-allow-curl"},
		{"Allow Curl", "x.json", "os-allow-curl-"},
		{"", "", "os-"},
	} {
		if got := osID(c[0], c[1]); !strings.HasPrefix(got, c[2]) || checkID(got) != "" {
			t.Errorf("osID(%q, %q) = %q, want %q…", c[0], c[1], got, c[2])
		}
	}
	if osID("Allow Curl", "") == osID("allow curl", "") {
		t.Error("names that differ only in case get the same id")
	}
	long := strings.Repeat("a", 200)
	if id := osID(long, ""); len(id) > MaxIDLen || id == osID(long+"b", "") {
		t.Errorf("long names: %q", id)
	}
}

// The older form of a list operator (its members as a JSON string in data) means its members: never an
// allow-everything rule.
func TestOpenSnitchLegacyListForm(t *testing.T) {
	legacy := `{"name":"allow-dig","enabled":true,"action":"allow","duration":"always","operator":{"type":"list","operand":"list",
	 "data":"[{\"type\":\"simple\",\"operand\":\"process.path\",\"data\":\"/usr/bin/dig\"},{\"type\":\"simple\",\"operand\":\"dest.port\",\"data\":\"53\"}]","list":null}}`
	rules, _, err := ImportOpenSnitch("allow-dig.json", []byte(legacy), t0)
	if err != nil || len(rules) != 1 {
		t.Fatalf("%v, %d rules", err, len(rules))
	}
	if r := rules[0]; r.Application != "/usr/bin/dig" || r.Port != "53" || r.Remote != Any || !r.Enabled {
		t.Errorf("legacy list imported as %+v", r)
	}
}

// OpenSnitch's order, not Tattle's precedence: a precedence allow for localhost before a per-application
// deny keeps localhost allowed for that application; a precedence allow for one host before a global deny of
// it keeps it allowed.
func TestOpenSnitchOrderKept(t *testing.T) {
	rule := func(name, action string, prec bool, op string) SourceFile {
		return SourceFile{Name: name + ".json", Data: []byte(`{"name":"` + name + `","enabled":true,"precedence":` + strconv.FormatBool(prec) +
			`,"action":"` + action + `","duration":"always","operator":` + op + `}`)}
	}
	localhost := rule("000-allow-localhost", "allow", true, `{"type":"network","operand":"dest.network","data":"127.0.0.0/8"}`)
	denyFirefox := rule("010-deny-firefox", "deny", false, `{"type":"simple","operand":"process.path","data":"/usr/bin/firefox"}`)
	allowCurl := rule("020-allow-curl-example", "allow", true, `{"type":"list","operand":"list","list":[{"type":"simple","operand":"process.path","data":"/usr/bin/curl"},{"type":"simple","operand":"dest.host","data":"example.com"}]}`)
	denyExample := rule("030-deny-example", "deny", false, `{"type":"simple","operand":"dest.host","data":"example.com"}`)
	var cs []Compiled
	for _, set := range [][]SourceFile{{localhost, denyFirefox}, {allowCurl, denyExample}} {
		res, err := ImportOpenSnitchSet(set, nil, ImportOptions{Now: t0})
		if err != nil || len(res.Rules) == 0 {
			t.Fatalf("%v, %+v", err, res)
		}
		for _, r := range res.Rules {
			c, err := Compile(r)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
	}
	for _, c := range []struct {
		f    Flow
		want string
	}{
		{Flow{AppPath: "/usr/bin/firefox", Addr: netip.MustParseAddr("127.0.0.1"), Port: 80, Proto: "tcp"}, ActionAllow},
		{Flow{AppPath: "/usr/bin/firefox", Addr: netip.MustParseAddr("192.0.2.1"), Port: 80, Proto: "tcp"}, ActionDeny},
		{Flow{AppPath: "/usr/bin/curl", Addr: netip.MustParseAddr("192.0.2.1"), Hostnames: []string{"example.com"}, Port: 443, Proto: "tcp"}, ActionAllow},
		{Flow{AppPath: "/usr/bin/wget", Addr: netip.MustParseAddr("192.0.2.1"), Hostnames: []string{"example.com"}, Port: 443, Proto: "tcp"}, ActionDeny},
	} {
		got := "none"
		if d := Decide(cs, c.f, nil, t0); d != nil {
			got = d.Rule.Action
		}
		if got != c.want {
			t.Errorf("%s to %v %v: %s, want %s", c.f.AppPath, c.f.Addr, c.f.Hostnames, got, c.want)
		}
	}
	// All four together cannot be kept: a name may resolve into 127.0.0.0/8, where OpenSnitch lets the
	// localhost rule decide and Tattle ranks the name rule higher; no one Tattle rule says "this name at
	// these addresses". The set is refused with that reason, not imported with a different meaning.
	res, err := ImportOpenSnitchSet([]SourceFile{localhost, denyFirefox, allowCurl, denyExample}, nil, ImportOptions{Now: t0})
	if err != nil || len(res.Rules) != 0 || res.Report.Refused != 4 || !strings.Contains(strings.Join(res.Report.Skipped, "\n"), "no Tattle rule can cover the connections both match") {
		t.Errorf("conflicting set: %v, %+v", err, res)
	}
}
