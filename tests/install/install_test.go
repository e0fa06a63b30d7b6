// Package install checks what `meson install` lays out, as a distribution package would ship it: the
// binaries, the systemd unit, the D-Bus activation file and bus policy, and the polkit actions. It builds
// the tree with meson into a temporary directory and installs it into a DESTDIR (prefix /usr).
//
// When dbus-daemon is installed it also runs a private bus with the installed bus policy (the same defaults
// as Debian's system bus) and the installed tattlectl against it: only root may own the helper's name,
// everyone may call its interfaces and nothing else, and tattlectl's exit codes come out right.
//
// Needs meson and ninja (skipped without them, saying so); systemd-analyze and xmllint are used when present.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

const prefix = "/usr"

// tree is one meson build and install, shared by the tests of this package.
type tree struct {
	dest    string            // DESTDIR
	files   map[string]string // installed path (without DESTDIR) by the name of the file
	version string            // the project's version, from meson
}

// path is where an installed file is on this machine.
func (tr *tree) path(installed string) string { return filepath.Join(tr.dest, installed) }

var (
	installOnce sync.Once
	installed   *tree
	installErr  string
	installTmp  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if installTmp != "" {
		os.RemoveAll(installTmp)
	}
	os.Exit(code)
}

// install builds and installs once; tests that need the tree call it.
func install(t *testing.T) *tree {
	t.Helper()
	meson, err := exec.LookPath("meson")
	if err != nil {
		t.Skip("meson is not installed (Debian packages meson and ninja-build; tests/install-deps.sh installs them), so the install layout is not checked")
	}
	if _, err := exec.LookPath("ninja"); err != nil {
		t.Skip("ninja is not installed (Debian package ninja-build), so meson cannot build; the install layout is not checked")
	}
	installOnce.Do(func() { installed, installErr = doInstall(meson) })
	if installErr != "" {
		t.Fatal(installErr)
	}
	return installed
}

func doInstall(meson string) (*tree, string) {
	src, err := filepath.Abs("../..")
	if err != nil {
		return nil, err.Error()
	}
	installTmp, err = os.MkdirTemp("", "tattle-install-")
	if err != nil {
		return nil, err.Error()
	}
	build, dest := filepath.Join(installTmp, "build"), filepath.Join(installTmp, "dest")
	steps := [][]string{
		{"setup", "--prefix=" + prefix, build, src},
		{"compile", "-C", build},
		{"install", "-C", build, "--destdir", dest},
	}
	for _, args := range steps {
		cmd := exec.Command(meson, args...)
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, "meson " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out)
		}
	}
	tr := &tree{dest: dest, files: map[string]string{}}
	out, err := exec.Command(meson, "introspect", "--installed", build).Output()
	if err != nil {
		return nil, "meson introspect --installed: " + err.Error()
	}
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, "meson introspect --installed: " + err.Error()
	}
	for _, to := range m {
		tr.files[filepath.Base(to)] = to
	}
	out, err = exec.Command(meson, "introspect", "--projectinfo", build).Output()
	var info struct{ Version string }
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil {
		return nil, "meson introspect --projectinfo: " + err.Error()
	}
	tr.version = info.Version
	return tr, ""
}

func TestBinaries(t *testing.T) {
	tr := install(t)
	for _, b := range []struct{ name, dir string }{
		{"tattled", prefix + "/libexec"},
		{"tattlectl", prefix + "/bin"},
	} {
		want := b.dir + "/" + b.name
		if got := tr.files[b.name]; got != want {
			t.Errorf("%s installed at %q, want %q", b.name, got, want)
			continue
		}
		fi, err := os.Stat(tr.path(want))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", want, fi.Mode())
		}
		// Built by meson with the project's version stamped in.
		out, err := exec.Command(tr.path(want), "-version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != b.name+" "+tr.version {
			t.Errorf("%s -version: %q, %v; want %q", want, out, err, b.name+" "+tr.version)
		}
	}
}

// unitFile is a systemd-style key file: values of each key by section, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unitFile) want(t *testing.T, section, key, value string) {
	t.Helper()
	if got := u[section][key]; len(got) != 1 || got[0] != value {
		t.Errorf("[%s] %s = %q, want %q", section, key, got, value)
	}
}

func checkNoPlaceholders(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("@libexecdir@")) || bytes.Contains(data, []byte("@prefix@")) {
		t.Errorf("%s still has an @...@ placeholder", path)
	}
}

