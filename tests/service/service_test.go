package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

const nobody = 65534

// httpServer serves on a loopback port until the test ends and returns the port.
func httpServer(t *testing.T) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// curl fetches from a loopback port with the real /usr/bin/curl; it returns curl's exit code and how long it took.
func curl(t *testing.T, port int) (int, time.Duration, string) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("/usr/bin/curl", "-sS", "--max-time", "10", "http://127.0.0.1:"+strconv.Itoa(port)+"/")
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), took, string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, took, string(out)
}

func expectCurlDenied(t *testing.T, what string, port int) {
	t.Helper()
	code, took, out := curl(t, port)
	if code != 7 || took > time.Second {
		t.Errorf("%s: curl exit %d after %v (%s), want exit 7 (could not connect) at once", what, code, took, strings.TrimSpace(out))
	}
}

func expectCurlAllowed(t *testing.T, what string, port int) {
	t.Helper()
	if code, _, out := curl(t, port); code != 0 || out != "hello" {
		t.Errorf("%s: curl exit %d: %s", what, code, out)
	}
}

func TestFirstCallActivatesTattled(t *testing.T) {
	b := startBus(t)
	conn := b.connect(t)
	if _, running := b.tattledPID(t, conn); running {
		t.Fatal("tattled runs before anyone called it")
	}
	out, errOut, code := b.ctl(t, 0, "status")
	if code != 0 {
		t.Fatalf("tattlectl status: exit %d: %s\n%s", code, errOut, b.Log)
	}
	t.Logf("tattlectl status:\n%s", out)
	if !strings.Contains(out, "0.1.0") || !(strings.Contains(out, "cgroup") || strings.Contains(out, "lsm")) {
		t.Errorf("status does not report version and backend:\n%s", out)
	}
	if _, running := b.tattledPID(t, conn); !running {
		t.Error("tattled is not on the bus after the call")
	}
	b.Log.WaitFor(t, "serving on the system bus", 0)
}

func TestRuleFromTattlectlStopsCurlAndSurvivesRestartAndKill(t *testing.T) {
	b := startBus(t)
	conn := b.connect(t)
	port, other := httpServer(t), httpServer(t)
	expectCurlAllowed(t, "curl before any rule", port)

	out, errOut, code := b.ctl(t, 0, "rules", "add", "--deny", "--app", "/usr/bin/curl", "--remote", "127.0.0.1", "--port", strconv.Itoa(port))
	if code != 0 {
		t.Fatalf("rules add: exit %d: %s\n%s", code, errOut, b.Log)
	}
	id := strings.TrimSpace(out)
	expectCurlDenied(t, "curl to the denied port", port)
	expectCurlAllowed(t, "curl to another port", other)

	// Restart through the bus (SIGTERM, then re-activation), then kill -9: the rule stays enforced throughout.
	pid, _ := b.tattledPID(t, conn)
	syscall.Kill(int(pid), syscall.SIGTERM)
	waitGone(t, conn, b)
	expectCurlDenied(t, "curl while tattled is stopped", port)
	if out, errOut, code := b.ctl(t, 0, "rules", "list"); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("after restart the rule %q is not listed (exit %d): %s %s", id, code, out, errOut)
	}
	pid, _ = b.tattledPID(t, conn)
	syscall.Kill(int(pid), syscall.SIGKILL)
	waitGone(t, conn, b)
	expectCurlDenied(t, "curl after kill -9", port)
	if out, _, code := b.ctl(t, 0, "rules", "list"); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("after kill -9 the rule %q is not listed: %s", id, out)
	}
	expectCurlDenied(t, "curl after re-activation", port)

	if _, errOut, code := b.ctl(t, 0, "rules", "remove", id); code != 0 {
		t.Fatalf("rules remove: exit %d: %s", code, errOut)
	}
	expectCurlAllowed(t, "curl after the rule was removed", port)
}

