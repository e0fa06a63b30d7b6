package identity

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

const (
	testTable = "tattle_test_ident"
	testQueue = "7461"
	testPkg   = "tattle-test-identity"
)

// newHoldingRig is a rig that holds undecided connections and asks an agent.
func newHoldingRig(t *testing.T, name string, extra ...string) (*rig, *agent) {
	t.Helper()
	exec.Command(testrig.Build(t).Tattled, "-uninstall", "-pin-dir", "/nonexistent").Run() // builds it first
	r := newRig(t, name, append([]string{"-nft-table", testTable, "-queue", testQueue, "-names=false"}, extra...)...)
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", testTable).Run() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r.ctl(t, "rules", "add", "--allow", "--app", self) // the test's own servers
	return r, r.startAgent(t)
}

// ask runs app against srv while the agent is asked, answers with keys and returns the question and result.
func ask(t *testing.T, a *agent, app, srv, keys string) (api.Question, testrig.Result) {
	t.Helper()
	done := make(chan testrig.Result, 1)
	go func() { done <- testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv) }()
	q := a.Next(t, "question", 20*time.Second).Question
	a.Answer(t, keys)
	select {
	case res := <-done:
		return q, res
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not finish after the answer", app)
	}
	return q, testrig.Result{}
}

// ruleFor finds the rule an answer made for app.
func ruleFor(t *testing.T, r *rig, app string) rules.Rule {
	t.Helper()
	var found rules.Rule
	for _, rl := range r.rules(t) {
		if rl.Application == app && !rl.Created.Before(found.Created) {
			found = rl
		}
	}
	if found.ID == "" {
		t.Fatalf("no rule for %s", app)
	}
	return found
}

// waitNoDefault waits until the kernel holds no default verdict for app any more (the helper saw the change).
// The test runs as root, a system user: an answer's rule for it is for any user (issue 10), so both scopes are
// looked at; a look at uid 0 alone would find nothing at once and let the test run the old rule.
func (r *rig) waitNoDefault(t *testing.T, app string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		id, err := identity.Stat(app)
		if err != nil {
			t.Fatal(err)
		}
		has := false
		for _, uid := range []uint32{0, identity.AnyUID} {
			_, in, err := r.enf.DefaultOf(enforce.Scope{App: id, UID: uid})
			if err != nil {
				t.Fatal(err)
			}
			has = has || in
		}
		if !has {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the kernel still allows %s 10 s after it changed\n%s", app, r.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendBytes(t *testing.T, path, extra string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestChangedBinaryIsAskedAgain: a rule made by an answer is for the content it was made for. A program
// rewritten in place (same inode) or replaced by rename is asked about again, the question saying it changed;
// a package upgrade by dpkg keeps the rule with no question.
func TestChangedBinaryIsAskedAgain(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing", tool)
		}
	}
	r, ag := newHoldingRig(t, "identity-changed")
	srv := testrig.StartServers(t).TCP4
	dir := testrig.AppDir(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, dir, "tool")

	q, res := ask(t, ag, app, srv, "a n f")
	if !res.OK || q.Changed || q.Exe != app {
		t.Fatalf("first question %+v, result %+v", q, res)
	}
	rl := ruleFor(t, r, app)
	if len(rl.SHA256) != 64 {
		t.Fatalf("the answer's rule remembers no content: %+v", rl)
	}
	if res := testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv); !res.OK {
		t.Fatalf("allowed program: %+v", res)
	}
	ag.Quiet(t, 500*time.Millisecond)

	// Rewritten in place: same inode, other content.
	before, _ := identity.Stat(app)
	if _, has, err := r.enf.DefaultOf(enforce.Scope{App: before, UID: identity.AnyUID}); err != nil || !has {
		t.Fatalf("the answer's rule for a system process is not in the kernel for any user (%v, %v)", has, err)
	}
	appendBytes(t, app, "changed in place")
	if after, _ := identity.Stat(app); after != before {
		t.Fatalf("the in-place write changed the identity %v -> %v", before, after)
	}
	took := r.waitNoDefault(t, app)
	q, res = ask(t, ag, app, srv, "a n f")
	if !q.Changed || !res.OK {
		t.Errorf("after an in-place change: question %+v (want Changed), result %+v", q, res)
	}
	report.Add(t, "rewritten in place (same inode %d): the helper took the rule out of the kernel in %v; asked again: changed=%v", before.Ino, took.Round(time.Millisecond), q.Changed)

	// Replaced by rename: a new inode at the same path.
	tmp := filepath.Join(dir, ".tool.new")
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, append(data, "replaced"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, app); err != nil {
		t.Fatal(err)
	}
	q, res = ask(t, ag, app, srv, "a n f")
	if !q.Changed || !res.OK {
		t.Errorf("after a replacement: question %+v (want Changed), result %+v", q, res)
	}
	report.Add(t, "replaced by rename: asked again: changed=%v", q.Changed)

	// A package upgrade keeps the rule: version 1 installed and allowed, version 2 installed over it.
	exec.Command("dpkg", "--purge", testPkg).Run()
	t.Cleanup(func() { exec.Command("dpkg", "--purge", testPkg).Run() })
	pkgExe := "/opt/" + testPkg + "/bin/tool"
	install := func(version string) {
		t.Helper()
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
			t.Fatal(err)
		}
		control := "Package: " + testPkg + "\nVersion: " + version + "\nArchitecture: all\nMaintainer: Tattle tests <tests@invalid>\nDescription: Tattle identity test package\n"
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(root, "opt", testPkg, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		exe, err := os.ReadFile(testrig.Build(t).Client)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "tool"), append(exe, ("version "+version)...), 0o755); err != nil {
			t.Fatal(err)
		}
		deb := filepath.Join(t.TempDir(), testPkg+"_"+version+".deb")
		if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v\n%s", err, out)
		}
		if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg -i: %v\n%s", err, out)
		}
	}
	install("1.0")
	q, res = ask(t, ag, pkgExe, srv, "a n f")
	if q.Changed || !res.OK {
		t.Errorf("packaged program's first question %+v, result %+v", q, res)
	}
	v1, _ := identity.Stat(pkgExe)
	install("2.0")
	v2, _ := identity.Stat(pkgExe)
	res = testrig.RunApp(t, pkgExe, testrig.RunOpts{}, "tcp", srv)
	if !res.OK {
		t.Errorf("after the package upgrade: %+v", res)
	}
	ag.Quiet(t, time.Second)
	rl = ruleFor(t, r, pkgExe)
	report.Add(t, "dpkg -i 1.0 -> 2.0 (inode %d -> %d): no question, connect ok=%v, the rule (%s) follows the new content", v1.Ino, v2.Ino, res.OK, rl.ID)
}
