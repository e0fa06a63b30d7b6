package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
)

// startBus runs a private dbus-daemon that lets everyone own and call anything, and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon is not installed (Debian package dbus); the D-Bus round-trip tests need it")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	err = os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer // it complains about fd limits when not started as the bus's own user
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dbus-daemon: %s", stderr.Bytes())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// fake is a helper that implements the contract from memory and records how it was called.
type fake struct {
	mu      sync.Mutex
	flags   map[string]dbus.Flags // method -> flags of its last call
	args    map[string][]any      // method -> arguments of its last call
	fail    map[string]*dbus.Error
	delay   time.Duration
	status  api.Status
	rules   []api.Rule
	flows   []api.Flow
	probs   []api.Problem
	exports map[string][]byte
}

func (f *fake) record(method string, msg dbus.Message, args ...any) *dbus.Error {
	f.mu.Lock()
	f.flags[method] = msg.Flags
	f.args[method] = args
	err, delay := f.fail[method], f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	return err
}

type fakeDaemon struct{ *fake }

func (f fakeDaemon) Status(msg dbus.Message) (api.Status, *dbus.Error) {
	return f.status, f.record("Status", msg)
}

func (f fakeDaemon) SetMode(msg dbus.Message, mode string) *dbus.Error {
	return f.record("SetMode", msg, mode)
}

type fakeRules struct{ *fake }

func (f fakeRules) List(msg dbus.Message) ([]api.Rule, *dbus.Error) {
	return f.rules, f.record("List", msg)
}

func (f fakeRules) Add(msg dbus.Message, rs []api.Rule) ([]string, *dbus.Error) {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids, f.record("Add", msg, rs)
}

func (f fakeRules) Update(msg dbus.Message, r api.Rule) *dbus.Error {
	return f.record("Update", msg, r)
}
func (f fakeRules) Remove(msg dbus.Message, ids []string) *dbus.Error {
	return f.record("Remove", msg, ids)
}

func (f fakeRules) SetEnabled(msg dbus.Message, id string, on bool) *dbus.Error {
	return f.record("SetEnabled", msg, id, on)
}

func (f fakeRules) Import(msg dbus.Message, format string, data []byte, system bool) (uint32, []string, *dbus.Error) {
	return 2, []string{"rule 3: cannot be imported"}, f.record("Import", msg, format, data, system)
}

func (f fakeRules) Export(msg dbus.Message, format string) ([]byte, []string, *dbus.Error) {
	return f.exports[format], []string{}, f.record("Export", msg, format)
}

func (f fakeRules) Problems(msg dbus.Message) ([]api.Problem, *dbus.Error) {
	return f.probs, f.record("Problems", msg)
}

type fakeMonitor struct{ *fake }

func (f fakeMonitor) Flows(msg dbus.Message) ([]api.Flow, *dbus.Error) {
	return f.flows, f.record("Flows", msg)
}

// serve puts a fake helper on the bus at addr under the helper's name.
func serve(t *testing.T, addr string) (*fake, *dbus.Conn) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fake{
		flags: map[string]dbus.Flags{}, args: map[string][]any{}, fail: map[string]*dbus.Error{},
		status: api.Status{Version: "9.9", Backend: "cgroup", Mode: api.ModeAlert, Rules: 3, KernelEntries: 7, Problems: 1, EventsLost: 1 << 40},
		rules: []api.Rule{{ID: "a", Application: "/usr/bin/curl", Owner: api.NoOwner, Remote: "any", Port: "443",
			Protocol: "tcp", Action: "allow", Duration: "forever", Enabled: true, Created: 1700000000}},
		flows: []api.Flow{{Exe: "/usr/bin/curl", Dev: 2049, Ino: 42, UID: 1000, Dest: "[2001:db8::1]:443",
			Protocol: "tcp", Attempts: 3, Allowed: 2, Undecided: 1, LastSeen: 1700000000123, Verdict: "allow"}},
		probs:   []api.Problem{{File: "/etc/tattle/rules.d/x.json", Error: "bad", Since: 1700000000}},
		exports: map[string][]byte{api.FormatTattle: []byte(`{"version": 1, "rules": []}`)},
	}
	for iface, obj := range map[string]any{
		api.DaemonInterface: fakeDaemon{f}, api.RulesInterface: fakeRules{f}, api.MonitorInterface: fakeMonitor{f},
	} {
		if err := conn.Export(obj, api.ObjectPath, iface); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := conn.RequestName(api.BusName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v (reply %v)", api.BusName, err, reply)
	}
	return f, conn
}