func TestSystemdUnit(t *testing.T) {
	tr := install(t)
	unit := tr.files["tattled.service"]
	if !strings.HasSuffix(unit, "/lib/systemd/system/tattled.service") {
		t.Fatalf("unit installed at %q, want a lib/systemd/system directory", unit)
	}
	checkNoPlaceholders(t, tr.path(unit))
	u := parseUnit(t, tr.path(unit))
	tattled := tr.files["tattled"]
	// Ready through sd_notify once the bus name is taken; watchdog pings while the main loops answer.
	u.want(t, "Service", "Type", "notify")
	u.want(t, "Service", "NotifyAccess", "main")
	if len(u["Service"]["WatchdogSec"]) != 1 {
		t.Errorf("WatchdogSec = %v, want one value (a hung helper is restarted)", u["Service"]["WatchdogSec"])
	}
	u.want(t, "Service", "BusName", api.BusName)
	u.want(t, "Service", "ExecStart", tattled)
	u.want(t, "Service", "NoNewPrivileges", "yes")
	u.want(t, "Service", "ProtectSystem", "strict")
	u.want(t, "Service", "Restart", "on-failure")
	u.want(t, "Install", "WantedBy", "multi-user.target")
	caps := []string{"CAP_BPF", "CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		got := strings.Fields(strings.Join(u["Service"][key], " "))
		slices.Sort(got)
		if !slices.Equal(got, caps) {
			t.Errorf("%s = %v, want exactly %v", key, got, caps)
		}
	}
	for _, dir := range []string{"/sys/fs/bpf", "/var/lib/tattle"} {
		if !slices.Contains(strings.Fields(strings.Join(u["Service"]["ReadWritePaths"], " ")), dir) {
			t.Errorf("ReadWritePaths %q lacks %s", u["Service"]["ReadWritePaths"], dir)
		}
	}

	// systemd's own reading of the unit. verify also insists that ExecStart exists, so check a copy that
	// runs the binary from DESTDIR (ExecStart itself was checked above).
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the unit was not checked by systemd-analyze verify")
		return
	}
	data, err := os.ReadFile(tr.path(unit))
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "tattled.service")
	data = bytes.Replace(data, []byte("ExecStart="+tattled+"\n"), []byte("ExecStart="+tr.path(tattled)+"\n"), 1)
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", copyPath)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and bad values are only warnings to systemd-analyze; here they are errors.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, copyPath) || strings.HasPrefix(line, "tattled.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

func TestActivationFile(t *testing.T) {
	tr := install(t)
	name := api.BusName + ".service" // the bus finds system services by this file name
	want := prefix + "/share/dbus-1/system-services/" + name
	if got := tr.files[name]; got != want {
		t.Fatalf("activation file installed at %q, want %q", got, want)
	}
	checkNoPlaceholders(t, tr.path(want))
	u := parseUnit(t, tr.path(want))
	u.want(t, "D-BUS Service", "Name", api.BusName)
	u.want(t, "D-BUS Service", "Exec", tr.files["tattled"])
	u.want(t, "D-BUS Service", "User", "root")
	u.want(t, "D-BUS Service", "SystemdService", "tattled.service")
}

// busConfig is the part of a D-Bus bus configuration file the policy test reads.
type busConfig struct {
	XMLName  xml.Name `xml:"busconfig"`
	Policies []struct {
		User    string `xml:"user,attr"`
		Group   string `xml:"group,attr"`
		Context string `xml:"context,attr"`
		Rules   []struct {
			XMLName xml.Name
			Attrs   []xml.Attr `xml:",any,attr"`
		} `xml:",any"`
	} `xml:"policy"`
}

