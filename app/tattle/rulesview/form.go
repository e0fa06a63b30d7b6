package rulesview

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// Form is what the rule dialog edits, as text.
type Form struct {
	Application, Remote, Port, Protocol, Action, Duration, Note string
	Until                                                       time.Time
	System                                                      bool // a rule for every user
	Enabled                                                     bool
}

// FormOf fills a form from an existing rule.
func FormOf(r api.Rule) Form {
	f := Form{Application: r.Application, Remote: r.Remote, Port: r.Port, Protocol: r.Protocol, Action: r.Action,
		Duration: r.Duration, Note: r.Note, System: r.Owner == api.NoOwner, Enabled: r.Enabled}
	if r.Until != 0 {
		f.Until = time.Unix(r.Until, 0)
	}
	return f
}

// Rule turns the form into a rule for uid (or for everyone when System), keeping base's id and times when
// editing, and validates it exactly as the helper will. The error names the field at fault.
func (f Form) Rule(base *api.Rule, uid uint32) (api.Rule, error) {
	blank := func(s string) string {
		if s = strings.TrimSpace(s); s == "" {
			return rules.Any
		}
		return s
	}
	w := api.Rule{Application: blank(f.Application), Direction: rules.DirectionOutgoing, Remote: blank(f.Remote),
		Port: blank(f.Port), Protocol: blank(f.Protocol), Action: f.Action, Duration: f.Duration,
		Enabled: f.Enabled, Note: strings.TrimSpace(f.Note), Owner: int64(uid)}
	if f.System {
		w.Owner = api.NoOwner
	}
	if f.Duration == rules.DurationUntilTime {
		w.Until = f.Until.Unix()
	}
	now := time.Now()
	if base != nil {
		w.ID, w.Created = base.ID, base.Created
	} else {
		w.Created = now.Unix()
	}
	w.Modified = now.Unix()
	r, ok := w.ToRule()
	if !ok {
		return w, &rules.FieldError{Index: -1, Field: "owner", Msg: "not a user id"}
	}
	if w.ID == "" {
		w.ID = newID(r)
		r.ID = w.ID
	}
	if err := r.Validate(); err != nil {
		return w, err
	}
	return w, nil
}

// newID makes a readable, unique id: "allow-curl-example-com-k7q2mx".
func newID(r rules.Rule) string {
	app := r.Application
	if i := strings.LastIndexAny(app, "/:"); i >= 0 {
		app = app[i+1:]
	}
	parts := []string{r.Action, rules.Slug(app, 20)}
	if r.Remote != rules.Any {
		remote := r.Remote
		if _, after, ok := strings.Cut(remote, ":"); ok && !strings.Contains(after, ":") {
			remote = after
		}
		parts = append(parts, rules.Slug(remote, 20))
	}
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	var out []string
	for _, p := range append(parts, string(b)) {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "-")
}
