package enforcement

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// On btrfs, stat reports a subvolume's own anonymous device while the kernel programs see the file system's;
// an application in a subvolume (Fedora's and openSUSE's /usr, /home) must still be recognised.
func TestApplicationOnABtrfsSubvolume(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.btrfs")
	if err != nil {
		if os.Getenv("TATTLE_REQUIRE_BTRFS") == "1" {
			t.Fatal("mkfs.btrfs is missing (apt-get install btrfs-progs)")
		}
		t.Skip("mkfs.btrfs is missing (btrfs-progs): btrfs identities not checked here")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	run(mkfs, "-q", img)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	run("btrfs", "-q", "subvolume", "create", filepath.Join(mnt, "apps"))
	os.Chmod(filepath.Join(mnt, "apps"), 0o755)
	app := testrig.CopyApp(t, testrig.Build(t).Client, filepath.Join(mnt, "apps"), "btrfs-app")

	var st unix.Stat_t
	if err := unix.Stat(app, &st); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dev == id.Dev {
		t.Fatalf("stat and the file system agree on the device (%d): this test would prove nothing", st.Dev)
	}

	enf := openEnforcer(t, "btrfs")
	log := recordEvents(t, enf)
	srv := testrig.StartServers(t)
	if err := enf.SetDefault(enforce.Scope{App: id, UID: identity.AnyUID}, enforce.Deny, 70); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, "an app on a btrfs subvolume", testrig.RunApp(t, app, testrig.RunOpts{}, "tcp", srv.TCP4))
	if evs := log.of(t, id, 1); len(evs) != 1 || evs[0].Exe != app {
		t.Errorf("events for the btrfs app: %+v", evs)
	}
}
