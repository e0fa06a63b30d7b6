package rules

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fuzzFlows exercise Matches and Decide on whatever rules the fuzzer makes.
var fuzzFlows = []Flow{
	curlTo("192.0.2.7", 443, "www.example.com"),
	{AppPath: "/usr/bin/x", Flatpak: "org.example.App", UID: 0, Addr: netip.MustParseAddr("2001:db8::1"), Hostnames: []string{"a.b.c.example.", ""}, Port: 53, Proto: "udp"},
	{Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 1, Proto: "tcp"},
}

func anyList(list, host string, addr netip.Addr) bool { return len(list)%2 == 0 }

// checkRules holds what every rule the package hands out must satisfy: it validates, compiles, and matching
// and ordering it does not panic.
func checkRules(t *testing.T, rules []Rule) {
	t.Helper()
	ids := map[string]bool{}
	compiled := make([]Compiled, 0, len(rules))
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Fatalf("rule %+v does not validate: %v", r, err)
		}
		if ids[r.ID] {
			t.Fatalf("id %q appears twice", r.ID)
		}
		ids[r.ID] = true
		c, err := Compile(r)
		if err != nil {
			t.Fatalf("rule %+v does not compile: %v", r, err)
		}
		compiled = append(compiled, c)
	}
	for _, f := range fuzzFlows {
		for i := range compiled {
			compiled[i].Matches(f, anyList, t0)
		}
		Decide(compiled, f, anyList, t0)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleFile))
	f.Add([]byte(`{"version":1,"rules":[]}`))
	f.Add([]byte(fileWith(ruleJSON("", ""))))
	f.Add([]byte(fileWith(ruleJSON("remote", `"wildcard:*.cdn.example.*"`))))
	f.Add([]byte(fileWith(ruleJSON("remote", `"2001:db8::/32"`))))
	f.Add([]byte(fileWith(ruleJSON("owner", `1000`))))
	f.Add([]byte(fileWith(ruleJSON("duration", `"until-time", "until": "2030-01-01T00:00:00+02:00"`))))
	f.Add([]byte(fileWith(ruleJSON("port", `99999999999`))))
	f.Add([]byte(fileWith(ruleJSON("Port", `"443"`))))
	f.Add([]byte(fileWith(ruleJSON("note", `"a\u2028b \"q\" <&>"`))))
	f.Add([]byte(sampleFile[:len(sampleFile)/2]))
	f.Add([]byte(`{"version":2,"rules":[]}`))
	f.Add([]byte(`{"version":1,"rules":[]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.json", data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "fuzz.json") {
				t.Fatalf("error is not a *FieldError naming the file: %v", err)
			}
			return
		}
		checkRules(t, file.Rules)
		out, err := Marshal(file)
		if err != nil {
			if strings.Contains(err.Error(), "more than the") {
				return // escaping made the file too large to store; Marshal refusing it is right
			}
			t.Fatalf("Marshal refused what Parse accepted: %v", err)
		}
		again, err := Parse("again.json", out)
		if err != nil {
			t.Fatalf("Parse refused what Marshal wrote: %v\n%s", err, out)
		}
		if !equalFiles(file, again) {
			t.Fatalf("round trip changed the file:\n%+v\n%+v", file, again)
		}
		out2, err := Marshal(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

// checkImport holds what every import must satisfy. With store, the rules must also make a rule file that
// parses back; the fuzz targets leave that to FuzzParse, since it costs most of an iteration.
func checkImport(t *testing.T, rules []Rule, rep ImportReport, err error, store bool) {
	t.Helper()
	if err != nil {
		if rules != nil || rep.Imported != 0 {
			t.Fatalf("error %v with %d rules", err, len(rules))
		}
		return
	}
	if rep.Imported != len(rules) {
		t.Fatalf("report says %d imported, got %d", rep.Imported, len(rules))
	}
	checkRules(t, rules)
	if store && len(rules) <= MaxRulesPerFile {
		out, err := Marshal(&File{Version: FormatVersion, Rules: rules})
		if err != nil {
			if strings.Contains(err.Error(), "more than the") {
				return
			}
			t.Fatalf("imported rules do not make a file: %v", err)
		}
		if _, err := Parse("imported.json", out); err != nil {
			t.Fatalf("imported rules do not parse back: %v", err)
		}
	}
}

func FuzzImportLittleSnitch(f *testing.F) {
	f.Add([]byte(lsSample))
	f.Add([]byte(`{"name":"Social Media Block List","denied-remote-domains":["facebook.com","twitter.com"]}`))
	f.Add([]byte(`{"rules":[{"action":"allow","process":"/usr/bin/x","ports":"8000 - 8100, 22","remote-hosts":["a.example","192.0.2.1"]}]}`))
	f.Add([]byte(`{"rules":[{"action":"deny","process":"any","remote-addresses":"2001:db8::-2001:db8::ffff, 10.0.0.1-10.0.0.3"}]}`))
	f.Add([]byte(`{"rules":[{"action":"deny","process":"any","remote":"local-net","owner":"me"}]}`))
	f.Add([]byte(`{"rules":[1, null, "x", {"action":5}]}`))
	f.Add([]byte(`{"rules":{}}`))
	f.Add([]byte(lsSample[:len(lsSample)/3]))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, rep, err := ImportLittleSnitch("fuzz.lsrules", data, t0)
		checkImport(t, rules, rep, err, false)
		if err == nil {
			out, _, err := ExportLittleSnitch(rules)
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			back, rep, err := ImportLittleSnitch("export.lsrules", out, t0)
			checkImport(t, back, rep, err, false)
		}
	})
}

func FuzzImportOpenSnitch(f *testing.F) {
	for _, s := range osSamples {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"name":"r","action":"allow","duration":"5m","operator":{"type":"regexp","operand":"dest.host","data":"^(.+\\.)?example\\.org$"}}`))
	f.Add([]byte(`{"name":"r","action":"deny","duration":"always","operator":{"type":"list","operand":"list","list":[{"type":"simple","operand":"user.id","data":"4294967295"}]}}`))
	f.Add([]byte(`{"name":"r","action":"allow","operator":{"type":"lists","operand":"lists.nets","data":"/x"}}`))
	f.Add([]byte(`{"name":"r","action":"allow","operator":null}`))
	f.Add([]byte(`{"name": `))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, rep, err := ImportOpenSnitch("fuzz.json", data, t0)
		checkImport(t, rules, rep, err, false)
		if len(rules) > 1 {
			t.Fatalf("one OpenSnitch rule became %d", len(rules))
		}
	})
}

// TestImportedRulesStore checks the full import invariant, including storing, on the samples.
func TestImportedRulesStore(t *testing.T) {
	rules, rep, err := ImportLittleSnitch("dev.lsrules", []byte(lsSample), t0)
	checkImport(t, rules, rep, err, true)
	for name, s := range osSamples {
		rules, rep, err := ImportOpenSnitch(name+".json", []byte(s), t0)
		checkImport(t, rules, rep, err, true)
	}
}