func waitGone(t *testing.T, conn *dbus.Conn, b *bus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, running := b.tattledPID(t, conn); !running {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("tattled did not leave the bus:\n%s", b.Log)
}

func TestUnprivilegedUser(t *testing.T) {
	b := startBus(t)
	srv := testrig.StartServers(t)
	dir := testrig.AppDir(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, dir, "user-app")
	host, port, _ := net.SplitHostPort(srv.TCP4)

	// A system-wide rule needs an administrator; there is no authentication agent, so polkit says no.
	_, errOut, code := b.ctl(t, nobody, "rules", "add", "--deny", "--app", app, "--remote", host, "--port", port)
	if code != 4 || !strings.Contains(errOut, "not authorized") {
		t.Errorf("system rule as nobody: exit %d (%s), want 4 and a refusal", code, errOut)
	}
	// A rule for the user's own processes is theirs to make, with their own password: nobody has none, and
	// without a polkit agent nothing can ask for one.
	if _, errOut, code := b.ctl(t, nobody, "rules", "add", "--user", "--deny", "--app", app, "--remote", host, "--port", port); code != 4 || !strings.Contains(errOut, "your own password") {
		t.Errorf("own rule as nobody without a password: exit %d (%s), want 4 and a word about the password", code, errOut)
	}
	// An ordinary user at a terminal types it (tattlectl starts pkttyagent).
	user := testrig.TestUser(t)
	out, code := testrig.RunWithPassword(t, b.SystemBus, user, user.Password, tattlectl(t), "rules", "add", "--user", "--deny", "--app", app, "--remote", host, "--port", port)
	if code != 0 {
		t.Fatalf("own rule as %s with the password: exit %d: %s\n%s", user, code, out, b.Log)
	}
	id := ""
	if f := strings.Fields(out); len(f) > 0 {
		id = f[len(f)-1]
	}
	nobody := user.UID // the rest of the test is about this user
	if r := testrig.RunApp(t, app, testrig.RunOpts{UID: nobody}, "tcp", srv.TCP4); r.OK || r.Errno != "EPERM" {
		t.Errorf("nobody's app under nobody's deny rule: %+v", r)
	}
	if r := testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv.TCP4); !r.OK {
		t.Errorf("root's app is affected by nobody's rule: %+v", r)
	}
	// Root's processes' connections are not shown to nobody.
	testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv.TCP4b)
	testrig.RunApp(t, app, testrig.RunOpts{UID: nobody}, "tcp", srv.TCP4b)
	for _, who := range []struct {
		uid       uint32
		wantOther bool
	}{{nobody, false}, {0, true}} {
		out, errOut, code := b.ctl(t, who.uid, "monitor", "--once", "--json")
		if code != 0 {
			t.Fatalf("monitor as %d: exit %d: %s", who.uid, code, errOut)
		}
		var flows []api.Flow
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &flows); err != nil {
			t.Fatalf("monitor --json as %d: %v: %s", who.uid, err, out)
		}
		own, other := 0, 0
		for _, f := range flows {
			if f.UID == nobody {
				own++
			} else {
				other++
			}
		}
		if own == 0 || (other > 0) != who.wantOther {
			t.Errorf("monitor as uid %d: %d flows of nobody, %d of others (others expected: %v)", who.uid, own, other, who.wantOther)
		}
	}
	// The user may remove their own rule, but not a system rule.
	sysOut, _, code := b.ctl(t, 0, "rules", "add", "--deny", "--app", app, "--remote", "192.0.2.1")
	if code != 0 {
		t.Fatal("root could not add a system rule")
	}
	if _, errOut, code := b.ctl(t, nobody, "rules", "remove", strings.TrimSpace(sysOut)); code != 4 {
		t.Errorf("nobody removed a system rule: exit %d %s", code, errOut)
	}
	if out, code := testrig.RunWithPassword(t, b.SystemBus, user, user.Password, tattlectl(t), "rules", "remove", id); code != 0 {
		t.Errorf("%s could not remove their own rule %q: exit %d %s", user, id, code, out)
	}
}

