package identity

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"encoding/json"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// appImageRuntime builds tests/internal/appimageruntime statically and tags it as an AppImage type-2 runtime
// ('A', 'I', 0x02 at offset 8 of the ELF header, where the real runtime has them).
func appImageRuntime(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "runtime")
	cmd := exec.Command("go", "build", "-o", out, "github.com/tattlefw/tattle/tests/internal/appimageruntime")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the AppImage runtime: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	copy(data[8:11], []byte{'A', 'I', 2})
	return data
}

// makeAppImage writes an AppImage: the runtime with a squashfs of payload appended.
func makeAppImage(t *testing.T, runtime []byte, payload, path string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "payload.squashfs")
	if out, err := exec.Command("mksquashfs", payload, img, "-noappend", "-quiet", "-all-root").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	sq, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(append([]byte(nil), runtime...), sq...), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

var mountedAt = regexp.MustCompile(`appimage-runtime: mounted at (\S+)`)

// launch is one run of an AppImage (or any program) with extra environment: its report, the mount its runtime
// made ("" when none) and what it wrote on standard error. The mount is taken down when the test ends.
func launch(t *testing.T, exe string, env []string, args ...string) (testrig.Result, string, string) {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("%s did not finish", exe)
	}
	mnt := ""
	if m := mountedAt.FindStringSubmatch(stderr.String()); m != nil {
		mnt = m[1] // taken down by unmountNew
	}
	var res testrig.Result
	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil && !strings.Contains(stdout.String(), "error") {
		t.Logf("%s printed %q (stderr %q)", exe, stdout.String(), stderr.String())
	}
	if strings.TrimSpace(stdout.String()) == "ok" {
		res.OK = true // python's report
	}
	return res, mnt, stderr.String()
}

func unmount(dir string) {
	exec.Command("umount", dir).Run()
	os.Remove(dir)
}

// fuseMounts lists the mount points of FUSE file systems now.
func fuseMounts(t *testing.T) map[string]bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") && len(fields) > 4 {
				out[fields[4]] = true
			}
		}
	}
	return out
}

// unmountNew takes down, when the test ends, the /tmp/.mount_ file systems the AppImages' runtimes leave
// (their squashfuse serves until unmounted, as the real runtime's FUSE child serves until its app exits).
func unmountNew(t *testing.T) {
	before := fuseMounts(t)
	t.Cleanup(func() {
		for m := range fuseMounts(t) {
			if !before[m] && strings.HasPrefix(m, "/tmp/.mount_") {
				unmount(m)
			}
		}
	})
}

// askedLaunch launches while the agent is asked, answers with keys and returns the question and the result.
func askedLaunch(t *testing.T, ag *agent, keys, exe string, env []string, args ...string) (api.Question, testrig.Result, string) {
	t.Helper()
	type out struct {
		res testrig.Result
		mnt string
	}
	done := make(chan out, 1)
	go func() {
		res, mnt, _ := launch(t, exe, env, args...)
		done <- out{res, mnt}
	}()
	q := ag.Next(t, "question", 30*time.Second).Question
	ag.Answer(t, keys)
	select {
	case o := <-done:
		return q, o.res, o.mnt
	case <-time.After(40 * time.Second):
		t.Fatalf("%s did not finish after the answer", exe)
	}
	return q, testrig.Result{}, ""
}

