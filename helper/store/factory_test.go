package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

// TestShippedFactoryRulesAreValidAndNarrow reads the factory groups the package installs (data/rules.d) with
// the rule file parser the helper uses, and checks that each rule says why it exists and is scoped: a program,
// or, for a rule covering every program, one port and one protocol.
func TestShippedFactoryRulesAreValidAndNarrow(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "data", "rules.d", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no factory groups in data/rules.d (%v)", err)
	}
	seen := map[string]string{}
	var total int
	for _, p := range paths {
		f, err := readRuleFile(p)
		if err != nil {
			t.Fatalf("shipped factory group does not parse: %v", err)
		}
		if f.Name == "" {
			t.Errorf("%s: no group name", p)
		}
		for _, r := range f.Rules {
			total++
			if prev, dup := seen[r.ID]; dup {
				t.Errorf("%s: rule %q also in %s", p, r.ID, prev)
			}
			seen[r.ID] = p
			if !strings.HasPrefix(r.ID, "factory-") {
				t.Errorf("%s: rule %q: factory ids start with factory- (so they never clash with a user's)", p, r.ID)
			}
			if len(r.Note) < 20 || !strings.HasPrefix(r.Note, "Factory: ") {
				t.Errorf("%s: rule %q: the note must give the reason, starting \"Factory: \" (got %q)", p, r.ID, r.Note)
			}
			if r.Action != rules.ActionAllow || r.Duration != rules.DurationForever || !r.Enabled || r.Owner != nil {
				t.Errorf("%s: rule %q: factory rules are enabled system allow rules forever", p, r.ID)
			}
			if r.Protocol == rules.Any || r.Port == rules.Any || strings.Contains(r.Port, "-") {
				t.Errorf("%s: rule %q: give one port and one protocol (port %q, protocol %q)", p, r.ID, r.Port, r.Protocol)
			}
			if r.Application != rules.Any && !strings.HasPrefix(r.Application, "/") {
				t.Errorf("%s: rule %q: application %q is neither a path nor any", p, r.ID, r.Application)
			}
			if r.Application == rules.Any && r.Port != "53" {
				t.Errorf("%s: rule %q: only name lookups (port 53) are allowed for every program", p, r.ID)
			}
		}
	}
	if total < 20 {
		t.Errorf("only %d factory rules", total)
	}
	t.Logf("%d factory groups, %d rules", len(paths), total)
}

