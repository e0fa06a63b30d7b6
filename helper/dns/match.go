package dns

import (
	"errors"
	"fmt"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

// Pattern is a name pattern of a rule's Remote field: "host:NAME" (that name only), "domain:NAME" (the name
// and every name under it) or "wildcard:PATTERN" (each "*" label stands for one or more labels). The syntax
// and the matching are shared/rules' own, so a pattern here matches exactly what the rule matches.
type Pattern struct {
	c rules.Compiled
}

// ParsePattern parses a Remote value of kind host, domain or wildcard.
func ParsePattern(remote string) (Pattern, error) {
	c, err := rules.Compile(rules.Rule{
		ID: "pattern", Application: rules.Any, Remote: remote, Port: rules.Any, Protocol: rules.Any,
		Action: rules.ActionAllow, Duration: rules.DurationForever, Enabled: true,
	})
	if err != nil {
		var fe *rules.FieldError
		if errors.As(err, &fe) && fe.Msg != "" {
			return Pattern{}, fmt.Errorf("name pattern: %s", fe.Msg) // the message alone: there is no rule
		}
		return Pattern{}, fmt.Errorf("name pattern %q: %w", remote, err)
	}
	switch c.RemoteKind {
	case rules.RemoteHost, rules.RemoteDomain, rules.RemoteWildcard:
		return Pattern{c: c}, nil
	}
	return Pattern{}, fmt.Errorf("name pattern %q is a %s remote, not a host:, domain: or wildcard: pattern", remote, c.RemoteKind)
}

// Kind is RemoteHost, RemoteDomain or RemoteWildcard.
func (p Pattern) Kind() rules.RemoteKind { return p.c.RemoteKind }

// Name is the pattern's name part, lower case without a trailing dot.
func (p Pattern) Name() string { return p.c.Name }

// Match reports whether name (any case, trailing dot or not) is covered by the pattern.
func (p Pattern) Match(name string) bool {
	if p.c.RemoteKind == 0 {
		return false // the zero Pattern matches nothing
	}
	return p.c.Matches(rules.Flow{Hostnames: []string{name}, Proto: rules.ProtocolTCP}, nil, time.Time{})
}