func attr(attrs []xml.Attr, name string) string {
	for _, a := range attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// TestFactoryRules checks that every factory rule group of the checkout (data/rules.d) is installed, unchanged,
// where tattled looks for them by default: PREFIX/share/tattle/rules.d beside PREFIX/libexec/tattled.
func TestFactoryRules(t *testing.T) {
	tr := install(t)
	srcs, err := filepath.Glob(filepath.Join(testrig.RepoRoot(t), "data", "rules.d", "*.json"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no factory groups in data/rules.d (%v)", err)
	}
	for _, src := range srcs {
		want := prefix + "/share/tattle/rules.d/" + filepath.Base(src)
		if got := tr.files[filepath.Base(src)]; got != want {
			t.Errorf("factory group %s installed at %q, want %q (is it listed in meson.build?)", filepath.Base(src), got, want)
			continue
		}
		data, err := os.ReadFile(tr.path(want))
		if err != nil {
			t.Fatal(err)
		}
		orig, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, orig) {
			t.Errorf("installed %s differs from data/rules.d/%s", want, filepath.Base(src))
		}
	}
}

// TestInterfaceFile checks that the shipped D-Bus contract (tests/service proves it matches what tattled
// serves) is installed where tools look for interface descriptions, unchanged and well-formed.
func TestInterfaceFile(t *testing.T) {
	tr := install(t)
	want := prefix + "/share/dbus-1/interfaces/" + api.BusName + ".xml"
	if got := tr.files[api.BusName+".xml"]; got != want {
		t.Fatalf("interface description installed at %q, want %q", got, want)
	}
	data, err := os.ReadFile(tr.path(want))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(testrig.RepoRoot(t), "data", api.BusName+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, src) {
		t.Fatalf("installed %s differs from data/%s.xml", want, api.BusName)
	}
	var node struct {
		Interfaces []struct {
			Name string `xml:"name,attr"`
		} `xml:"interface"`
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&node); err != nil {
		t.Fatalf("interface description is not well-formed XML: %v", err)
	}
	names := map[string]bool{}
	for _, in := range node.Interfaces {
		names[in.Name] = true
	}
	for _, in := range []string{api.DaemonInterface, api.RulesInterface, api.MonitorInterface, api.PromptsInterface, api.AgentInterface} {
		if !names[in] {
			t.Errorf("interface description lacks %s", in)
		}
	}
}

func TestBusPolicy(t *testing.T) {
	tr := install(t)
	want := prefix + "/share/dbus-1/system.d/" + api.BusName + ".conf"
	if got := tr.files[api.BusName+".conf"]; got != want {
		t.Fatalf("bus policy installed at %q, want %q", got, want)
	}
	data, err := os.ReadFile(tr.path(want))
	if err != nil {
		t.Fatal(err)
	}
	var conf busConfig
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&conf); err != nil {
		t.Fatalf("bus policy is not well-formed XML: %v", err)
	}
	owners := map[string]bool{}
	sends := map[string]bool{}
	for _, p := range conf.Policies {
		for _, r := range p.Rules {
			if r.XMLName.Local != "allow" {
				continue
			}
			if own := attr(r.Attrs, "own"); own != "" {
				owners[p.User+p.Group+p.Context+":"+own] = true
			}
			if p.Context == "default" {
				if dest := attr(r.Attrs, "send_destination"); dest != "" {
					if dest != api.BusName {
						t.Errorf("the default policy lets everyone send to %q", dest)
					}
					sends[attr(r.Attrs, "send_interface")] = true
				} else if attr(r.Attrs, "send_interface") != "" || attr(r.Attrs, "send_type") != "" {
					t.Errorf("the default policy allows sending without naming the helper: %v", r.Attrs)
				}
			}
		}
	}
	if !owners["root:"+api.BusName] || len(owners) != 1 {
		t.Errorf("who may own names: %v; want only root, for %s", owners, api.BusName)
	}
	for _, iface := range []string{api.DaemonInterface, api.RulesInterface, api.MonitorInterface,
		"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Peer"} {
		if !sends[iface] {
			t.Errorf("the default policy does not let everyone call %s", iface)
		}
	}
}

// polkitPolicy is the polkit action file.
type polkitPolicy struct {
	XMLName xml.Name `xml:"policyconfig"`
	Vendor  string   `xml:"vendor"`
	Actions []struct {
		ID          string `xml:"id,attr"`
		Description struct {
			Text   string `xml:",chardata"`
			Domain string `xml:"gettext-domain,attr"`
		} `xml:"description"`
		Message struct {
			Text   string `xml:",chardata"`
			Domain string `xml:"gettext-domain,attr"`
		} `xml:"message"`
		Defaults struct {
			Any      string `xml:"allow_any"`
			Inactive string `xml:"allow_inactive"`
			Active   string `xml:"allow_active"`
		} `xml:"defaults"`
	} `xml:"action"`
}

func TestPolkitPolicy(t *testing.T) {
	tr := install(t)
	want := prefix + "/share/polkit-1/actions/io.github.tattlefw.tattle.policy"
	if got := tr.files["io.github.tattlefw.tattle.policy"]; got != want {
		t.Fatalf("polkit policy installed at %q, want %q", got, want)
	}
	path := tr.path(want)
	if xmllint, err := exec.LookPath("xmllint"); err == nil {
		if out, err := exec.Command(xmllint, "--noout", "--nonet", path).CombinedOutput(); err != nil {
			t.Errorf("xmllint --noout: %v\n%s", err, out)
		}
	} else {
		t.Log("xmllint is not installed (Debian package libxml2-utils): checking the XML with encoding/xml only")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p polkitPolicy
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("polkit policy is not well-formed XML: %v", err)
	}
	wantDefaults := map[string][3]string{
		api.ActionManageRules:   {"auth_admin_keep", "auth_admin_keep", "auth_admin_keep"},
		api.ActionAnswerPrompts: {"yes", "yes", "yes"},
		api.ActionMonitorAll:    {"auth_admin_keep", "auth_admin_keep", "auth_admin_keep"},
		// One's own rule changes that are not answers need the user's own password (SECURITY.md).
		api.ActionManageOwnRules: {"auth_self_keep", "auth_self_keep", "auth_self_keep"},
	}
	if len(p.Actions) != len(wantDefaults) {
		t.Errorf("%d actions, want %d", len(p.Actions), len(wantDefaults))
	}
	for _, a := range p.Actions {
		d, ok := wantDefaults[a.ID]
		if !ok {
			t.Errorf("unexpected action %q", a.ID)
			continue
		}
		if got := [3]string{a.Defaults.Any, a.Defaults.Inactive, a.Defaults.Active}; got != d {
			t.Errorf("%s: defaults (any, inactive, active) = %v, want %v", a.ID, got, d)
		}
		if strings.TrimSpace(a.Description.Text) == "" || strings.TrimSpace(a.Message.Text) == "" {
			t.Errorf("%s: needs a description and a message", a.ID)
		}
		if a.Description.Domain != "tattle" || a.Message.Domain != "tattle" {
			t.Errorf("%s: description and message need gettext-domain=\"tattle\"", a.ID)
		}
	}
}