func openFactory(t *testing.T, state, admin, factory string) *Store {
	t.Helper()
	s, err := Open(Options{StateDir: state, AdminDir: admin, FactoryDir: factory, Logger: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeGroup(t *testing.T, path string, rs ...rules.Rule) {
	t.Helper()
	if err := os.WriteFile(path, groupFile(t, rs...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func entry(t *testing.T, s *Store, id string) (Entry, bool) {
	t.Helper()
	for _, e := range s.Entries() {
		if e.Rule.ID == id {
			return e, true
		}
	}
	return Entry{}, false
}

func TestFactoryGroupsDisableOverrideRefuseDelete(t *testing.T) {
	state, admin, factory := t.TempDir(), t.TempDir(), t.TempDir()
	writeGroup(t, filepath.Join(factory, "dns.json"), rule("factory-dns", "any", "allow"))
	writeGroup(t, filepath.Join(factory, "ntp.json"), rule("factory-ntp", "/usr/sbin/chronyd", "allow"))
	writeGroup(t, filepath.Join(admin, "corp.json"), rule("corp", "/opt/corp", "deny"))
	s := openFactory(t, state, admin, factory)
	if err := s.Add([]rules.Rule{rule("mine", "/usr/bin/curl", "allow")}); err != nil {
		t.Fatal(err)
	}
	if got := ids(s.Entries()); got != "factory-dns,factory-ntp,corp,mine" {
		t.Fatalf("entries %s: factory groups first, then the administrator's, then the user's", got)
	}
	e, _ := entry(t, s, "factory-dns")
	if !e.Source.Factory || !e.Source.ReadOnly || e.Source.File != filepath.Join(factory, "dns.json") {
		t.Fatalf("factory source %+v", e.Source)
	}
	if e, _ := entry(t, s, "corp"); e.Source.Factory {
		t.Fatal("an administrator's group marked factory")
	}

	// Deleting or editing is refused with the way out; the rule stays.
	err := s.Remove([]string{"factory-dns"})
	if !errors.Is(err, ErrFactory) || !strings.Contains(err.Error(), "disable it instead") {
		t.Fatalf("remove a factory rule: %v", err)
	}
	if err := s.Update(rule("factory-dns", "any", "deny")); !errors.Is(err, ErrFactory) {
		t.Fatalf("edit a factory rule: %v", err)
	}
	if err := s.SetFactoryEnabled("corp", false); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("factory switch on an administrator's rule: %v", err)
	}
	if err := s.SetFactoryEnabled("mine", false); err == nil {
		t.Fatal("factory switch on a user rule accepted")
	}

	// Disabled: the state survives reopening, and the shipped file is untouched.
	before, _ := os.ReadFile(filepath.Join(factory, "dns.json"))
	if err := s.SetFactoryEnabled("factory-dns", false); err != nil {
		t.Fatal(err)
	}
	if e, _ := entry(t, s, "factory-dns"); e.Rule.Enabled {
		t.Fatal("still enabled")
	}
	s2 := openFactory(t, state, admin, factory)
	if e, _ := entry(t, s2, "factory-dns"); e.Rule.Enabled || !e.Source.Factory {
		t.Fatalf("after reopening: %+v", e)
	}
	if e, _ := entry(t, s2, "factory-ntp"); !e.Rule.Enabled {
		t.Fatal("the other factory rule was disabled too")
	}
	if after, _ := os.ReadFile(filepath.Join(factory, "dns.json")); string(after) != string(before) {
		t.Fatal("the factory file was written")
	}
	if err := s2.SetFactoryEnabled("factory-dns", true); err != nil {
		t.Fatal(err)
	}
	if e, _ := entry(t, openFactory(t, state, admin, factory), "factory-dns"); !e.Rule.Enabled {
		t.Fatal("enabling again did not last")
	}

	// The administrator's dns.json replaces the factory one; removing it brings the factory group back.
	override := rule("corp-dns", "any", "allow")
	override.Remote = "10.0.0.53"
	writeGroup(t, filepath.Join(admin, "dns.json"), override)
	if !s2.ReloadAdmin() {
		t.Fatal("override not seen as a change")
	}
	if _, ok := entry(t, s2, "factory-dns"); ok {
		t.Fatal("the overridden factory rule is still in force")
	}
	if e, ok := entry(t, s2, "corp-dns"); !ok || e.Source.Factory || e.Source.File != filepath.Join(admin, "dns.json") {
		t.Fatalf("override entry %+v %v", e, ok)
	}
	if s2.IsFactory("factory-dns") {
		t.Fatal("an overridden rule still counts as factory")
	}
	os.Remove(filepath.Join(admin, "dns.json"))
	s2.ReloadAdmin()
	if e, ok := entry(t, s2, "factory-dns"); !ok || !e.Source.Factory {
		t.Fatal("factory group not back after the override went")
	}
}

func TestCorruptFactoryStateIsKeptAsideAndShippedStateApplies(t *testing.T) {
	state, admin, factory := t.TempDir(), t.TempDir(), t.TempDir()
	writeGroup(t, filepath.Join(factory, "dns.json"), rule("factory-dns", "any", "allow"))
	if err := os.WriteFile(filepath.Join(state, "factory.json"), []byte(`{"version":1,"enabled":{"factory-dns":fal`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openFactory(t, state, admin, factory)
	if e, _ := entry(t, s, "factory-dns"); !e.Rule.Enabled {
		t.Fatal("corrupt state disabled a rule")
	}
	ps := s.Problems()
	if len(ps) != 1 || !strings.Contains(ps[0].Error, "kept as") {
		t.Fatalf("problems %+v", ps)
	}
	aside, _ := filepath.Glob(filepath.Join(state, "factory.json.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("corrupt file not kept: %v", aside)
	}
	s.ReloadAdmin()
	if len(s.Problems()) != 1 {
		t.Fatal("the state problem vanished on reload")
	}
}
