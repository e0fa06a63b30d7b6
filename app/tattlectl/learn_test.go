package main

import (
	"strings"
	"testing"

	"github.com/tattlefw/tattle/shared/api"
)

func TestLearnCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"learn"}, "give how long to learn"},
		{[]string{"learn", "25h"}, "from 1s to 24h"},
		{[]string{"learn", "1.5s"}, "whole seconds"},
		{[]string{"rules", "learned", "approve"}, "approve needs --all or --app PATH"},
		{[]string{"rules", "learned", "discard", "--all", "--app", "/x"}, "discard needs --all or --app PATH"},
		{[]string{"rules", "learned", "--all"}, "--all and --app go with approve or discard"},
	} {
		te := newTestEnv(t)
		if code := te.run(tc.args...); code != exitUsage || !strings.Contains(te.err.String(), tc.msg) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, code, te.err, tc.msg)
		}
	}

	te := newTestEnv(t)
	if code := te.run("learn", "10m"); code != exitOK || te.h.learnSeconds != 600 {
		t.Fatalf("learn 10m: exit %d, seconds %d, stderr %q", code, te.h.learnSeconds, te.err)
	}

	uid := int64(1000)
	te = newTestEnv(t)
	te.h.rules = []api.Rule{
		{ID: "l1", Application: "/usr/bin/a", Owner: uid, Remote: "10.0.0.1", Port: "443", Protocol: "tcp", Learned: true},
		{ID: "l2", Application: "/usr/bin/a", Owner: uid, Remote: "10.0.0.2", Port: "80", Protocol: "tcp", Learned: true},
		{ID: "l3", Application: "/usr/bin/b", Owner: uid, Remote: "10.0.0.3", Port: "53", Protocol: "udp", Learned: true},
		{ID: "plain", Application: "/usr/bin/a", Owner: uid, Remote: "any", Port: "any", Protocol: "any", Enabled: true},
	}
	if code := te.run("rules", "learned", "approve", "--app", "/usr/bin/a"); code != exitOK {
		t.Fatalf("approve --app: exit %d %q", code, te.err)
	}
	if strings.Join(te.h.approved, ",") != "l1,l2" || !te.h.connects[0] {
		t.Errorf("approve --app /usr/bin/a approved %v (interactive %v), want l1,l2", te.h.approved, te.h.connects)
	}
	te.run("rules", "learned", "discard", "--all")
	if strings.Join(te.h.removed, ",") != "l1,l2,l3" {
		t.Errorf("discard --all removed %v", te.h.removed)
	}
	te.out.Reset()
	te.run("rules", "learned")
	if out := te.out.String(); !strings.Contains(out, "/usr/bin/a (2)") || !strings.Contains(out, "/usr/bin/b (1)") || strings.Contains(out, "plain") {
		t.Errorf("rules learned listed:\n%s", out)
	}
}
