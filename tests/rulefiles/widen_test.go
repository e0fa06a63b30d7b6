package rulefiles

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tattlefw/tattle/shared/rules"
)

// lsmRule is a generated Little Snitch rule and what it means, for the model below.
type lsmRule map[string]any

// lsFlow is a connection as Little Snitch would see it: with the program it was made via.
type lsFlow struct {
	f   rules.Flow
	via string
}

// firefoxPrograms is what the documented table (shared/rules/appmap.json) says org.mozilla.firefox is on
// Linux; the model reads the table itself.
func firefoxPrograms(t *testing.T) map[string]bool {
	data, err := os.ReadFile(filepath.Join("..", "..", "shared", "rules", "appmap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Apps []struct {
			Bundles, Linux, Flatpak, Snap []string
		}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, a := range m.Apps {
		if len(a.Bundles) > 0 && a.Bundles[0] == "org.mozilla.firefox" {
			for _, p := range a.Linux {
				out[p] = true
			}
		}
	}
	return out
}

// lsmMatches is Little Snitch's meaning of one rule for an outgoing connection, from its documentation:
// every condition given must hold; remotes, ports and protocols list alternatives.
func lsmMatches(r lsmRule, c lsFlow, me uint32, firefox map[string]bool) bool {
	str := func(k string) string { s, _ := r[k].(string); return s }
	if d, _ := r["disabled"].(bool); d {
		return false
	}
	if _, unknown := r["x-unknown"]; unknown {
		return false // a key of unknown meaning: assume it excludes everything (the strictest reading)
	}
	switch p := str("process"); {
	case p == "any":
	case p == "org.mozilla.firefox":
		if !firefox[c.f.AppPath] {
			return false
		}
	case p != c.f.AppPath:
		return false
	}
	if v := str("via"); v != "" && v != c.via {
		return false
	}
	if str("owner") == "me" && c.f.UID != me {
		return false
	}
	if str("direction") == "incoming" {
		return false
	}
	if p := str("protocol"); p != "" && p != "any" {
		ok := false
		for _, w := range strings.Split(p, ",") {
			if strings.TrimSpace(w) == c.f.Proto {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if p := str("ports"); p != "" && p != "any" {
		ok := false
		for _, w := range strings.Split(p, ",") {
			lo, hi, _ := strings.Cut(strings.TrimSpace(w), "-")
			l, _ := strconv.Atoi(lo)
			h := l
			if hi != "" {
				h, _ = strconv.Atoi(hi)
			}
			if int(c.f.Port) >= l && int(c.f.Port) <= h {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if rem := str("remote"); rem == "any" {
		return true
	} else if rem != "" {
		return netip.MustParsePrefix("192.168.0.0/16").Contains(c.f.Addr) // a network category: some of the addresses
	}
	hosts, _ := r["remote-hosts"].([]string)
	domains, _ := r["remote-domains"].([]string)
	addrs, _ := r["remote-addresses"].(string)
	if len(hosts) == 0 && len(domains) == 0 && addrs == "" {
		return true
	}
	for _, h := range c.f.Hostnames {
		for _, x := range hosts {
			if x == h {
				return true
			}
		}
		for _, d := range domains {
			if h == d || strings.HasSuffix(h, "."+d) {
				return true
			}
		}
	}
	for _, a := range strings.Split(addrs, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(a)); err == nil && p.Contains(c.f.Addr) {
			return true
		}
		if x, err := netip.ParseAddr(strings.TrimSpace(a)); err == nil && x == c.f.Addr {
			return true
		}
		if lo, hi, ok := strings.Cut(strings.TrimSpace(a), "-"); ok {
			l, e1 := netip.ParseAddr(lo)
			h, e2 := netip.ParseAddr(hi)
			if e1 == nil && e2 == nil && l.BitLen() == c.f.Addr.BitLen() && l.Compare(c.f.Addr) <= 0 && c.f.Addr.Compare(h) <= 0 {
				return true
			}
		}
	}
	return false
}

func genLSRule(r *rand.Rand) lsmRule {
	rule := lsmRule{"action": pick(r, []string{"allow", "allow", "deny", "deny", "ask"}),
		"process": pick(r, []string{"any", "/usr/bin/curl", "/usr/bin/git", "org.mozilla.firefox", "com.unknown.App"})}
	maybe := func(k string, vs ...any) {
		if r.IntN(3) == 0 {
			rule[k] = pick(r, vs)
		}
	}
	maybe("via", "/usr/bin/pip")
	maybe("owner", "me", "any")
	maybe("direction", "outgoing", "incoming", "any", "both")
	maybe("protocol", "tcp", "udp", "udp,tcp", "icmp", "tcp,icmp")
	maybe("ports", "443", "80-90", "22, 443", "any")
	maybe("disabled", true, false)
	maybe("notes", "to %REMOTE%")
	maybe("creationDate", 712345678.5)
	if r.IntN(10) == 0 {
		rule["x-unknown"] = "y"
	}
	switch r.IntN(5) {
	case 0:
		rule["remote"] = pick(r, []string{"any", "local-net", "bonjour"})
	case 1:
		rule["remote-hosts"] = []string{pick(r, []string{"a.test", "b.test"}), "www.c.test"}
	case 2:
		rule["remote-domains"] = []string{pick(r, []string{"c.test", "d.test"})}
	case 3:
		rule["remote-addresses"] = pick(r, []string{"192.0.2.0/24", "192.168.1.1, 203.0.113.5", "198.51.100.10-198.51.100.20"})
	}
	return rule
}

// Issue 14, must show 3: over generated Little Snitch files, every flow the imported rules allow, a rule of
// the source allows, and every flow they deny, a rule of the source denies (the source's meaning from
// Little Snitch's documentation: lsmMatches); imported for everyone and for user 1000. Generated OpenSnitch
// sets are either refused or decide every flow as the independent model of OpenSnitch does.
func TestImportNeverWidens(t *testing.T) {
	firefox := firefoxPrograms(t)
	rng := rand.New(rand.NewPCG(14, 3))
	const files, flows = 400, 250
	checked, allowed, denied := 0, 0, 0
	hostsV := []string{"a.test", "b.test", "www.c.test", "x.c.test", "d.test", "e.test"}
	addrsV := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("203.0.113.5"),
		netip.MustParseAddr("198.51.100.15"), netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("2001:db8::1")}
	for i := 0; i < files; i++ {
		var src []lsmRule
		for n := rng.IntN(8); n >= 0; n-- {
			src = append(src, genLSRule(rng))
		}
		top := map[string]any{"name": fmt.Sprintf("gen %d", i), "rules": src}
		if rng.IntN(4) == 0 {
			var ds []string
			for k := 0; k < 150+rng.IntN(200); k++ {
				ds = append(ds, fmt.Sprintf("blk%d.test", k))
			}
			ds = append(ds, "e.test")
			top["denied-remote-domains"] = ds
		}
		if rng.IntN(5) == 0 {
			top["allowed-remote-hosts"] = []string{"d.test"}
		}
		data, _ := json.Marshal(top)
		for _, user := range []*uint32{nil, ptr(1000)} {
			res, err := rules.ImportLittleSnitchFile("gen.lsrules", data, rules.ImportOptions{Now: t0, Owner: user})
			if err != nil {
				t.Fatalf("file %d: %v\n%s", i, err, data)
			}
			compiled := compileAll(t, res.Rules)
			lookup := tattleLists(t, res.Lists)
			// The block list keys are rules for any process with the key's action.
			all := append([]lsmRule{}, src...)
			if ds, ok := top["denied-remote-domains"].([]string); ok {
				all = append(all, lsmRule{"action": "deny", "process": "any", "remote-domains": ds})
			}
			if hs, ok := top["allowed-remote-hosts"].([]string); ok {
				all = append(all, lsmRule{"action": "allow", "process": "any", "remote-hosts": hs})
			}
			me := uint32(1000)
			for k := 0; k < flows; k++ {
				f := rules.Flow{AppPath: pick(rng, []string{"/usr/bin/curl", "/usr/bin/git", "/usr/lib/firefox-esr/firefox-esr", "/usr/bin/other"}),
					UID: pick(rng, []uint32{0, 1000, 1001}), Addr: pick(rng, addrsV), Port: pick(rng, []uint16{22, 80, 85, 443, 8080}),
					Proto: pick(rng, []string{"tcp", "udp"})}
				if rng.IntN(4) != 0 {
					f.Hostnames = []string{pick(rng, append(hostsV, fmt.Sprintf("blk%d.test", rng.IntN(400))))}
				}
				c := lsFlow{f: f, via: pick(rng, []string{"", "/usr/bin/pip"})}
				if user != nil && f.UID != *user {
					continue // a user's import is about that user's processes
				}
				d := rules.Decide(compiled, f, lookup, t0)
				if d == nil {
					continue
				}
				checked++
				ok := false
				for _, r := range all {
					if r["action"] == d.Rule.Action && lsmMatches(r, c, me, firefox) {
						ok = true
						break
					}
				}
				if d.Rule.Action == "allow" {
					allowed++
				} else {
					denied++
				}
				if !ok {
					t.Fatalf("file %d: imported rule %s %ss %+v (via %q), which no %s rule of the source covers\n%s", i, d.Rule.ID, d.Rule.Action, f, c.via, d.Rule.Action, data)
				}
			}
		}
	}
	if allowed == 0 || denied == 0 {
		t.Fatalf("the generator made no decisions of one kind (%d allowed, %d denied)", allowed, denied)
	}
	report.add(t, "never widens: %d generated Little Snitch files (system and --user imports), %d flows decided by imported rules (%d allowed, %d denied): every one covered by a source rule of the same action", files, checked, allowed, denied)

	// OpenSnitch: generated sets, imported exactly or refused, never different.
	dir := t.TempDir()
	imported, refused := 0, 0
	for i := 0; i < 150; i++ {
		set := filepath.Join(dir, strconv.Itoa(i))
		os.MkdirAll(set, 0o755)
		var srcs []rules.SourceFile
		for n := 1 + rng.IntN(6); n > 0; n-- {
			name := fmt.Sprintf("%03d-r%d", rng.IntN(1000), n)
			var ops []map[string]any
			for _, o := range [][2]string{{"process.path", pick(rng, []string{"/usr/bin/curl", "/usr/bin/git"})}, {"dest.port", pick(rng, []string{"22", "443", "80"})},
				{"dest.host", pick(rng, []string{"a.test", "www.c.test"})}, {"user.id", pick(rng, []string{"0", "1000"})}, {"protocol", pick(rng, []string{"tcp", "udp6"})}} {
				if rng.IntN(3) == 0 {
					ops = append(ops, map[string]any{"type": "simple", "operand": o[0], "data": o[1]})
				}
			}
			switch rng.IntN(4) {
			case 0:
				ops = append(ops, map[string]any{"type": "network", "operand": "dest.network", "data": pick(rng, []string{"192.0.2.0/24", "10.0.0.0/8"})})
			case 1:
				ops = append(ops, map[string]any{"type": "regexp", "operand": "dest.host", "data": pick(rng, []string{`^(.*\.)?c\.test$`, `^(a|b)\.test$`, `c\.test`})})
			}
			op := map[string]any{"type": "simple", "operand": "true"}
			if len(ops) == 1 {
				op = ops[0]
			} else if len(ops) > 1 {
				op = map[string]any{"type": "list", "operand": "list", "list": ops}
			}
			r := map[string]any{"name": name, "enabled": rng.IntN(8) != 0, "precedence": rng.IntN(3) == 0,
				"action": pick(rng, []string{"allow", "deny", "reject"}), "duration": "always", "operator": op}
			data, _ := json.Marshal(r)
			os.WriteFile(filepath.Join(set, name+".json"), data, 0o644)
			srcs = append(srcs, rules.SourceFile{Name: name + ".json", Data: data})
		}
		res, err := rules.ImportOpenSnitchSet(srcs, nil, rules.ImportOptions{Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rules) == 0 && res.Report.Refused > 0 {
			refused++
			continue
		}
		imported++
		model, _ := osmLoad(set, func(string) string { return "" })
		compiled := compileAll(t, res.Rules)
		v := newVocab(res.Rules, nil, []string{"a.test", "c.test"})
		for k := 0; k < 500; k++ {
			f, of := v.flow(rng)
			if want, got := osmDecide(model, of), decision(rules.Decide(compiled, f, nil, t0)); want != got {
				t.Fatalf("set %d: flow %+v: OpenSnitch %q, Tattle %q", i, f, want, got)
			}
		}
	}
	report.add(t, "never widens: 150 generated OpenSnitch sets: %d imported (500 random flows each, all decided as OpenSnitch decides), %d refused as a whole", imported, refused)
}