func dial(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	c, err := Dial(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	addr := startBus(t)
	f, _ := serve(t, addr)
	c := dial(t, addr, Options{Interactive: true})
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st != f.status {
		t.Fatalf("Status = %+v, %v; want %+v", st, err, f.status)
	}
	rs, err := c.Rules(ctx)
	if err != nil || !reflect.DeepEqual(rs, f.rules) {
		t.Fatalf("Rules = %+v, %v", rs, err)
	}
	owner := api.Rule{ID: "mine", Application: "any", Owner: 1000, Remote: "host:example.com", Port: "any",
		Protocol: "any", Action: "deny", Duration: "until-time", Until: 1900000000, Enabled: true, Note: "n"}
	ids, err := c.AddRules(ctx, []api.Rule{owner})
	if err != nil || !reflect.DeepEqual(ids, []string{"mine"}) {
		t.Fatalf("AddRules = %v, %v", ids, err)
	}
	if got := f.args["Add"][0].([]api.Rule); !reflect.DeepEqual(got, []api.Rule{owner}) {
		t.Errorf("helper got %+v", got)
	}
	if err := c.UpdateRule(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRules(ctx, []string{"a", "b"}); err != nil || !reflect.DeepEqual(f.args["Remove"][0], []string{"a", "b"}) {
		t.Fatalf("RemoveRules: %v, helper got %v", err, f.args["Remove"])
	}
	if err := c.SetEnabled(ctx, "a", false); err != nil || !reflect.DeepEqual(f.args["SetEnabled"], []any{"a", false}) {
		t.Fatalf("SetEnabled: %v, helper got %v", err, f.args["SetEnabled"])
	}
	n, skipped, err := c.Import(ctx, api.FormatLittleSnitch, []byte("{}"), true)
	if err != nil || n != 2 || len(skipped) != 1 {
		t.Fatalf("Import = %d, %v, %v", n, skipped, err)
	}
	if got := f.args["Import"]; !reflect.DeepEqual(got, []any{api.FormatLittleSnitch, []byte("{}"), true}) {
		t.Errorf("helper got %v", got)
	}
	data, _, err := c.Export(ctx, api.FormatTattle)
	if err != nil || string(data) != string(f.exports[api.FormatTattle]) {
		t.Fatalf("Export = %q, %v", data, err)
	}
	ps, err := c.Problems(ctx)
	if err != nil || !reflect.DeepEqual(ps, f.probs) {
		t.Fatalf("Problems = %+v, %v", ps, err)
	}
	fl, err := c.Flows(ctx)
	if err != nil || !reflect.DeepEqual(fl, f.flows) {
		t.Fatalf("Flows = %+v, %v", fl, err)
	}
	if err := c.SetMode(ctx, api.ModeSilentDeny); err != nil || f.args["SetMode"][0] != api.ModeSilentDeny {
		t.Fatalf("SetMode: %v, helper got %v", err, f.args["SetMode"])
	}

	// Calls that change state allow interactive authorization; reads never do.
	for _, m := range []string{"SetMode", "Add", "Update", "Remove", "SetEnabled", "Import"} {
		if f.flags[m]&dbus.FlagAllowInteractiveAuthorization == 0 {
			t.Errorf("%s: allow-interactive-authorization not set", m)
		}
	}
	for _, m := range []string{"Status", "List", "Export", "Problems", "Flows"} {
		if f.flags[m]&dbus.FlagAllowInteractiveAuthorization != 0 {
			t.Errorf("%s: allow-interactive-authorization set on a read", m)
		}
	}
}

func TestNotInteractive(t *testing.T) {
	addr := startBus(t)
	f, _ := serve(t, addr)
	c := dial(t, addr, Options{})
	if _, err := c.AddRules(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if f.flags["Add"]&dbus.FlagAllowInteractiveAuthorization != 0 {
		t.Error("allow-interactive-authorization set without Options.Interactive")
	}
}

func TestErrorKinds(t *testing.T) {
	addr := startBus(t)
	f, _ := serve(t, addr)
	c := dial(t, addr, Options{Interactive: true})
	for name, want := range map[string]Kind{
		api.ErrAccessDenied:                 AccessDenied,
		ErrInteractiveAuthorizationRequired: AccessDenied,
		api.ErrInvalidArgs:                  InvalidArgs,
		api.ErrNotFound:                     NotFound,
		api.ErrReadOnly:                     ReadOnly,
		api.ErrFailed:                       Failed,
	} {
		f.mu.Lock()
		f.fail["Remove"] = dbus.NewError(name, []any{"the helper says no"})
		f.mu.Unlock()
		err := c.RemoveRules(context.Background(), []string{"x"})
		var e *Error
		if !errors.As(err, &e) || e.Kind != want || e.Name != name || !strings.Contains(e.Msg, "the helper says no") {
			t.Errorf("%s: got %#v, want kind %v", name, err, want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	addr := startBus(t)
	c := dial(t, addr, Options{})
	_, err := c.Status(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Kind != Unreachable || e.Name != errServiceUnknown {
		t.Fatalf("nobody owns the name: got %#v, want Unreachable (ServiceUnknown)", err)
	}

	_, err = Dial("unix:path="+filepath.Join(t.TempDir(), "no-bus"), Options{})
	if KindOf(err) != Unreachable || !strings.Contains(err.Error(), "cannot connect") {
		t.Fatalf("no bus: got %v (kind %v)", err, KindOf(err))
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	addr := startBus(t)
	f, _ := serve(t, addr)
	f.delay = 2 * time.Second
	c := dial(t, addr, Options{Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Status(context.Background())
	if KindOf(err) != Unreachable || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("slow helper: got %v (kind %v), want Unreachable", err, KindOf(err))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("timeout took %v", d)
	}

	ci := dial(t, addr, Options{Interactive: true, Timeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	// An interactive change waits past Timeout (a person may be typing a password) until its context ends.
	err = ci.SetMode(ctx, api.ModeAlert)
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("interactive call gave up after %v, before its context ended", d)
	}
	if KindOf(err) != Unreachable {
		t.Errorf("got %v (kind %v)", err, KindOf(err))
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.Flows(ctx); KindOf(err) != Canceled {
		t.Errorf("canceled call: got %v (kind %v), want Canceled", err, KindOf(err))
	}
}

func TestWatchChanged(t *testing.T) {
	addr := startBus(t)
	_, srv := serve(t, addr)
	c := dial(t, addr, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.WatchChanged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Another peer's Changed, broadcast and sent straight to the client (past its match rule): not the
	// helper's, so not delivered.
	forger, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	if err := forger.Emit(api.ObjectPath, api.ChangedSignal); err != nil {
		t.Fatal(err)
	}
	unicast := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath: dbus.MakeVariant(api.ObjectPath), dbus.FieldInterface: dbus.MakeVariant(api.RulesInterface),
		dbus.FieldMember: dbus.MakeVariant("Changed"), dbus.FieldDestination: dbus.MakeVariant(c.Conn().Names()[0]),
	}}
	forger.Send(unicast, nil)
	select {
	case <-ch:
		t.Fatal("a Changed signal from another peer than the helper was delivered")
	case <-time.After(500 * time.Millisecond):
	}
	if err := srv.Emit(api.ObjectPath, api.ChangedSignal); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no Changed notification")
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after the context ended")
	}
}
