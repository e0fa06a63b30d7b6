package rules

import (
	"errors"
	"testing"
	"time"
)

func viaRule(app, via string) Rule {
	return Rule{ID: "r", Application: app, Via: via, Remote: Any, Port: Any, Protocol: Any, Action: ActionAllow,
		Duration: DurationForever, Enabled: true}
}

func TestViaValidation(t *testing.T) {
	for _, c := range []struct {
		app, via string
		ok       bool
	}{
		{"/usr/bin/python3", "/home/u/tool.py", true},
		{"/usr/bin/python3", "", true},
		{"/usr/bin/python3", "tool.py", false},
		{"/usr/bin/python3", "/home/u/../u/tool.py", false},
		{"any", "/home/u/tool.py", false},
		{"flatpak:org.example.App", "/app/bin/x.py", false},
	} {
		r := viaRule(c.app, c.via)
		err := r.Validate()
		var fe *FieldError
		switch {
		case c.ok && err != nil:
			t.Errorf("%s via %q: %v", c.app, c.via, err)
		case !c.ok && (err == nil || !errors.As(err, &fe) || fe.Field != "via"):
			t.Errorf("%s via %q: error %v, want one about field via", c.app, c.via, err)
		}
	}
}

// A via rule matches its interpreter running that script only; a rule without via matches the interpreter
// running no script, never a script.
func TestViaMatching(t *testing.T) {
	now := time.Now()
	withVia, _ := Compile(viaRule("/usr/bin/python3", "/home/u/good.py"))
	bare, _ := Compile(viaRule("/usr/bin/python3", ""))
	for _, c := range []struct {
		via             string
		withVia, isBare bool
	}{
		{"/home/u/good.py", true, false},
		{"/home/u/evil.py", false, false},
		{"", false, true},
	} {
		f := Flow{AppPath: "/usr/bin/python3", Via: c.via, Proto: "tcp", Port: 1}
		if got := withVia.Matches(f, nil, now); got != c.withVia {
			t.Errorf("via rule on a flow via %q: %v, want %v", c.via, got, c.withVia)
		}
		if got := bare.Matches(f, nil, now); got != c.isBare {
			t.Errorf("bare rule on a flow via %q: %v, want %v", c.via, got, c.isBare)
		}
	}
}
