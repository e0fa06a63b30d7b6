package identity

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

const (
	testFlatpak = "org.tattlefw.IdentityTest"
	testSnap    = "tattle-identity-test"
)

// sandboxed runs exe (a path inside the sandbox) the way Flatpak runs an app: bubblewrap, a root of its own
// with the host's /usr, the app's files at /app and the app's /.flatpak-info; in cgroup when given.
func sandboxed(t *testing.T, files, info, cgroup, exe string, args ...string) testrig.Result {
	t.Helper()
	bw := []string{"--unshare-pid", "--die-with-parent", "--ro-bind", "/usr", "/usr",
		"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
		"--proc", "/proc", "--dev", "/dev", "--ro-bind", files, "/app", "--ro-bind", info, "/.flatpak-info", exe}
	script := `exec bwrap "$@"`
	if cgroup != "" {
		script = `echo $$ > "$CGROUP/cgroup.procs" && exec bwrap "$@"`
	}
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, append(bw, args...)...)...)
	cmd.Env = append(os.Environ(), "CGROUP="+cgroup)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bwrap %s: %v\n%s", exe, err, stderr.String())
	}
	var res testrig.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("bwrap %s: bad report %q: %v", exe, out, err)
	}
	return res
}

// kernelDecided reports whether the kernel's flow of app (any user) to dest was decided by a compiled rule:
// not undecided, not a verdict the helper learned after deciding in userspace.
func (r *rig) kernelDecided(t *testing.T, app identity.Executable, dest string) (enforce.Flow, bool) {
	t.Helper()
	f, ok := r.kernelFlow(t, app, dest)
	return f, ok && f.Verdict == enforce.Allow && f.RuleID != ^uint32(0) && f.Undecided == 0
}

