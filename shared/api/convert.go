package api

import (
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// FromRule puts a rule on the wire.
func FromRule(r rules.Rule, source string, readOnly bool) Rule {
	owner := NoOwner
	if r.Owner != nil {
		owner = int64(*r.Owner)
	}
	return Rule{
		ID: r.ID, Application: r.Application, Owner: owner, Direction: r.Direction, Remote: r.Remote,
		Port: r.Port, Protocol: r.Protocol, Action: r.Action, Duration: r.Duration, Until: unixOrZero(r.Until),
		Enabled: r.Enabled, Note: r.Note, Created: unixOrZero(r.Created), Modified: unixOrZero(r.Modified),
		Source: source, ReadOnly: readOnly, Via: r.Via, SHA256: r.SHA256, Unapproved: r.Unapproved,
		Learned: r.Learned,
	}
}

// ToRule takes a rule off the wire. It does not validate; rules.Rule.Validate does.
func (w Rule) ToRule() (rules.Rule, bool) {
	r := rules.Rule{
		ID: w.ID, Application: w.Application, Direction: w.Direction, Remote: w.Remote, Port: w.Port,
		Protocol: w.Protocol, Action: w.Action, Duration: w.Duration, Until: timeOrZero(w.Until),
		Enabled: w.Enabled, Note: w.Note, Created: timeOrZero(w.Created), Modified: timeOrZero(w.Modified),
		Via: w.Via, SHA256: w.SHA256, Unapproved: w.Unapproved, Learned: w.Learned,
	}
	switch {
	case w.Owner == NoOwner:
	case w.Owner >= 0 && w.Owner <= int64(^uint32(0)):
		uid := uint32(w.Owner)
		r.Owner = &uid
	default:
		return r, false
	}
	return r, true
}