func TestHostileCallsGetErrorsNotCrashes(t *testing.T) {
	b := startBus(t)
	conn := b.connect(t)
	obj := conn.Object(api.BusName, api.ObjectPath)
	if err := obj.Call(api.DaemonInterface+".Status", 0).Err; err != nil {
		t.Fatalf("status: %v\n%s", err, b.Log)
	}
	pid, _ := b.tattledPID(t, conn)
	now := time.Now().Unix()
	good := api.Rule{ID: "ok", Application: "any", Owner: api.NoOwner, Direction: "outgoing", Remote: "any", Port: "any",
		Protocol: "any", Action: "deny", Duration: "forever", Enabled: true, Created: now, Modified: now}
	many := make([]api.Rule, 10000)
	for i := range many {
		many[i] = good
		many[i].ID = "r" + strconv.Itoa(i)
	}
	huge := good
	huge.Application = "/" + strings.Repeat("a", 1<<20)
	badEnum := good
	badEnum.Action = "maybe"
	badOwner := good
	badOwner.Owner = -7
	badPort := good
	badPort.Port = "99999999999999999999"
	for _, c := range []struct {
		name   string
		method string
		args   []any
	}{
		{"10,000 rules in one call", api.RulesInterface + ".Add", []any{many}},
		{"a 1 MiB application path", api.RulesInterface + ".Add", []any{[]api.Rule{huge}}},
		{"an invalid action", api.RulesInterface + ".Add", []any{[]api.Rule{badEnum}}},
		{"an invalid owner", api.RulesInterface + ".Add", []any{[]api.Rule{badOwner}}},
		{"a huge port", api.RulesInterface + ".Add", []any{[]api.Rule{badPort}}},
		{"no rules", api.RulesInterface + ".Add", []any{[]api.Rule{}}},
		{"an invalid mode", api.DaemonInterface + ".SetMode", []any{"chaos"}},
		{"an unknown import format", api.RulesInterface + ".Import", []any{"xml", []byte("<x/>"), true}},
		{"garbage to import", api.RulesInterface + ".Import", []any{api.FormatTattle, []byte{0xff, 0x00, '{'}, true}},
		{"an oversized import", api.RulesInterface + ".Import", []any{api.FormatTattle, make([]byte, api.MaxImportSize+1), true}},
		{"removing an unknown rule", api.RulesInterface + ".Remove", []any{[]string{"no-such-rule"}}},
		{"settings with an unknown mode", api.DaemonInterface + ".SetSettings", []any{api.Settings{Mode: "chaos",
			DefaultAction: api.DefaultDeny, QuestionTimeout: 30, FailPolicy: api.FailPass, HistoryDays: 30}}},
		{"settings with a zero timeout", api.DaemonInterface + ".SetSettings", []any{api.Settings{Mode: api.ModeAlert,
			DefaultAction: api.DefaultDeny, QuestionTimeout: 0, FailPolicy: api.FailPass, HistoryDays: 30}}},
		{"settings with a day-long timeout", api.DaemonInterface + ".SetSettings", []any{api.Settings{Mode: api.ModeAlert,
			DefaultAction: api.DefaultDeny, QuestionTimeout: 86400, FailPolicy: api.FailPass, HistoryDays: 30}}},
		{"settings with an unknown fail policy", api.DaemonInterface + ".SetSettings", []any{api.Settings{Mode: api.ModeAlert,
			DefaultAction: api.DefaultAllow, QuestionTimeout: 30, FailPolicy: "maybe", HistoryDays: 30}}},
		{"unregistering an agent never registered", api.PromptsInterface + ".UnregisterAgent", []any{dbus.ObjectPath("/no/agent")}},
	} {
		err := obj.Call(c.method, 0, c.args...).Err
		var derr dbus.Error
		if !errors.As(err, &derr) {
			t.Errorf("%s: want a D-Bus error, got %v", c.name, err)
			continue
		}
		t.Logf("%s: %s: %v", c.name, derr.Name, derr.Body)
		if derr.Name != api.ErrInvalidArgs && derr.Name != api.ErrNotFound {
			t.Errorf("%s: error %s, want %s", c.name, derr.Name, api.ErrInvalidArgs)
		}
	}
	if after, ok := b.tattledPID(t, conn); !ok || after != pid {
		t.Fatalf("tattled did not survive (pid %d -> %d, running %v):\n%s", pid, after, ok, b.Log)
	}
	var rs []api.Rule
	if err := obj.Call(api.RulesInterface+".List", 0).Store(&rs); err != nil || len(rs) != 0 {
		t.Errorf("after refused calls: %d rules (%v), want none", len(rs), err)
	}
	var st api.Settings
	if err := obj.Call(api.DaemonInterface+".Settings", 0).Store(&st); err != nil || st.Mode != api.ModeAlert || st.QuestionTimeout != 30 {
		t.Errorf("after refused settings: %+v (%v), want the defaults kept", st, err)
	}

	// Flooding: one user may own at most api.MaxRulesPerUser rules, so nobody can fill the store for all.
	batch := func(from, n int) []api.Rule {
		out := make([]api.Rule, n)
		for i := range out {
			out[i] = good
			out[i].ID = "flood-" + strconv.Itoa(from+i)
			out[i].Owner = 4242
		}
		return out
	}
	for from := 0; from < api.MaxRulesPerUser; from += api.MaxRulesPerCall {
		if err := obj.Call(api.RulesInterface+".Add", 0, batch(from, api.MaxRulesPerCall)).Err; err != nil {
			t.Fatalf("adding rules %d..: %v", from, err)
		}
	}
	err := obj.Call(api.RulesInterface+".Add", 0, batch(api.MaxRulesPerUser, 1)).Err
	var derr dbus.Error
	if !errors.As(err, &derr) || derr.Name != api.ErrInvalidArgs || !strings.Contains(fmt.Sprint(derr.Body), "more than") {
		t.Errorf("rule %d of one user: %v, want a quota error", api.MaxRulesPerUser+1, err)
	}
	if after, ok := b.tattledPID(t, conn); !ok || after != pid {
		t.Fatalf("tattled did not survive the flood:\n%s", b.Log)
	}
}

