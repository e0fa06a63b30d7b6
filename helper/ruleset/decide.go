package ruleset

import (
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// What the helper decides in userspace from a compiled rule set: the identities events are matched by, and
// whether a rule it cannot evaluate yet stands above the one that matched.

// PathFor names the event's executable for path rules by its identity, never by the path string it reported
// (which a process can make up with its own mount namespace): a rule path whose file is this executable.
func (r Result) PathFor(app identity.Executable, exe string) string {
	paths := r.Paths[app]
	if len(paths) == 0 {
		return ""
	}
	for _, p := range paths {
		if p == exe {
			return p
		}
	}
	return paths[0]
}

// ViaFor names the event's script for via rules by its identity, as PathFor does for executables. A script
// no rule names keeps its reported path (it matches no via rule either way); one not identified matches none.
func (r Result) ViaFor(app identity.Executable, via string) string {
	if v := r.Vias[app]; v != "" {
		return v
	}
	if app.IsUnidentified() || (app.IsScript() && via == "") {
		return api.ViaUnidentified
	}
	return via
}

// Unknowable returns the ID of a rule of higher precedence than winner that could match f if the facts the
// helper lacks (the names the application looked up, a list's contents) were known, or "". addressOnly says
// which lists hold addresses only (the machine's resolvers): the flow's address decides those.
func Unknowable(active []rules.Compiled, winner *rules.Compiled, f rules.Flow, lists rules.ListLookup, addressOnly func(list string) bool, now time.Time) string {
	for i := range active {
		c := &active[i]
		if c.Rule.ID == winner.Rule.ID {
			return ""
		}
		rule := c.Rule
		relaxed := false
		switch c.RemoteKind {
		case rules.RemoteHost, rules.RemoteDomain, rules.RemoteWildcard:
			// With the names the application looked up known, such a rule either matched or does not.
			if len(f.Hostnames) == 0 {
				rule.Remote, relaxed = rules.Any, true
			}
		case rules.RemoteList:
			// A list may hold names: without the flow's names (or without the list) it might still match. The
			// resolvers hold addresses only: the flow's address decides.
			if addressOnly != nil && addressOnly(c.Name) && lists != nil {
				break
			}
			if len(f.Hostnames) == 0 || lists == nil {
				rule.Remote, relaxed = rules.Any, true
			}
		}
		// Applications are known exactly: executables, scripts, Flatpak apps and snaps, AppImages by their
		// files' identities.
		if !relaxed {
			continue
		}
		if rc, err := rules.Compile(rule); err == nil && rc.Matches(f, nil, now) {
			return c.Rule.ID
		}
	}
	return ""
}
