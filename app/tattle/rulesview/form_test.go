package rulesview

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

func TestFormMakesValidRules(t *testing.T) {
	f := Form{Application: " /usr/bin/curl ", Remote: "host:example.com", Port: "443", Protocol: "tcp",
		Action: rules.ActionAllow, Duration: rules.DurationForever, Enabled: true, Note: " mine "}
	r, err := f.Rule(nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Owner != 1000 || r.Application != "/usr/bin/curl" || r.Note != "mine" || r.Created == 0 {
		t.Errorf("rule = %+v", r)
	}
	if !regexp.MustCompile(`^allow-curl-example-com-[a-z2-9]{6}$`).MatchString(r.ID) {
		t.Errorf("id %q", r.ID)
	}
	// Blank fields mean any; a system rule has no owner.
	r, err = Form{Action: rules.ActionDeny, Duration: rules.DurationUntilRestart, System: true}.Rule(nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Application != rules.Any || r.Remote != rules.Any || r.Port != rules.Any || r.Owner != api.NoOwner {
		t.Errorf("blank form: %+v", r)
	}
	// Editing keeps the id and creation time.
	base := api.Rule{ID: "keep-me", Created: 42, Owner: 1000, Application: "any", Remote: "any", Port: "any", Protocol: "any",
		Action: "allow", Duration: "forever", Enabled: true}
	f = FormOf(base)
	f.Port = "8000-8100"
	f.Duration = rules.DurationUntilTime
	f.Until = time.Now().Add(time.Hour)
	r, err = f.Rule(&base, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "keep-me" || r.Created != 42 || r.Port != "8000-8100" || r.Until == 0 {
		t.Errorf("edited rule = %+v", r)
	}
}

func TestFormRefusesWhatTheHelperRefuses(t *testing.T) {
	ok := Form{Application: "/usr/bin/curl", Remote: "any", Port: "any", Protocol: "any", Action: "allow", Duration: "forever"}
	for field, mutate := range map[string]func(*Form){
		"application": func(f *Form) { f.Application = "curl" },
		"remote":      func(f *Form) { f.Remote = "host:bad host" },
		"port":        func(f *Form) { f.Port = "70000" },
		"protocol":    func(f *Form) { f.Protocol = "icmp" },
		"action":      func(f *Form) { f.Action = "maybe" },
	} {
		f := ok
		mutate(&f)
		_, err := f.Rule(nil, 1000)
		var fe *rules.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: error %v, want a FieldError for %q", field, err, field)
		}
	}
}
