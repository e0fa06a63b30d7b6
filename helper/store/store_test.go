package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func rule(id, app, action string) rules.Rule {
	return rules.Rule{
		ID: id, Application: app, Direction: "outgoing", Remote: "any", Port: "any", Protocol: "any",
		Action: action, Duration: "forever", Enabled: true, Created: now, Modified: now,
	}
}

func groupFile(t *testing.T, rs ...rules.Rule) []byte {
	t.Helper()
	data, err := rules.Marshal(&rules.File{Version: rules.FormatVersion, Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func open(t *testing.T) (*Store, string, string) {
	t.Helper()
	state, admin := t.TempDir(), t.TempDir()
	s, err := Open(Options{StateDir: state, AdminDir: admin, Logger: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, state, admin
}

func ids(es []Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Rule.ID)
	}
	return strings.Join(out, ",")
}

func TestUserRulesPersistAtomicallyAndSurviveReopen(t *testing.T) {
	s, state, admin := open(t)
	if err := s.Add([]rules.Rule{rule("a", "/usr/bin/curl", "deny"), rule("b", "any", "allow")}); err != nil {
		t.Fatal(err)
	}
	r := rule("a", "/usr/bin/curl", "allow")
	if err := s.Update(r); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{StateDir: state, AdminDir: admin, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	es := s2.Entries()
	if ids(es) != "a" || es[0].Rule.Action != "allow" || es[0].Source.ReadOnly {
		t.Fatalf("after reopen: %+v", es)
	}
	// No temporary files are left behind; the previous good version is kept.
	left, _ := filepath.Glob(filepath.Join(state, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(state, "rules.json.bak")); err != nil {
		t.Errorf("no previous good copy: %v", err)
	}
}

func TestUntilRestartRulesAreNeverWritten(t *testing.T) {
	s, state, admin := open(t)
	temp := rule("temp", "/usr/bin/curl", "allow")
	temp.Duration = rules.DurationUntilRestart
	if err := s.Add([]rules.Rule{rule("kept", "/usr/bin/wget", "deny"), temp}); err != nil {
		t.Fatal(err)
	}
	if got := ids(s.Entries()); got != "kept,temp" {
		t.Errorf("in force now: %s", got)
	}
	data, _ := os.ReadFile(filepath.Join(state, "rules.json"))
	if strings.Contains(string(data), "temp") {
		t.Errorf("an until-restart rule was written to disk:\n%s", data)
	}
	s2, err := Open(Options{StateDir: state, AdminDir: admin, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(s2.Entries()); got != "kept" {
		t.Errorf("after a restart: %s, want only the durable rule", got)
	}
}

func TestInvalidChangesAreRefusedAndChangeNothing(t *testing.T) {
	s, _, admin := open(t)
	if err := os.WriteFile(filepath.Join(admin, "10-admin.json"), groupFile(t, rule("admin-1", "any", "deny")), 0o644); err != nil {
		t.Fatal(err)
	}
	s.ReloadAdmin()
	if err := s.Add([]rules.Rule{rule("u1", "/usr/bin/curl", "deny")}); err != nil {
		t.Fatal(err)
	}
	bad := rule("u2", "/usr/bin/wget", "deny")
	bad.Port = "70000"
	for name, err := range map[string]error{
		"invalid rule in a batch":   s.Add([]rules.Rule{rule("u3", "any", "allow"), bad}),
		"duplicate of admin rule":   s.Add([]rules.Rule{rule("admin-1", "any", "allow")}),
		"update of an admin rule":   s.Update(rule("admin-1", "any", "allow")),
		"remove of an unknown rule": s.Remove([]string{"u1", "nope"}),
		"remove of an admin rule":   s.Remove([]string{"admin-1"}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := ids(s.Entries()); got != "admin-1,u1" {
		t.Errorf("rules after refused changes: %s", got)
	}
	// The service tells these apart by their sentinel errors, never by their text.
	for name, c := range map[string]struct {
		err, want error
	}{
		"an id already used":      {s.Add([]rules.Rule{rule("u1", "any", "allow")}), ErrIDTaken},
		"one id twice in a batch": {s.Add([]rules.Rule{rule("u9", "any", "allow"), rule("u9", "any", "deny")}), ErrIDTaken},
		"an admin rule's update":  {s.Update(rule("admin-1", "any", "allow")), ErrReadOnly},
		"an unknown rule":         {s.Remove([]string{"nope"}), ErrNotFound},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", name, c.err, c.want)
		}
	}
	if err := s.Update(rule("admin-1", "any", "allow")); err == nil || !strings.Contains(err.Error(), "10-admin.json") {
		t.Errorf("refusal does not name the rule group: %v", err)
	}
}

func TestCorruptedStateFileIsKeptAsideAndTheGoodCopyUsed(t *testing.T) {
	s, state, admin := open(t)
	if err := s.Add([]rules.Rule{rule("keep", "/usr/bin/curl", "deny")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add([]rules.Rule{rule("keep2", "/usr/bin/wget", "deny")}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(state, "rules.json")
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)/2], 0o600); err != nil { // truncated, as by a dying disk
		t.Fatal(err)
	}
	s2, err := Open(Options{StateDir: state, AdminDir: admin, Logger: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(s2.Entries()); got != "keep" {
		t.Errorf("rules after corruption: %q, want the previous good copy (keep)", got)
	}
	probs := s2.Problems()
	if len(probs) != 1 || !strings.Contains(probs[0].Error, "rules.json") {
		t.Errorf("problems: %+v", probs)
	}
	aside := fmt.Sprintf("%s.corrupt-%d", path, now.Unix())
	if kept, err := os.ReadFile(aside); err != nil || len(kept) != len(data)/2 {
		t.Errorf("corrupted file not kept for inspection at %s: %v", aside, err)
	}
}

func TestBrokenRuleGroupKeepsItsLastGoodRules(t *testing.T) {
	s, _, admin := open(t)
	path := filepath.Join(admin, "20-block.json")
	if err := os.WriteFile(path, groupFile(t, rule("block", "/usr/bin/curl", "deny")), 0o644); err != nil {
		t.Fatal(err)
	}
	if !s.ReloadAdmin() {
		t.Fatal("a new group did not count as a change")
	}
	for name, content := range map[string]string{
		"truncated JSON": `{"version": 1, "rules": [{"id": "x", "applic`,
		"wrong type":     `{"version": 1, "rules": [{"id": 5}]}`,
		"unknown field":  `{"version": 1, "rules": [], "surprise": true}`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if s.ReloadAdmin() {
			t.Errorf("%s: a refused file changed the rules in force", name)
		}
		if got := ids(s.Entries()); got != "block" {
			t.Errorf("%s: rules in force %q, want the last good (block)", name, got)
		}
		probs := s.Problems()
		if len(probs) != 1 || !strings.Contains(probs[0].Error, "20-block.json") {
			t.Errorf("%s: problems %+v", name, probs)
		}
	}
	os.Remove(path)
	if !s.ReloadAdmin() || len(s.Entries()) != 0 || len(s.Problems()) != 0 {
		t.Errorf("deleting the group: entries %v problems %v", s.Entries(), s.Problems())
	}
}

func TestWatchReloadsRuleGroups(t *testing.T) {
	s, _, admin := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	var changes atomic.Int32
	done := make(chan error, 1)
	go func() { done <- s.WatchAdmin(ctx, func() { changes.Add(1) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	// Written the way editors do: a temporary file renamed into place.
	tmp := filepath.Join(admin, ".new.tmp")
	if err := os.WriteFile(tmp, groupFile(t, rule("w", "any", "deny")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(admin, "30-watch.json")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for changes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if changes.Load() == 0 || ids(s.Entries()) != "w" {
		t.Fatalf("change not picked up: %d changes, rules %q", changes.Load(), ids(s.Entries()))
	}
}