func TestDaemonPropertiesAndBatchedMonitorSignals(t *testing.T) {
	b := startBus(t)
	conn := b.connect(t)
	obj := conn.Object(api.BusName, api.ObjectPath)
	for name, want := range map[string]string{"Version": "0.1.0-dev", "Mode": "alert"} {
		v, err := obj.GetProperty(api.DaemonInterface + "." + name)
		if err != nil || v.Value() != want {
			t.Errorf("property %s = %v (%v), want %q", name, v, err, want)
		}
	}
	if err := obj.Call(api.DaemonInterface+".SetMode", 0, api.ModeSilentDeny).Err; err != nil {
		t.Fatal(err)
	}
	if v, _ := obj.GetProperty(api.DaemonInterface + ".Mode"); v.Value() != api.ModeSilentDeny {
		t.Errorf("Mode after SetMode: %v", v)
	}

	signals := make(chan *dbus.Signal, 100)
	conn.Signal(signals)
	if err := obj.Call(api.MonitorInterface+".Subscribe", 0).Err; err != nil {
		t.Fatal(err)
	}
	srv := testrig.StartServers(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "monitored-app")
	// Keep connecting for 4 s: the subscriber must see the app's flow, in at most one batch a second.
	stop := time.Now().Add(4 * time.Second)
	start := time.Now()
	for time.Now().Before(stop) {
		testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv.TCP4)
	}
	batches, seen := 0, uint64(0)
	deadline := time.After(2 * time.Second)
