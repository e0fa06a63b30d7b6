package service

import (
	"encoding/xml"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/tattlefw/tattle/shared/api"
)

// These tests hold the access table (access.go) to what it promises: every served method has an entry, a
// call its entry refuses never reaches the method's body, a method without an entry is refused to everyone,
// and a caller the bus cannot identify is never let in as anyone, least of all root.

var allActions = []string{api.ActionManageRules, api.ActionAnswerPrompts, api.ActionManageOwnRules, api.ActionMonitorAll}

// recorder counts the bodies dispatch runs (the seam seams.entered).
type recorder struct {
	mu sync.Mutex
	n  map[method]int
}

func (r *recorder) enter(m method, _ *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[m]++
}

// ran returns how often m's body ran since the last call, and forgets it.
func (r *recorder) ran(m method) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n[m]
	delete(r.n, m)
	return n
}

func newRecordingRig(t *testing.T, table map[method]access, creds func(string) (map[string]dbus.Variant, error)) (*authRig, *recorder) {
	rec := &recorder{n: map[method]int{}}
	return newAuthRigWith(t, "", seams{table: table, credsOf: creds, entered: rec.enter}), rec
}

// introspected returns the Tattle methods the rig's service serves, from its Introspect answer.
func (r *authRig) introspected(t *testing.T) []method {
	t.Helper()
	var data string
	if err := r.call(r.user, 0, "org.freedesktop.DBus.Introspectable.Introspect").Store(&data); err != nil {
		t.Fatal(err)
	}
	return tattleMethods(t, data)
}

// tattleMethods lists the methods of the helper's interfaces (not the app's Agent) in introspection data.
func tattleMethods(t *testing.T, data string) []method {
	t.Helper()
	var node introspect.Node
	if err := xml.Unmarshal([]byte(data), &node); err != nil {
		t.Fatalf("introspection data: %v", err)
	}
	var out []method
	for _, in := range node.Interfaces {
		if !strings.HasPrefix(in.Name, api.BusName+".") || in.Name == api.AgentInterface {
			continue
		}
		for _, m := range in.Methods {
			out = append(out, method{in.Name, m.Name})
		}
	}
	return out
}

// zeroArgs are arguments of the right types for m: zero values (a valid object path for paths).
func zeroArgs(t *testing.T, m method) []any {
	t.Helper()
	for _, o := range interfaceObjects(nil) {
		if o.name != m.iface {
			continue
		}
		f, ok := reflect.TypeOf(o.v).MethodByName(m.member)
		if !ok {
			break
		}
		var args []any
		for j := 2; j < f.Type.NumIn(); j++ { // receiver, *call
			if f.Type.In(j) == reflect.TypeFor[dbus.ObjectPath]() {
				args = append(args, dbus.ObjectPath("/test/agent"))
				continue
			}
			args = append(args, reflect.Zero(f.Type.In(j)).Interface())
		}
		return args
	}
	t.Fatalf("no interface object serves %s", m)
	return nil
}

// TestEveryServedMethodHasAnAccessEntry: the table covers exactly what the service serves (its
// introspection and its interface objects' method sets) and what the shipped contract lists.
func TestEveryServedMethodHasAnAccessEntry(t *testing.T) {
	r := newAuthRig(t)
	table := accessTable()
	served := r.introspected(t)
	if len(served) == 0 {
		t.Fatal("the service introspects no methods")
	}
	for _, m := range served {
		if a, ok := table[m]; !ok || a.kind == undeclared {
			t.Errorf("%s is served but the access table has no entry for it", m)
		}
	}
	for m := range table {
		if !slices.Contains(served, m) {
			t.Errorf("the access table names %s, which is not served", m)
		}
	}
	var objects []method
	for _, o := range interfaceObjects(nil) {
		typ := reflect.TypeOf(o.v)
		for i := range typ.NumMethod() {
			objects = append(objects, method{o.name, typ.Method(i).Name})
		}
	}
	if !slices.Equal(sortedMethods(objects), sortedMethods(served)) {
		t.Errorf("the interface objects have methods %v, the service introspects %v", objects, served)
	}
	shipped, err := os.ReadFile("../../data/io.github.tattlefw.Tattle1.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range tattleMethods(t, string(shipped)) {
		if _, ok := table[m]; !ok {
			t.Errorf("the shipped contract has %s, which has no access entry", m)
		}
	}
}