// TestAppImageIdentity: an AppImage is its .AppImage file. Launched three times, its runtime mounts its
// payload at a fresh /tmp/.mount_ path each time and runs AppRun from there; the first connection is asked
// once, the answer's rule names appimage:FILE and launches 2 and 3 are decided by it in the kernel. A program
// that only looks like the AppImage does not get its rule: the same AppRun served from a FUSE mount made by
// hand at /tmp/.mount_… (with the AppImage's name as its fsname and APPIMAGE set), the AppImage's runtime told
// to run another file's payload (TARGET_APPIMAGE) or started with LD_PRELOAD, and a host program (python3) an
// AppImage runs, which is python3.
func TestAppImageIdentity(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "squashfuse", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (tests/install-deps.sh installs squashfs-tools, squashfuse, python3)", tool)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("no /dev/fuse: %v", err)
	}
	runtime := appImageRuntime(t) // built before the helper holds connections (go may look at its proxy)
	client := testrig.Build(t).Client
	r, ag := newHoldingRig(t, "identity-appimage")
	servers := testrig.StartServers(t)
	srv, srv2 := servers.TCP4, servers.TCP4b
	unmountNew(t)
	dir := testrig.AppDir(t)

	payload := t.TempDir()
	testrig.CopyApp(t, client, payload, "AppRun")
	app := makeAppImage(t, runtime, payload, filepath.Join(dir, "Tool.AppImage"))
	file, err := identity.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.AppImageOf(file)
	name := identity.AppImagePrefix + app

	// Launch 1: asked once, about the AppImage by its file; allowed forever.
	q, res, mnt1 := askedLaunch(t, ag, "a n f", app, nil, "tcp", srv)
	if !res.OK || q.Exe != name || q.Package != name || (identity.Executable{Dev: q.Dev, Ino: q.Ino}) != want {
		t.Fatalf("launch 1: question %+v, result %+v; want a question about %s (identity %v) and the connection allowed\n%s", q, res, name, want, r.Log)
	}
	if !strings.HasPrefix(mnt1, "/tmp/.mount_") {
		t.Fatalf("launch 1 mounted at %q", mnt1)
	}
	rl := ruleFor(t, r, name)
	if len(rl.SHA256) != 64 {
		t.Errorf("the answer's rule remembers no content of the AppImage: %+v", rl)
	}
	v, ok := r.enf.ViaOf(uint32(res.PID))
	if !ok || v.App != want {
		t.Errorf("launch 1 (pid %d): the kernel's entry is %+v (%v), want the AppImage %v", res.PID, v, ok, want)
	}
	report.Add(t, "AppImage %s launch 1: mounted at %s, asked once (%q), answered allow forever: rule %s for %s", filepath.Base(app), mnt1, q.Exe, rl.ID, rl.Application)

	// The answer's rule is in the kernel, for the AppImage identity.
	if _, in, err := r.enf.DefaultOf(enforce.Scope{App: want, UID: identity.AnyUID}); err != nil || !in {
		t.Errorf("the AppImage's rule is not a kernel scope (%v, %v)\n%s", in, err, r.Log)
	}
	flowBefore, _ := r.kernelFlow(t, want, srv)

	// Launches 2 and 3: fresh mounts, no question, decided in the kernel. Launch 2 connects where launch 1
	// did (the answered flow), launch 3 to a server the AppImage never reached: only the rule's kernel scope
	// can decide that one.
	mounts := map[string]bool{mnt1: true}
	for _, l := range []struct {
		n    int
		dest string
	}{{2, srv}, {3, srv2}} {
		res, mnt, stderr := launch(t, app, nil, "tcp", l.dest)
		if !res.OK {
			t.Errorf("launch %d: %+v (%s)\n%s", l.n, res, stderr, r.Log)
		}
		if !strings.HasPrefix(mnt, "/tmp/.mount_") || mounts[mnt] {
			t.Errorf("launch %d mounted at %q; want a fresh /tmp/.mount_ path (before: %v)", l.n, mnt, mounts)
		}
		mounts[mnt] = true
		v, ok := r.enf.ViaOf(uint32(res.PID))
		if !ok || v.App != want {
			t.Errorf("launch %d (pid %d): the kernel's entry is %+v (%v), want the AppImage %v", l.n, res.PID, v, ok, want)
		}
		report.Add(t, "launch %d: mounted at %s (fresh), connect to %s ok=%v, the kernel identified pid %d as %v (the AppImage)", l.n, mnt, l.dest, res.OK, res.PID, v.App)
	}
	ag.Quiet(t, 500*time.Millisecond)
	flowAfter, found := r.kernelFlow(t, want, srv)
	if !found || flowAfter.Allowed < flowBefore.Allowed+1 || flowAfter.Undecided != flowBefore.Undecided {
		t.Errorf("launch 2 was not decided in the kernel: flow before %+v, after %+v", flowBefore, flowAfter)
	}
	flow3, found3 := r.kernelFlow(t, want, srv2)
	if !found3 || flow3.Allowed == 0 || flow3.Undecided != 0 || flow3.RuleID == ^uint32(0) || r.ruleShown(t, name, srv2) != rl.ID {
		t.Errorf("launch 3 was not decided in the kernel by %s: flow %+v (shown rule %q)", rl.ID, flow3, r.ruleShown(t, name, srv2))
	}
	report.Add(t, "launches 2 and 3: no question; kernel flows of the AppImage: to %s allowed %d -> %d, undecided %d -> %d; to %s (new) allowed %d, undecided %d, by rule %s",
		srv, flowBefore.Allowed, flowAfter.Allowed, flowBefore.Undecided, flowAfter.Undecided, srv2, flow3.Allowed, flow3.Undecided, r.ruleShown(t, name, srv2))

	// What a person sees: the monitor names the AppImage.
	if table := r.ctl(t, "monitor", "--once"); !strings.Contains(table, name) {
		t.Errorf("tattlectl monitor does not show %s:\n%s", name, table)
	}

	// (a) The same AppRun from a FUSE mount made by hand at /tmp/.mount_…, its fsname the AppImage's path,
	// APPIMAGE set, exec'd directly: no AppImage was exec'd, so it is its own (new) file. Asked, denied.
	fake := "/tmp/.mount_fake" + fmt.Sprint(os.Getpid())
	os.MkdirAll(fake, 0o755)
	sq := filepath.Join(t.TempDir(), "fake.squashfs")
	if out, err := exec.Command("mksquashfs", payload, sq, "-noappend", "-quiet", "-all-root").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("squashfuse", "-o", "fsname="+app, sq, fake).CombinedOutput(); err != nil {
		t.Fatalf("squashfuse the forged mount: %v\n%s", err, out)
	}
	q, res, _ = askedLaunch(t, ag, "d 1", filepath.Join(fake, "AppRun"), []string{"APPIMAGE=" + app, "APPDIR=" + fake}, "tcp", srv)
	if res.OK || q.Exe == name || q.Package != "" {
		t.Errorf("(a) AppRun from a hand-made mount: question %+v, result %+v; want asked about the file itself and refused", q, res)
	}
	report.Add(t, "(a) the same AppRun from a hand-made FUSE mount %s (fsname %s, APPIMAGE set): asked about %q, denied once: connect ok=%v", fake, filepath.Base(app), q.Exe, res.OK)

	// (b) The AppImage's own runtime told to run another file's payload (TARGET_APPIMAGE), and started with
	// LD_PRELOAD: the kernel refuses the AppImage identity at its exec. Asked, denied.
	otherPayload := t.TempDir()
	otherRun := testrig.CopyApp(t, client, otherPayload, "AppRun")
	appendBytes(t, otherRun, "another app")
	other := makeAppImage(t, runtime, otherPayload, filepath.Join(dir, "Other.AppImage"))
	for _, env := range [][]string{{"TARGET_APPIMAGE=" + other}, {"LD_PRELOAD=/nonexistent/inject.so"}} {
		q, res, mnt := askedLaunch(t, ag, "d 1", app, env, "tcp", srv)
		if res.OK || q.Exe == name || q.Package != "" || !strings.HasPrefix(q.Exe, "/tmp/.mount_") {
			t.Errorf("(b) %s with %v: question %+v, result %+v; want asked about the file on its mount and refused", filepath.Base(app), env, q, res)
		}
		if v, ok := r.enf.ViaOf(uint32(q.PID)); ok && v.App.IsAppImage() {
			t.Errorf("(b) %v: the kernel gave pid %d the AppImage identity %v", env, q.PID, v.App)
		}
		report.Add(t, "(b) %s run with %s: mounted at %s, asked about %q (not the AppImage), denied once: connect ok=%v", filepath.Base(app), env[0], mnt, q.Exe, res.OK)
	}

	// (c) A host program an AppImage runs is that program: Py.AppImage's AppRun is /usr/bin/python3, and the
	// AppImage is allowed everything; python3 -c connecting is python3, asked about and denied.
	pyPayload := t.TempDir()
	if err := os.Symlink("/usr/bin/python3", filepath.Join(pyPayload, "AppRun")); err != nil {
		t.Fatal(err)
	}
	py := makeAppImage(t, runtime, pyPayload, filepath.Join(dir, "Py.AppImage"))
	r.ctl(t, "rules", "add", "--allow", "--app", identity.AppImagePrefix+py, "--remote", "any")
	host, port, _ := strings.Cut(srv, ":")
	code := fmt.Sprintf(`import socket
s = socket.socket()
try:
    s.connect((%q, %s)); print("ok")
except OSError as e:
    print("error", e)`, host, port)
	q, res, mnt := askedLaunch(t, ag, "d 1", py, nil, "-c", code)
	python, _ := filepath.EvalSymlinks("/usr/bin/python3")
	if res.OK || q.Exe != python || q.Package != "" {
		t.Errorf("(c) python3 run by Py.AppImage: question %+v, result %+v; want asked about %s and refused", q, res, python)
	}
	report.Add(t, "(c) Py.AppImage (allowed; AppRun -> /usr/bin/python3) mounted at %s: python3 -c asked about %q, denied once: connect ok=%v", mnt, q.Exe, res.OK)

	// A new version downloaded over the AppImage (a new file renamed into place): the answer's rule was for the
	// old content, so it is asked again as a changed program, under the same name.
	appendBytes(t, filepath.Join(payload, "AppRun"), "version 2")
	makeAppImage(t, runtime, payload, app+".part")
	if err := os.Rename(app+".part", app); err != nil {
		t.Fatal(err)
	}
	q, res, _ = askedLaunch(t, ag, "a n f", app, nil, "tcp", srv)
	if !q.Changed || q.Exe != name || !res.OK {
		t.Errorf("the replaced AppImage: question %+v (want Changed, about %s), result %+v", q, name, res)
	}
	report.Add(t, "Tool.AppImage replaced by a new version (rename): asked again about %q, changed=%v; allowed", q.Exe, q.Changed)
}

// kernelFlow finds the kernel's flow of app (any user) to dest.
func (r *rig) kernelFlow(t *testing.T, app identity.Executable, dest string) (enforce.Flow, bool) {
	t.Helper()
	flows, err := r.enf.Flows()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if f.App == app && f.Dest.String() == dest {
			return f, true
		}
	}
	return enforce.Flow{}, false
}

// ruleShown is the rule tattlectl monitor shows for app's flow to dest.
func (r *rig) ruleShown(t *testing.T, app, dest string) string {
	t.Helper()
	for _, fl := range r.flows(t) {
		if fl.Exe == app && fl.Destination == dest {
			return fl.RuleID
		}
	}
	return ""
}
