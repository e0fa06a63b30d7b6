package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/daemon"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/peer"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
	"github.com/tattlefw/tattle/tests/testbus"
)

// These tests serve the API on a real, private dbus-daemon and replace only polkit, with an Authorizer that
// records what it is asked and answers as the test says. Callers are a connection of root and one of an
// unprivileged user (the bus tells the service who called, from the socket's credentials).

// fakeAuthorizer records each check and grants the actions in allow.
type fakeAuthorizer struct {
	mu     sync.Mutex
	allow  map[string]bool
	checks []check
}

type check struct {
	sender, action string
	interactive    bool
}

func (f *fakeAuthorizer) Authorized(ctx context.Context, sender, action string, interactive bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, check{sender, action, interactive})
	return f.allow[action], nil
}

func (f *fakeAuthorizer) grant(actions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allow = map[string]bool{}
	for _, a := range actions {
		f.allow[a] = true
	}
}

// taken returns the checks made since the last call.
func (f *fakeAuthorizer) taken() []check {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.checks
	f.checks = nil
	return out
}

type authRig struct {
	auth  *fakeAuthorizer
	store *store.Store
	root  *dbus.Conn // a client connection of root
	user  *dbus.Conn // a client connection of userUID
	dest  string     // the service's unique name
}

// userUID is the unprivileged caller (nobody), or the test's own uid when it does not run as root.
var userUID = func() uint32 {
	if os.Getuid() != 0 {
		return uint32(os.Getuid())
	}
	return 65534
}()

func newAuthRig(t *testing.T) *authRig { return newAuthRigWith(t, "", seams{}) }

// newAuthRigFactory is newAuthRig with factory rule groups from factoryDir ("": none).
func newAuthRigFactory(t *testing.T, factoryDir string) *authRig {
	return newAuthRigWith(t, factoryDir, seams{})
}

// newAuthRigWith is newAuthRigFactory with the service's seams replaced by x.
func newAuthRigWith(t *testing.T, factoryDir string, x seams) *authRig {
	t.Helper()
	bus := testbus.Start(t, testbus.Options{Type: "system", Open: true})
	svcConn := testbus.Connect(t, bus.Address)
	st, err := store.Open(store.Options{StateDir: t.TempDir(), AdminDir: t.TempDir(), FactoryDir: factoryDir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// No kernel: these tests stop at authorization or change only the store, never the kernel's maps.
	enf := &enforce.Enforcer{}
	r := &authRig{auth: &fakeAuthorizer{}, store: st}
	// The agents these tests register run in this test binary: it is the trusted agent program here.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := peer.NewTrusted([]peer.Program{{Path: self, Kind: peer.Terminal}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newService(Options{Conn: svcConn, Store: st, Daemon: daemon.New(enf, st, log), Enforcer: enf, TrustedAgents: trusted,
		Authorizer: r.auth, Version: "test", Logger: log}, x); err != nil {
		t.Fatal(err)
	}
	r.dest = svcConn.Names()[0]
	if os.Getuid() == 0 {
		r.root = testbus.Connect(t, bus.Address)
	}
	r.user = connectAs(t, bus.Address, userUID)
	return r
}

// connectAs connects to the bus with the credentials of uid: the bus reads them from the socket (SO_PEERCRED,
// the effective uid when connect ran), so root sets this one thread's effective uid around the connect.
func connectAs(t *testing.T, address string, uid uint32) *dbus.Conn {
	t.Helper()
	path := strings.TrimPrefix(address, "unix:path=")
	var sock net.Conn
	var err error
	if uint32(os.Getuid()) == uid {
		sock, err = net.Dial("unix", path)
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			// The thread ends with this goroutine (it stays locked), so no other code ever runs with its
			// changed credentials.
			runtime.LockOSThread()
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
				err = e
				return
			}
			sock, err = net.Dial("unix", path)
			unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		}()
		<-done
	}
	if err != nil {
		t.Fatalf("connect to the bus as uid %d: %v", uid, err)
	}
	conn, err := dbus.NewConn(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(int(uid)))}); err != nil {
		t.Fatalf("authenticate as uid %d: %v", uid, err)
	}
	if err := conn.Hello(); err != nil {
		t.Fatal(err)
	}
	var got uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, conn.Names()[0]).Store(&got); err != nil || got != uid {
		t.Fatalf("the bus sees uid %d (%v), want %d", got, err, uid)
	}
	return conn
}