func sortedMethods(ms []method) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	slices.Sort(out)
	return out
}

// admitsEveryone: the kinds whose methods run for any identified caller (the body then narrows what it
// shows or, for rule owners, checks the owners it reads).
func admitsEveryone(k kind) bool {
	return k == anyone || k == ownConnection || k == managersSeeAll || k == monitorAll || k == ruleOwners
}

// TestDeniedCallsNeverReachTheirBody calls every served method as an unprivileged user whom polkit grants
// nothing: the methods that need an action are refused before their body runs, the others run; then with
// every action granted, every body runs.
func TestDeniedCallsNeverReachTheirBody(t *testing.T) {
	r, rec := newRecordingRig(t, nil, nil)
	table := accessTable()
	served := r.introspected(t)
	refused := 0
	for _, m := range served {
		err := r.call(r.user, 0, m.String(), zeroArgs(t, m)...).Err
		ran := rec.ran(m)
		if admitsEveryone(table[m].kind) {
			if ran != 1 {
				t.Errorf("%s (%s): the body ran %d times for an identified caller, want 1 (%v)", m, table[m].kind, ran, err)
			}
			continue
		}
		refused++
		if ran != 0 {
			t.Errorf("%s (%s): the body ran for a caller polkit refused", m, table[m].kind)
		}
		if errName(err) != api.ErrAccessDenied {
			t.Errorf("%s (%s) refused by polkit: %v, want %s", m, table[m].kind, err, api.ErrAccessDenied)
		}
	}
	if refused < 5 {
		t.Fatalf("only %d methods were refused to a caller with no action; the table declares more", refused)
	}
	r.auth.taken()

	r.auth.grant(allActions...)
	for _, m := range served {
		err := r.call(r.user, 0, m.String(), zeroArgs(t, m)...).Err
		if ran := rec.ran(m); ran != 1 {
			t.Errorf("%s with every action granted: the body ran %d times, want 1 (%v)", m, ran, err)
		}
	}
}

// TestMethodWithoutEntryIsRefused: a service whose table lacks an entry refuses that method to everyone,
// root and callers granted every action included, before its body runs; the others still work.
func TestMethodWithoutEntryIsRefused(t *testing.T) {
	table := accessTable()
	list := method{api.RulesInterface, "List"}
	delete(table, list)
	r, rec := newRecordingRig(t, table, nil)
	r.auth.grant(allActions...)
	callers := map[string]*dbus.Conn{"an authorized user": r.user}
	if r.root != nil {
		callers["root"] = r.root
	}
	for who, conn := range callers {
		err := r.call(conn, 0, list.String()).Err
		if errName(err) != api.ErrAccessDenied || !strings.Contains(err.Error(), "no access is declared") {
			t.Errorf("%s calls %s, which has no entry: %v, want %s", who, list, err, api.ErrAccessDenied)
		}
		if n := rec.ran(list); n != 0 {
			t.Errorf("%s calls %s, which has no entry: its body ran", who, list)
		}
		export := method{api.RulesInterface, "Export"}
		if err := r.call(conn, 0, export.String(), api.FormatTattle).Err; err != nil || rec.ran(export) != 1 {
			t.Errorf("%s calls %s, which keeps its entry: %v", who, export, err)
		}
	}

	// With no entry at all, nothing is served to anyone.
	r, rec = newRecordingRig(t, map[method]access{}, nil)
	r.auth.grant(allActions...)
	for _, m := range r.introspected(t) {
		for who, conn := range map[string]*dbus.Conn{"user": r.user, "root": r.root} {
			if conn == nil {
				continue
			}
			if err := r.call(conn, 0, m.String(), zeroArgs(t, m)...).Err; errName(err) != api.ErrAccessDenied {
				t.Errorf("%s calls %s with an empty table: %v, want %s", who, m, err, api.ErrAccessDenied)
			}
			if rec.ran(m) != 0 {
				t.Errorf("%s calls %s with an empty table: its body ran", who, m)
			}
		}
	}
	if c := r.auth.taken(); len(c) != 0 {
		t.Errorf("polkit was asked about methods without entries: %+v", c)
	}
}

