package hold

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// RuleFor turns an answer into the rule it asks for. The rule applies to the asking user's processes; for a
// system process (answered by an administrator, after polkit authentication) it is a system rule. A domain
// scope covers the registrable domain (rules.RegistrableDomain) of the host name the application looked up;
// with none known it narrows to the host's address. The host scope of a question that covered several ports
// covers the host on any port: the user was shown them all.
func RuleFor(a Attempt, ans api.Answer, now time.Time) rules.Rule {
	uid := a.UID
	owner := &uid
	if a.System {
		owner = nil
	}
	r := rules.Rule{
		Application: a.Exe,
		Via:         a.Via,
		Owner:       owner,
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
		if len(a.Ports) > 1 {
			r.Port = rules.Any
		}
	case api.ScopeDomain:
		if d := rules.RegistrableDomain(a.Host); d != "" {
			r.Remote = "domain:" + d
		} else {
			r.Remote = host
		}
	case api.ScopePort:
		r.Port, r.Protocol = strconv.Itoa(int(a.Dest.Port())), a.Proto.String()
	}
	r.Note = fmt.Sprintf("answered to a question about pid %d (%s)", a.PID, a.Comm)
	if a.System {
		r.Note = fmt.Sprintf("system rule: an administrator answered a question about pid %d (%s, uid %d)", a.PID, a.Comm, a.UID)
	}
	return r
}
