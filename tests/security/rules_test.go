package security

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// rulesOf lists the rules owned by uid, through root's view.
func rulesOf(t *testing.T, cl *client.Client, uid uint32) map[string]api.Rule {
	t.Helper()
	rs, err := cl.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Rule{}
	for _, r := range rs {
		if r.Owner == int64(uid) {
			out[r.ID] = r
		}
	}
	return out
}

// Must show 1: as an ordinary user with no polkit agent, Add, Update, Remove, Enable and Import of --user
// rules are refused with a clear message; with pkttyagent answering that user's password, accepted.
func TestOwnRuleChangesNeedTheUsersPassword(t *testing.T) {
	u := testrig.TestUser(t)
	b := testrig.StartTattleBus(t, "security-rules", "-hold=false")
	root, err := client.Dial(b.Address, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx := context.Background()
	// A rule of the user's, made by root (who is always authorized), for Update, Enable and Remove to act on.
	now := time.Now().Unix()
	seed := api.Rule{ID: "user-seed", Application: "/usr/bin/curl", Owner: int64(u.UID), Direction: "outgoing", Remote: "192.0.2.7",
		Port: "any", Protocol: "any", Action: "deny", Duration: "forever", Enabled: false, Created: now, Modified: now}
	if _, err := root.AddRules(ctx, []api.Rule{seed}); err != nil {
		t.Fatalf("root adds the user's rule: %v\n%s", err, b.Log)
	}
	group := filepath.Join(testrig.AppDir(t), "group.lsrules")
	os.WriteFile(group, []byte(`{"name": "Sneaky", "rules": [{"action": "allow", "process": "/home/x/evil", "remote": "any"}]}`), 0o644)
	caller := callerBinary(t)

	type change struct {
		what string
		argv []string
		done func(map[string]api.Rule) bool // the change is in the helper's rules
	}
	changes := []change{
		{"Rules.Add of a --user allow rule", []string{testrig.Tattlectl(t), "rules", "add", "--user", "--allow", "--app", "/home/x/evil", "--remote", "any", "--id", "evil"},
			func(rs map[string]api.Rule) bool { _, ok := rs["evil"]; return ok }},
		{"Rules.Update of the user's rule into an allow", []string{caller, "update", "user-seed", "allow"},
			func(rs map[string]api.Rule) bool { return rs["user-seed"].Action == "allow" }},
		{"Rules.SetEnabled of the user's rule", []string{testrig.Tattlectl(t), "rules", "enable", "user-seed"},
			func(rs map[string]api.Rule) bool { return rs["user-seed"].Enabled }},
		{"Rules.Import of a --user rule group", []string{testrig.Tattlectl(t), "rules", "import", "--user", "--format", "lsrules", group},
			func(rs map[string]api.Rule) bool {
				for _, r := range rs {
					if r.Application == "/home/x/evil" && r.ID != "evil" {
						return true
					}
				}
				return false
			}},
		{"Rules.Remove of the user's rule", []string{testrig.Tattlectl(t), "rules", "remove", "user-seed"},
			func(rs map[string]api.Rule) bool { _, ok := rs["user-seed"]; return !ok }},
	}
	for _, c := range changes {
		// Without any polkit agent (no terminal, no desktop): refused, and nothing changes.
		out, code := runAs(t, b.Env, u, c.argv...)
		refused := code != 0 && strings.Contains(out, "not authorized") && strings.Contains(out, "password")
		attacks.attack(t, c.what+" by a program of "+u.Name+" with no polkit agent", refused && !c.done(rulesOf(t, root, u.UID)),
			strings.TrimSpace(out))
	}
	for _, c := range changes {
		// The user at a terminal: tattlectl starts pkttyagent, which asks the user's own password.
		out, code := testrig.RunWithPassword(t, b.SystemBus, u, u.Password, c.argv...)
		if code != 0 || !c.done(rulesOf(t, root, u.UID)) {
			t.Errorf("%s with the user's password: exit %d:\n%s\n%s", c.what, code, out, b.Log)
			continue
		}
		attacks.note(t, "%s accepted with %s's password typed into pkttyagent", c.what, u.Name)
	}
	// A wrong password is no better than none.
	out, code := testrig.RunWithPassword(t, b.SystemBus, u, "not-the-password",
		testrig.Tattlectl(t), "rules", "add", "--user", "--allow", "--app", "/home/x/evil2", "--remote", "any", "--id", "evil2")
	_, added := rulesOf(t, root, u.UID)["evil2"]
	attacks.attack(t, "Rules.Add with a wrong password typed into pkttyagent", code != 0 && !added, lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
