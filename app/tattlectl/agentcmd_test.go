package main

import (
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

func TestParseAnswer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for line, want := range map[string]api.Answer{
		"a":               {Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever},
		"d n q":           {Action: rules.ActionDeny, Scope: api.ScopeAny, Duration: rules.DurationUntilQuit},
		"allow port once": {Action: rules.ActionAllow, Scope: api.ScopePort, Duration: rules.DurationOnce},
		"A o t2h":         {Action: rules.ActionAllow, Scope: api.ScopeDomain, Duration: rules.DurationUntilTime, Until: now.Add(2 * time.Hour).Unix()},
		"deny r":          {Action: rules.ActionDeny, Scope: api.ScopeHost, Duration: rules.DurationUntilRestart},
		"t1h f a":         {Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever},
		"  d   h   1  ":   {Action: rules.ActionDeny, Scope: api.ScopeHost, Duration: rules.DurationOnce},
	} {
		got, err := parseAnswer(line, now)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", line, got, err, want)
		}
	}
	for _, line := range []string{"", "h f", "a x", "a t", "a t0s", "a tfoo", "a t99999h"} {
		if _, err := parseAnswer(line, now); err == nil {
			t.Errorf("%q: accepted", line)
		}
	}
}
