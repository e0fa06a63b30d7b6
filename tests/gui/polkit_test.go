package gui

import (
	"context"
	"testing"
	"time"
)

// nobody is the unprivileged user whose session this test runs.
const nobody = 65534

// TestSystemRuleWithoutAuthAgent: an ordinary user (no polkit authentication agent in the session) asks for a
// rule for all users. polkit wants an administrator's password that nobody can be asked for, so the helper
// refuses; the app says what happened and what to do, and no rule is added.
func TestSystemRuleWithoutAuthAgent(t *testing.T) {
	h := StartScriptableHelper(t)
	s := StartSessionAs(t, "x11", nobody)
	StartApp(t, s, h, English())
	s.Keys(t, "alt+2") // the Rules page

	s.Click(t, "push button", "Add rule")
	s.WaitFor(t, "dialog", "New rule", 10*time.Second)
	if _, err := s.atspi(t, "settext", "tattle", "text", "Remote", "domain:example.org"); err != nil {
		t.Fatal(err)
	}
	s.Click(t, "check box", "For all users (needs an administrator)")
	s.Click(t, "push button", "Save")
	s.WaitForText(t, "label", "not authorized", 30*time.Second)
	names := s.Names(t)
	if !hasName(names, "label", "no authentication agent of the desktop answered") {
		t.Errorf("the message does not say why; the app shows:\n%s", dumpNames(names))
	}

	cl := h.Dial(t)
	rs, err := cl.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 0 {
		t.Fatalf("a rule was added without authorization: %+v", rs)
	}
	s.Screenshot(t, "x11-en-rules-not-authorized")
}