func squashfs(t *testing.T, src, mountpoint string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "snap.squashfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "squashfs", "-o", "loop,ro", img, mountpoint).CombinedOutput(); err != nil {
		t.Fatalf("mount the snap revision: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mountpoint).Run() })
}

// TestPackagedAppIdentity: a Flatpak app is the files of its deployment and a snap the files of its mounted
// revisions, decided in the kernel; a program that forges a Flatpak app's sandbox metadata is not the app.
func TestPackagedAppIdentity(t *testing.T) {
	for _, tool := range []string{"bwrap", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt-get install bubblewrap squashfs-tools)", tool)
		}
	}
	flatpaks, snaps := t.TempDir(), t.TempDir()
	r, ag := newHoldingRig(t, "identity-packaged", "-flatpak-dirs", flatpaks, "-snap-dir", snaps)
	srv := testrig.StartServers(t).TCP4
	client := testrig.Build(t).Client

	// A system installation laid out as flatpak lays it out: app/ID/ARCH/BRANCH/COMMIT/files, "active" and
	// "current" links.
	branch := filepath.Join(flatpaks, "app", testFlatpak, "x86_64", "stable")
	files := filepath.Join(branch, "0123abcd", "files")
	os.MkdirAll(filepath.Join(files, "bin"), 0o755)
	appExe := testrig.CopyApp(t, client, filepath.Join(files, "bin"), "tool")
	os.Symlink("0123abcd", filepath.Join(branch, "active"))
	os.Symlink("x86_64/stable", filepath.Join(flatpaks, "app", testFlatpak, "current"))
	info := writeFile(t, filepath.Join(t.TempDir(), "flatpak-info"), "[Application]\nname="+testFlatpak+"\nruntime=runtime/org.freedesktop.Platform/x86_64/23.08\n", 0o644)
	r.ctl(t, "rules", "add", "--allow", "--app", "flatpak:"+testFlatpak, "--remote", "any")

	res := sandboxed(t, files, info, "", "/app/bin/tool", "tcp", srv)
	if !res.OK {
		t.Fatalf("the Flatpak app in its sandbox: %+v\n%s", res, r.Log)
	}
	ag.Quiet(t, 500*time.Millisecond)
	appID, _ := identity.Stat(appExe)
	f, inKernel := r.kernelDecided(t, appID, srv)
	if !inKernel {
		t.Errorf("the Flatpak app's connection was not decided in the kernel by its rule: %+v", f)
	}
	report.Add(t, "Flatpak %s in a bubblewrap sandbox (/app/bin/tool): connect ok=%v, no question, decided in the kernel by rule #%d", testFlatpak, res.OK, f.RuleID)

	// The forgery: another program in the same kind of sandbox, with the app's /.flatpak-info and in a
	// cgroup named as the app's scope. It is a program Tattle has not seen: asked, and denied here.
	forgedFiles := filepath.Join(t.TempDir(), "files")
	os.MkdirAll(filepath.Join(forgedFiles, "bin"), 0o755)
	testrig.CopyApp(t, client, filepath.Join(forgedFiles, "bin"), "tool")
	cgroup := filepath.Join(cgroupRoot(t), fmt.Sprintf("app-flatpak-%s-%d.scope", testFlatpak, os.Getpid()))
	if err := os.Mkdir(cgroup, 0o755); err != nil {
		t.Fatalf("make the forged scope: %v", err)
	}
	t.Cleanup(func() { os.Remove(cgroup) })
	done := make(chan testrig.Result, 1)
	go func() { done <- sandboxed(t, forgedFiles, info, cgroup, "/app/bin/tool", "tcp", srv) }()
	q := ag.Next(t, "question", 20*time.Second).Question
	ag.Answer(t, "d 1")
	forged := <-done
	if q.Exe != "/app/bin/tool" || forged.OK {
		t.Errorf("the forged Flatpak app: question %+v, result %+v (want asked and refused)", q, forged)
	}
	report.Add(t, "a copy in the same sandbox with the app's /.flatpak-info, in cgroup %s: asked (%s), denied once: connect ok=%v", filepath.Base(cgroup), q.Exe, forged.OK)

	// A snap: a squashfs image mounted at SNAP/NAME/REV. A refresh mounts REV+1 beside it: the rule follows.
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	testrig.CopyApp(t, client, filepath.Join(src, "bin"), "tool")
	squashfs(t, src, filepath.Join(snaps, testSnap, "1"))
	r.ctl(t, "rules", "add", "--allow", "--app", "snap:"+testSnap, "--remote", "any")
	rev1 := filepath.Join(snaps, testSnap, "1", "bin", "tool")
	if res := testrig.RunApp(t, rev1, testrig.RunOpts{}, "tcp", srv); !res.OK {
		t.Fatalf("snap revision 1: %+v\n%s", res, r.Log)
	}
	ag.Quiet(t, 500*time.Millisecond)
	id1, _ := identity.Stat(rev1)
	f1, inKernel1 := r.kernelDecided(t, id1, srv)
	if !inKernel1 {
		t.Errorf("snap revision 1 was not decided in the kernel: %+v", f1)
	}
	appendBytes(t, filepath.Join(src, "bin", "tool"), "revision 2")
	squashfs(t, src, filepath.Join(snaps, testSnap, "2"))
	rev2 := filepath.Join(snaps, testSnap, "2", "bin", "tool")
	res2 := testrig.RunApp(t, rev2, testrig.RunOpts{}, "tcp", srv)
	if !res2.OK {
		t.Errorf("snap revision 2 after the refresh: %+v\n%s", res2, r.Log)
	}
	ag.Quiet(t, time.Second)
	// The first attempt of the new revision made the helper look again; from then on the revision's own
	// scope is in the kernel.
	id2, _ := identity.Stat(rev2)
	_, inKernel2, err := r.enf.DefaultOf(enforce.Scope{App: id2, UID: identity.AnyUID})
	if err != nil || !inKernel2 {
		t.Errorf("snap revision 2 has no kernel verdict after its first connection (%v)\n%s", err, r.Log)
	}
	report.Add(t, "snap %s: revision 1 (device %d:%d) decided in the kernel; refreshed to revision 2 (device %d:%d): no question, connect ok=%v, its rule in the kernel (%v)",
		testSnap, unix.Major(id1.Dev), unix.Minor(id1.Dev), unix.Major(id2.Dev), unix.Minor(id2.Dev), res2.OK, inKernel2)
}

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	t.Fatal("no cgroup2 file system is mounted")
	return ""
}
