package daemon

import (
	"testing"

	"github.com/tattlefw/tattle/helper/enforce"
)

func TestRecordRuleSaysWhyWithoutARule(t *testing.T) {
	for _, c := range []struct {
		rule string
		v    enforce.Verdict
		want string
	}{
		{"block-curl", enforce.Deny, "block-curl"},
		{"learned", enforce.Allow, "learned"},
		{"", enforce.Undecided, "undecided"},
		{"", enforce.Allow, "default"},
	} {
		if got := recordRule(c.rule, c.v); got != c.want {
			t.Errorf("recordRule(%q, %v) = %q, want %q", c.rule, c.v, got, c.want)
		}
	}
}