// call calls method on the service. The message is built by hand: godbus's Object.Call drops the
// allow-interactive-authorization flag.
func (r *authRig) call(conn *dbus.Conn, flags dbus.Flags, method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	i := strings.LastIndex(method, ".")
	msg := &dbus.Message{Type: dbus.TypeMethodCall, Flags: flags, Body: args,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldDestination: dbus.MakeVariant(r.dest),
			dbus.FieldPath:        dbus.MakeVariant(api.ObjectPath),
			dbus.FieldInterface:   dbus.MakeVariant(method[:i]),
			dbus.FieldMember:      dbus.MakeVariant(method[i+1:]),
		}}
	if len(args) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(args...))
	}
	return <-conn.SendWithContext(ctx, msg, nil).Done
}

func errName(err error) string {
	if err == nil {
		return ""
	}
	if de, ok := err.(dbus.Error); ok {
		return de.Name
	}
	return err.Error()
}

func wireRule(owner int64) api.Rule {
	return api.Rule{ID: "rule-" + strconv.FormatInt(owner+1, 10), Application: "/usr/bin/curl", Owner: owner, Direction: "outgoing", Remote: "192.0.2.1",
		Port: "443", Protocol: "tcp", Action: rules.ActionDeny, Duration: rules.DurationForever, Enabled: true}
}

func TestRootIsNotAskedAboutAnything(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("TATTLE_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root for a root caller (TATTLE_REQUIRE_ROOT=1)")
		}
		t.Skip("needs root for a root caller")
	}
	r := newAuthRig(t)
	if err := r.call(r.root, 0, api.DaemonInterface+".SetMode", api.ModeSilentDeny).Err; err != nil {
		t.Fatalf("root's SetMode: %v", err)
	}
	if got := r.store.Settings().Mode; got != api.ModeSilentDeny {
		t.Fatalf("mode %q after root's SetMode", got)
	}
	if c := r.auth.taken(); len(c) != 0 {
		t.Fatalf("polkit was asked about root: %+v", c)
	}
}

// TestSetModeNeedsManageRules: the caller's bus name is checked for manage-rules, the interactive flag is
// passed through, and a refusal changes nothing.
func TestSetModeNeedsManageRules(t *testing.T) {
	r := newAuthRig(t)
	sender := r.user.Names()[0]
	err := r.call(r.user, 0, api.DaemonInterface+".SetMode", api.ModeSilentAllow).Err
	if errName(err) != api.ErrAccessDenied {
		t.Fatalf("refused SetMode returned %v, want %s", err, api.ErrAccessDenied)
	}
	if !strings.Contains(err.Error(), api.ActionManageRules) {
		t.Fatalf("the refusal %q does not name the action needed", err)
	}
	if got := r.store.Settings().Mode; got != api.ModeAlert {
		t.Fatalf("a refused SetMode changed the mode to %q", got)
	}
	if c := r.auth.taken(); len(c) != 1 || c[0] != (check{sender, api.ActionManageRules, false}) {
		t.Fatalf("checks %+v, want one for %s, %s, not interactive", c, sender, api.ActionManageRules)
	}
	r.call(r.user, dbus.FlagAllowInteractiveAuthorization, api.DaemonInterface+".SetMode", api.ModeSilentAllow)
	if c := r.auth.taken(); len(c) != 1 || !c[0].interactive {
		t.Fatalf("checks %+v, want one interactive (the call allowed interactive authorization)", c)
	}

	r.auth.grant(api.ActionManageRules)
	if err := r.call(r.user, 0, api.DaemonInterface+".SetMode", api.ModeSilentAllow).Err; err != nil {
		t.Fatalf("authorized SetMode: %v", err)
	}
	if got := r.store.Settings().Mode; got != api.ModeSilentAllow {
		t.Fatalf("mode %q after an authorized SetMode", got)
	}
	// answer-prompts (which every local user has) is not enough.
	r.auth.grant(api.ActionAnswerPrompts)
	if err := r.call(r.user, 0, api.DaemonInterface+".SetSettings", store.DefaultSettings()).Err; errName(err) != api.ErrAccessDenied {
		t.Fatalf("SetSettings with answer-prompts only returned %v, want %s", err, api.ErrAccessDenied)
	}
}

