package gui

import (
	"context"
	"testing"
	"time"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestLearnedProposalsOnRulesPage: a connection made in learning mode is proposed as a disabled rule, which
// the Rules page shows in its "Learned" group with a bar to approve or discard; approving there enables it in
// the helper.
func TestLearnedProposalsOnRulesPage(t *testing.T) {
	h := StartScriptableHelper(t)
	cl := h.Dial(t)
	if err := cl.Learn(context.Background(), 120); err != nil {
		t.Fatalf("learn: %v", err)
	}
	srv := testrig.StartServers(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "learned-gui")
	other := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "learned-other")
	for _, a := range []string{app, other} {
		if res := testrig.RunApp(t, a, testrig.RunOpts{}, "tcp", srv.TCP4); !res.OK {
			t.Fatalf("connect while learning: %+v", res)
		}
	}
	approved := func(exe string) bool {
		rs, err := cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Application == exe && r.Enabled && !r.Learned && !r.Unapproved {
				return true
			}
		}
		return false
	}
	s := StartSession(t, "x11")
	StartApp(t, s, h, English())
	s.ShowPage(t, "rules")
	s.WaitForText(t, "label", "Learning mode proposed", 20*time.Second)
	s.WaitForText(t, "table cell", "learned-gui → 127.0.0.1", 5*time.Second)
	s.WaitForText(t, "table cell", "learned, not approved", 5*time.Second)
	s.Screenshot(t, "x11-en-rules-learned")
	// One program's proposals: select one of its rows, approve the selected program's.
	if _, err := s.atspi(t, "select", "tattle", "table cell", "learned-other → 127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "push button", "Approve the selected program's")
	deadline := time.Now().Add(15 * time.Second)
	for !approved(other) {
		if time.Now().After(deadline) {
			t.Fatal("the selected program's proposal is not approved")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if approved(app) {
		t.Error("approving one program's proposals approved another program's too")
	}
	s.WaitForText(t, "label", "Learning mode proposed 1 rule", 10*time.Second)
	s.Click(t, "push button", "Approve all")
	deadline = time.Now().Add(15 * time.Second)
	for {
		rs, err := cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		done := false
		for _, r := range rs {
			done = done || (r.Application == app && r.Enabled && !r.Learned && !r.Unapproved)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proposal is not approved and enabled after Approve all: %+v", rs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
