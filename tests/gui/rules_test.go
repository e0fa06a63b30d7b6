package gui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// TestRuleDialog adds a rule through the Rules page's dialog as a user would: an invalid remote is refused
// in the dialog with the validator's message (the helper's own rules), the corrected rule reaches the
// helper, and deleting it (with confirmation) removes it there too.
func TestRuleDialog(t *testing.T) {
	h := StartScriptableHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	StartApp(t, s, h, English())
	s.ShowPage(t, "rules")

	s.Click(t, "push button", "Add rule")
	s.WaitFor(t, "dialog", "New rule", 10*time.Second)
	set := func(field, text string) {
		t.Helper()
		if _, err := s.atspi(t, "settext", "tattle", "text", field, text); err != nil {
			t.Fatal(err)
		}
	}
	set("Application", "/usr/bin/curl")
	set("Remote", "host:bad host")
	set("Port", "443")
	s.Click(t, "push button", "Save")
	s.WaitForText(t, "label", `field "remote"`, 10*time.Second)

	set("Remote", "host:example.com")
	set("Note", "added in the dialog")
	s.Click(t, "push button", "Save")
	s.WaitFor(t, "table cell", "added in the dialog", 10*time.Second)

	cl := h.Dial(t)
	rs, err := cl.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var added *api.Rule
	for i := range rs {
		if rs[i].Note == "added in the dialog" {
			added = &rs[i]
		}
	}
	if added == nil || added.Application != "/usr/bin/curl" || added.Remote != "host:example.com" || added.Port != "443" ||
		added.Action != "allow" || added.Duration != "forever" || added.Owner != 0 || !added.Enabled {
		t.Fatalf("the helper holds %+v, want the rule made in the dialog", added)
	}
	if !strings.HasPrefix(added.ID, "allow-curl-example-com-") {
		t.Errorf("rule id %q", added.ID)
	}

	// Delete it: select its row, confirm.
	if _, err := s.atspi(t, "select", "tattle", "table cell", "added in the dialog"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "push button", "Delete rule")
	s.WaitFor(t, "push button", "Delete", 10*time.Second)
	s.Click(t, "push button", "Delete")
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err = cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rule was not deleted: %+v", rs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImportedRulesAwaitApproval: rules that arrive from outside the app (an import over the bus, as any
// program of the user could make) are in force but marked "not approved" on the Rules page, which offers to
// approve them; approving (the owner's authorization) clears the mark in the helper.
func TestImportedRulesAwaitApproval(t *testing.T) {
	h := StartScriptableHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	cl := h.Dial(t)
	file := `{"version": 1, "name": "slipped in", "rules": [{"id": "imported-curl", "application": "/usr/bin/curl",
		"direction": "outgoing", "remote": "host:collector.example", "port": "443", "protocol": "tcp", "action": "allow",
		"duration": "forever", "enabled": true, "note": "arrived by import", "created": "2026-12-01T00:00:00Z",
		"modified": "2026-12-01T00:00:00Z"}]}`
	if n, _, err := cl.Import(context.Background(), api.FormatTattle, []byte(file), false); err != nil || n != 1 {
		t.Fatalf("import: %d rules, %v", n, err)
	}
	s := StartSession(t, "x11")
	StartApp(t, s, h, English())
	s.ShowPage(t, "rules")
	s.WaitForText(t, "label", "1 rule came from outside Tattle (an import) and is in force but not approved.", 20*time.Second)
	s.WaitForText(t, "table cell", "not approved", 5*time.Second)
	s.Screenshot(t, "x11-en-rules-not-approved")
	s.Click(t, "push button", "Approve")
	deadline := time.Now().Add(15 * time.Second)
	for {
		rs, err := cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		approved := false
		for _, r := range rs {
			approved = approved || (r.Note == "arrived by import" && !r.Unapproved)
		}
		if approved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the imported rule is still not approved after Approve: %+v", rs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for hasName(s.Names(t), "table cell", "You · not approved") {
		if time.Now().After(deadline) {
			t.Fatal("the Rules page still marks the approved rule")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