// TestRuleChangesNeedTheActionOfTheirOwner: the caller's own rules need manage-own-rules (answering
// questions, answer-prompts, is not enough); system rules and other users' rules need manage-rules, whatever
// else the caller may do.
func TestRuleChangesNeedTheActionOfTheirOwner(t *testing.T) {
	r := newAuthRig(t)
	for _, tc := range []struct {
		what   string
		owner  int64
		needs  string
		grants string // granted, and not enough
	}{
		{"own rule", int64(userUID), api.ActionManageOwnRules, api.ActionAnswerPrompts},
		{"system rule", api.NoOwner, api.ActionManageRules, api.ActionManageOwnRules},
		{"another user's rule", int64(userUID) + 1, api.ActionManageRules, api.ActionManageOwnRules},
	} {
		r.auth.grant(tc.grants)
		err := r.call(r.user, 0, api.RulesInterface+".Add", []api.Rule{wireRule(tc.owner)}).Err
		if errName(err) != api.ErrAccessDenied {
			t.Fatalf("%s with only %s: %v, want %s", tc.what, tc.grants, err, api.ErrAccessDenied)
		}
		c := r.auth.taken()
		if len(c) == 0 || c[len(c)-1].action != tc.needs {
			t.Fatalf("%s: checks %+v, want the last for %s", tc.what, c, tc.needs)
		}
		if n := len(r.store.Entries()); n != 0 {
			t.Fatalf("%s: a refused Add stored %d rules", tc.what, n)
		}
	}
	// Mixing one's own rule with a system rule needs manage-rules for the call.
	r.auth.grant(api.ActionManageOwnRules)
	err := r.call(r.user, 0, api.RulesInterface+".Add", []api.Rule{wireRule(int64(userUID)), wireRule(api.NoOwner)}).Err
	if errName(err) != api.ErrAccessDenied {
		t.Fatalf("own and system rule with manage-own-rules: %v, want %s", err, api.ErrAccessDenied)
	}
}

// TestListShowsOthersRulesOnlyToManagers: a user sees system rules and their own; manage-rules shows all.
func TestListShowsOthersRulesOnlyToManagers(t *testing.T) {
	r := newAuthRig(t)
	other := userUID + 1
	mine := userUID
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(id string, owner *uint32) rules.Rule {
		return rules.Rule{ID: id, Application: "/usr/bin/curl", Owner: owner, Direction: "outgoing", Remote: "any",
			Port: "any", Protocol: "any", Action: rules.ActionDeny, Duration: rules.DurationForever, Enabled: true,
			Created: now, Modified: now}
	}
	if err := r.store.Add([]rules.Rule{mk("system", nil), mk("mine", &mine), mk("others", &other)}); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		var got []api.Rule
		if err := r.call(r.user, 0, api.RulesInterface+".List").Store(&got); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range got {
			ids = append(ids, g.ID)
		}
		return strings.Join(ids, " ")
	}
	if got := list(); got != "system mine" {
		t.Fatalf("a user lists %q, want system and own rules only", got)
	}
	r.auth.grant(api.ActionManageRules)
	if got := list(); got != "system mine others" {
		t.Fatalf("a manager lists %q, want every rule", got)
	}
}

// TestRegisterAgentNeedsAnswerPrompts: without answer-prompts no agent is registered.
func TestRegisterAgentNeedsAnswerPrompts(t *testing.T) {
	r := newAuthRig(t)
	const path = dbus.ObjectPath("/test/agent")
	if err := r.call(r.user, 0, api.PromptsInterface+".RegisterAgent", path).Err; errName(err) != api.ErrAccessDenied {
		t.Fatalf("RegisterAgent without answer-prompts: %v, want %s", err, api.ErrAccessDenied)
	}
	if err := r.call(r.user, 0, api.PromptsInterface+".UnregisterAgent", path).Err; errName(err) != api.ErrNotFound {
		t.Fatalf("a refused agent could be unregistered (%v): it was registered", err)
	}
	if c := r.auth.taken(); len(c) != 1 || c[0].action != api.ActionAnswerPrompts {
		t.Fatalf("checks %+v, want one for %s", c, api.ActionAnswerPrompts)
	}
	r.auth.grant(api.ActionAnswerPrompts)
	if err := r.call(r.user, 0, api.PromptsInterface+".RegisterAgent", path).Err; err != nil {
		t.Fatalf("RegisterAgent with answer-prompts: %v", err)
	}
	if err := r.call(r.user, 0, api.PromptsInterface+".UnregisterAgent", path).Err; err != nil {
		t.Fatalf("UnregisterAgent of a registered agent: %v", err)
	}
}