// TestUnidentifiedCallerIsRefused: when the bus's credentials of a caller cannot be read (an error, or an
// answer without a uid), every method that needs to know who calls is refused before its body runs and
// without asking polkit, for root's connection too (a missing uid must never read as 0); the methods
// anyone may call still answer.
func TestUnidentifiedCallerIsRefused(t *testing.T) {
	for _, tc := range []struct {
		what  string
		creds func(string) (map[string]dbus.Variant, error)
	}{
		{"credentials unreadable", func(string) (map[string]dbus.Variant, error) {
			return nil, errors.New("the bus would not say")
		}},
		{"credentials without a uid", func(string) (map[string]dbus.Variant, error) {
			return map[string]dbus.Variant{"ProcessID": dbus.MakeVariant(uint32(os.Getpid()))}, nil
		}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			r, rec := newRecordingRig(t, nil, tc.creds)
			r.auth.grant(allActions...)
			table := accessTable()
			conns := []*dbus.Conn{r.user}
			if r.root != nil {
				conns = append(conns, r.root)
			}
			for _, conn := range conns {
				for _, m := range slices.SortedFunc(maps.Keys(table), func(a, b method) int { return strings.Compare(a.String(), b.String()) }) {
					err := r.call(conn, 0, m.String(), zeroArgs(t, m)...).Err
					ran := rec.ran(m)
					if !table[m].identifies() {
						if ran != 1 {
							t.Errorf("%s (%s) needs nobody identified, yet its body did not run: %v", m, table[m].kind, err)
						}
						continue
					}
					if err == nil || ran != 0 {
						t.Errorf("%s (%s) from an unidentified caller: error %v, body ran %d times; want refused", m, table[m].kind, err, ran)
					}
				}
			}
			if c := r.auth.taken(); len(c) != 0 {
				t.Errorf("polkit was asked about an unidentified caller: %+v", c)
			}
			if got := r.store.Settings().Mode; got != api.ModeAlert {
				t.Errorf("an unidentified caller changed the mode to %q", got)
			}
		})
	}
}

// TestBodiesDemandOnlyDeclaredActions: what a body demands depending on its arguments must be declared in
// its entry too. RegisterAgentWithOptions' "replace" needs manage-own-rules, declared in also; without
// that, replace is refused even when polkit would grant it. And a body that checks rule owners works only
// under a ruleOwners entry: redeclaring Add as anyone does not open it to anyone.
func TestBodiesDemandOnlyDeclaredActions(t *testing.T) {
	table := accessTable()
	reg := method{api.PromptsInterface, "RegisterAgentWithOptions"}
	e := table[reg]
	e.also = nil
	table[reg] = e
	add := method{api.RulesInterface, "Add"}
	table[add] = access{kind: anyone}
	r, _ := newRecordingRig(t, table, nil)
	r.auth.grant(allActions...)
	replace := map[string]dbus.Variant{api.AgentOptionReplace: dbus.MakeVariant(true)}
	if err := r.call(r.user, 0, reg.String(), dbus.ObjectPath("/test/agent"), replace).Err; errName(err) != api.ErrAccessDenied {
		t.Errorf("replace with manage-own-rules undeclared: %v, want %s", err, api.ErrAccessDenied)
	}
	if err := r.call(r.user, 0, api.PromptsInterface+".UnregisterAgent", dbus.ObjectPath("/test/agent")).Err; errName(err) != api.ErrNotFound {
		t.Errorf("the refused agent could be unregistered (%v): it was registered", err)
	}
	if err := r.call(r.user, 0, reg.String(), dbus.ObjectPath("/test/agent"), map[string]dbus.Variant{}).Err; err != nil {
		t.Errorf("register without replace: %v", err)
	}
	if err := r.call(r.user, 0, add.String(), []api.Rule{wireRule(int64(userUID))}).Err; errName(err) != api.ErrAccessDenied {
		t.Errorf("Add declared as anyone: %v, want %s", err, api.ErrAccessDenied)
	}
	if n := len(r.store.Entries()); n != 0 {
		t.Errorf("Add declared as anyone stored %d rules", n)
	}

	// The shipped table lets replace through when polkit grants it.
	r = newAuthRig(t)
	r.auth.grant(allActions...)
	if err := r.call(r.user, 0, reg.String(), dbus.ObjectPath("/test/agent"), replace).Err; err != nil {
		t.Errorf("replace with the shipped table and manage-own-rules granted: %v", err)
	}
}
