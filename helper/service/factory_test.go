package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

func factoryEnabled(t *testing.T, st *store.Store, id string) bool {
	t.Helper()
	for _, e := range st.Entries() {
		if e.Rule.ID == id {
			return e.Rule.Enabled
		}
	}
	t.Fatalf("no rule %s", id)
	return false
}

// A factory rule covers every user: a user who may change only their own rules cannot switch it off, nobody
// can delete or edit it, and List marks it.
func TestFactoryRulesNeedManageRulesAndCannotBeRemoved(t *testing.T) {
	dir := t.TempDir()
	r0 := rules.Rule{ID: "factory-ntp", Application: "/usr/sbin/chronyd", Direction: "outgoing", Remote: "any", Port: "123",
		Protocol: "udp", Action: rules.ActionAllow, Duration: rules.DurationForever, Enabled: true, Note: "Factory: time"}
	data, err := rules.Marshal(&rules.File{Version: rules.FormatVersion, Rules: []rules.Rule{r0}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ntp.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newAuthRigFactory(t, dir)

	r.auth.grant(api.ActionAnswerPrompts, api.ActionManageOwnRules)
	var listed []api.Rule
	if err := r.call(r.user, 0, api.RulesInterface+".List").Store(&listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || !listed[0].Factory || !listed[0].ReadOnly {
		t.Fatalf("listed %+v, want the factory rule marked Factory", listed)
	}

	err = r.call(r.user, 0, api.RulesInterface+".SetEnabled", "factory-ntp", false).Err
	if errName(err) != api.ErrAccessDenied {
		t.Fatalf("disable a factory rule with only manage-own-rules: %v, want %s", err, api.ErrAccessDenied)
	}
	if c := r.auth.taken(); len(c) == 0 || c[len(c)-1].action != api.ActionManageRules {
		t.Fatalf("checks %+v, want the last for manage-rules", c)
	}
	if !factoryEnabled(t, r.store, "factory-ntp") {
		t.Fatal("a refused SetEnabled disabled the rule")
	}

	r.auth.grant(api.ActionManageRules)
	for _, call := range []struct {
		method string
		args   []any
	}{
		{".Remove", []any{[]string{"factory-ntp"}}},
		{".Update", []any{api.FromRule(r0, "", false)}},
	} {
		err := r.call(r.user, 0, api.RulesInterface+call.method, call.args...).Err
		if errName(err) != api.ErrReadOnly || !strings.Contains(err.Error(), "disable it instead") {
			t.Fatalf("%s of a factory rule with manage-rules: %v, want %s saying to disable it", call.method, err, api.ErrReadOnly)
		}
	}
	if !factoryEnabled(t, r.store, "factory-ntp") {
		t.Fatal("a refused Remove or Update changed the rule")
	}
	// Disabling with manage-rules reaches the kernel, which this rig has none of: tests/dayone TestFactoryRules.
}