// startBus runs dbus-daemon with Debian's system bus defaults plus the installed Tattle policy.
func startBus(t *testing.T, tr *tree) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon is not installed (Debian package dbus): the bus policy was not tried on a real bus")
	}
	b := testrig.StartSystemBus(t, testrig.BusOptions{Policies: []string{tr.path(tr.files[api.BusName+".conf"])}})
	return b.Address
}

// stub answers two methods the way tattled would.
type stubDaemon struct{}

func (stubDaemon) Status() (api.Status, *dbus.Error) {
	return api.Status{Version: "stub", Backend: "cgroup", Mode: api.ModeAlert, Rules: 1}, nil
}

type stubRules struct{}

func (stubRules) Remove(ids []string) *dbus.Error {
	return dbus.NewError(api.ErrAccessDenied, []any{"not authorized to remove system rules"})
}

type stubSecret struct{}

func (stubSecret) Leak() (string, *dbus.Error) { return "leaked", nil }

func TestBusPolicyOnDBusDaemon(t *testing.T) {
	tr := install(t)
	addr := startBus(t, tr)

	helper, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer helper.Close()
	reply, err := helper.RequestName(api.BusName, dbus.NameFlagDoNotQueue)
	if os.Geteuid() != 0 {
		if err == nil && reply == dbus.RequestNameReplyPrimaryOwner {
			t.Fatalf("uid %d could own %s; only root may", os.Geteuid(), api.BusName)
		}
		t.Skip("not root: checked that others cannot own the helper's name; calling it needs root to own it")
	}
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("root cannot own %s: %v (reply %v)", api.BusName, err, reply)
	}
	helper.Export(stubDaemon{}, api.ObjectPath, api.DaemonInterface)
	helper.Export(stubRules{}, api.ObjectPath, api.RulesInterface)
	helper.Export(stubSecret{}, api.ObjectPath, api.BusName+".Secret")

	caller, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	obj := caller.Object(api.BusName, api.ObjectPath)
	var st api.Status
	if err := obj.Call(api.DaemonInterface+".Status", 0).Store(&st); err != nil || st.Version != "stub" {
		t.Errorf("calling Daemon.Status through the policy: %+v, %v", st, err)
	}
	// An interface the policy does not list is refused by the bus, even for root.
	err = obj.Call(api.BusName+".Secret.Leak", 0).Err
	if de, ok := err.(dbus.Error); !ok || de.Name != api.ErrAccessDenied {
		t.Errorf("calling an unlisted interface: %v, want the bus to refuse it", err)
	}

	// The installed tattlectl against this bus: output and exit codes.
	tattlectl := tr.path(tr.files["tattlectl"])
	ctl := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, tattlectl, args...)
		cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+addr)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	if out, errs, code := ctl("status"); code != 0 || !strings.Contains(out, "Version:         stub") {
		t.Errorf("tattlectl status: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := ctl("--no-interactive", "rules", "remove", "x"); code != 4 ||
		errs != "tattlectl: access denied: not authorized to remove system rules\ntattlectl: this needs an administrator's authorization; run it in a session with a polkit agent, or with sudo\n" {
		t.Errorf("tattlectl rules remove (denied): exit %d, want 4\n%s", code, errs)
	}
	if _, errs, code := ctl("monitor", "--once"); code != 1 || !strings.Contains(errs, "tattled does not offer Monitor.Flows") {
		t.Errorf("tattlectl monitor on a helper without Monitor: exit %d, want 1\n%s", code, errs)
	}
	if _, err := helper.ReleaseName(api.BusName); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := ctl("status"); code != 3 || !strings.Contains(errs, "tattlectl: cannot reach tattled: ") ||
		!strings.Contains(errs, "tattlectl: is tattled installed? (sudo meson install -C build)") {
		t.Errorf("tattlectl status with no helper: exit %d, want 3\n%s", code, errs)
	}
}
