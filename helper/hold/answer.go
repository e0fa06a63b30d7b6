package hold

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// RuleFor turns an answer into the rule it asks for. The rule applies to the asking user's processes
// (prompts never make system-wide rules). A domain scope needs the host name the application looked up; with
// none known it narrows to the host's address.
func RuleFor(a Attempt, ans api.Answer, now time.Time) rules.Rule {
	uid := a.UID
	r := rules.Rule{
		Application: a.Exe,
		Via:         a.Via,
		Owner:       &uid,
		Direction:   rules.DirectionOutgoing,
		Remote:      rules.Any,
		Port:        rules.Any,
		Protocol:    rules.Any,
		Action:      ans.Action,
		Duration:    ans.Duration,
		Enabled:     true,
		Created:     now,
		Modified:    now,
	}
	if ans.Duration == rules.DurationUntilTime {
		r.Until = time.Unix(ans.Until, 0).UTC()
	}
	host := a.Dest.Addr().String()
	if a.Host != "" {
		host = "host:" + a.Host
	}
	switch ans.Scope {
	case api.ScopeHost:
		r.Remote, r.Port, r.Protocol = host, strconv.Itoa(int(a.Dest.Port())), a.Proto.String()
	case api.ScopeDomain:
		if a.Host != "" {
			r.Remote = "domain:" + a.Host
		} else {
			r.Remote = host
		}
	case api.ScopePort:
		r.Port, r.Protocol = strconv.Itoa(int(a.Dest.Port())), a.Proto.String()
	}
	r.Note = fmt.Sprintf("answered to a question about pid %d (%s)", a.PID, a.Comm)
	return r
}
