package rules

import (
	"strings"
	"testing"
	"time"
)

// Every field a rule carries must survive the store: a field Marshal writes that Parse does not know would
// make the helper refuse its own rules.json after a restart (and lose via rules, checksums, approval marks).
func TestEveryStoredFieldParsesBack(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := Rule{ID: "script", Application: "/usr/bin/python3.11", Via: "/home/u/tool.py",
		SHA256: strings.Repeat("ab", 32), Unapproved: true, Remote: "any", Port: "any", Protocol: "any",
		Action: "allow", Duration: "forever", Enabled: true, Created: now, Modified: now}
	out, err := Marshal(&File{Version: FormatVersion, Rules: []Rule{r}})
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := Parse("rules.json", out)
	if err != nil {
		t.Fatalf("Parse refused what Marshal wrote: %v\n%s", err, out)
	}
	got := back.Rules[0]
	if got.Via != r.Via || got.SHA256 != r.SHA256 || !got.Unapproved {
		t.Fatalf("lost fields: via %q sha256 %q unapproved %v\n%s", got.Via, got.SHA256, got.Unapproved, out)
	}
}