collect:
	for {
		select {
		case sig := <-signals:
			if sig.Name != api.MonitorInterface+".FlowsChanged" {
				continue
			}
			batches++
			var flows []api.Flow
			if err := dbus.Store(sig.Body, &flows); err != nil {
				t.Fatal(err)
			}
			for _, f := range flows {
				if f.Exe == app && f.Dest == srv.TCP4 {
					seen = f.Attempts
				}
			}
		case <-deadline:
			break collect
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d batches in %v; the app's flow reached %d attempts", batches, elapsed.Round(time.Millisecond), seen)
	if seen == 0 {
		t.Error("no FlowsChanged batch carried the monitored app's flow")
	}
	if max := int(elapsed/time.Second) + 1; batches > max {
		t.Errorf("%d batches in %v: more than one a second", batches, elapsed)
	}
}

func TestImportsThroughTheBus(t *testing.T) {
	b := startBus(t)
	group := filepath.Join(testrig.AppDir(t), "blocklist.lsrules") // readable by the unprivileged user too
	if err := os.WriteFile(group, []byte(`{
  "name": "Blocklist",
  "description": "test group",
  "rules": [
    {"action": "deny", "process": "any", "remote-hosts": ["ads.example", "track.example"], "ports": "443", "protocol": "tcp"},
    {"action": "allow", "process": "/usr/bin/curl", "remote-addresses": "192.0.2.0/24"},
    {"action": "allow", "process": "any", "remote": "local-net", "direction": "incoming"}
  ]
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(group, 0o644)

	// A dry run says what would happen and changes nothing.
	before, _, _ := b.ctl(t, 0, "rules", "list", "--json")
	out, errOut, code := b.ctl(t, 0, "rules", "import", "--dry-run", "--format", "lsrules", group)
	if code != 0 || !strings.HasPrefix(out, "dry run, nothing changed: 1 file, 3 source rules: 2 imported exactly, 0 reported, 1 refused; 3 Tattle rules") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if after, _, _ := b.ctl(t, 0, "rules", "list", "--json"); after != before {
		t.Errorf("a dry run changed the rules:\n%s\n%s", before, after)
	}
	out, errOut, code = b.ctl(t, 0, "rules", "import", "--format", "lsrules", group)
	if code != 0 || !strings.HasPrefix(out, "imported: 1 file, 3 source rules: 2 imported exactly, 0 reported, 1 refused; 3 Tattle rules") ||
		!strings.Contains(errOut, "not imported (1 rule): Tattle filters outgoing connections only") || !strings.Contains(errOut, "blocklist.lsrules:7:5") {
		t.Fatalf("root import: exit %d\n%s\n%s", code, out, errOut)
	}
	// The dry run's preview holds the rules the import would make as they would be stored: the group's ids
	// are taken now, so they carry the next free ones; system rules, not approved. Nothing changes.
	before, _, _ = b.ctl(t, 0, "rules", "list", "--json")
	data, err := os.ReadFile(group)
	if err != nil {
		t.Fatal(err)
	}
	var existing []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(before), &existing); err != nil || len(existing) != 3 {
		t.Fatalf("rules list --json: %v\n%s", err, before)
	}
	taken := map[string]bool{}
	for _, r := range existing {
		taken[r.ID] = true
	}
	var sum api.ImportSummary
	var report []string
	req := api.ImportRequest{Format: api.FormatLittleSnitch, Files: []api.ImportFile{{Name: "blocklist.lsrules", Data: data}},
		ListDirs: []api.ImportListDir{}, System: true, DryRun: true}
	if err := b.connect(t).Object(api.BusName, api.ObjectPath).Call(api.RulesInterface+".ImportFiles", 0, req).Store(&sum, &report); err != nil {
		t.Fatalf("ImportFiles dry run: %v", err)
	}
	ads := false
	for _, r := range sum.Preview {
		if r.Owner != api.NoOwner || !r.Unapproved || taken[r.ID] {
			t.Errorf("preview rule %+v: want a system rule, not approved, with an id no rule has:\n%s", r, before)
		}
		ads = ads || (r.Application == "any" && r.Remote == "host:ads.example" && r.Port == "443" && r.Protocol == "tcp" && r.Action == "deny" && r.Enabled)
	}
	if len(sum.Preview) != 3 || sum.Imported != 3 || !ads || len(report) != 1 {
		t.Errorf("dry run: %d rules in the preview, summary %+v, report %q", len(sum.Preview), sum, report)
	}
	if after, _, _ := b.ctl(t, 0, "rules", "list", "--json"); after != before {
		t.Errorf("a dry run through the bus changed the rules:\n%s\n%s", before, after)
	}
	// The same group again, by a user for their own processes (with their own password): ids are taken, so
	// the rules are renamed.
	user := testrig.TestUser(t)
	out, code = testrig.RunWithPassword(t, b.SystemBus, user, user.Password, tattlectl(t), "rules", "import", "--user", "--format", "lsrules", group)
	if code != 0 || !strings.Contains(out, "3 Tattle rules") {
		t.Fatalf("user import: exit %d\n%s", code, out)
	}
	// A file that imports nothing fails, and says so.
	empty := filepath.Join(testrig.AppDir(t), "empty.lsrules")
	os.WriteFile(empty, []byte(`{"name": "x", "rules": [{"action": "ask", "process": "any"}]}`), 0o644)
	if _, errOut, code := b.ctl(t, 0, "rules", "import", empty); code != 1 || !strings.Contains(errOut, "nothing was imported") {
		t.Errorf("empty import: exit %d (%s), want 1", code, errOut)
	}
	// A user may not import system-wide rules.
	if _, errOut, code := b.ctl(t, nobody, "--no-interactive", "rules", "import", "--format", "lsrules", group); code != 4 {
		t.Errorf("system import as nobody: exit %d (%s), want 4", code, errOut)
	}
	listOut, _, code := b.ctl(t, 0, "rules", "list", "--json")
	if code != 0 {
		t.Fatal("rules list failed")
	}
	var rs []struct {
		ID    string  `json:"id"`
		Owner *uint32 `json:"owner"`
	}
	if err := json.Unmarshal([]byte(listOut), &rs); err != nil {
		t.Fatalf("rules list --json: %v\n%s", err, listOut)
	}
	system, owned := 0, 0
	for _, r := range rs {
		switch {
		case r.Owner == nil:
			system++
		case *r.Owner == user.UID:
			owned++
		}
	}
	if system != 3 || owned != 3 {
		t.Errorf("after the imports: %d system rules and %d of %s's, want 3 and 3:\n%s", system, owned, user, listOut)
	}
}
