package packaged

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// deploy lays out one branch of a Flatpak app the way flatpak does: ARCH/BRANCH/COMMIT/files, with "active"
// pointing at the commit and the app's "current" at the branch.
func deploy(t *testing.T, base, id, branch, commit string, files map[string]os.FileMode) {
	t.Helper()
	app := filepath.Join(base, "app", id)
	for name, mode := range files {
		write(t, filepath.Join(app, "x86_64", branch, commit, "files", name), mode)
	}
	symlink(t, commit, filepath.Join(app, "x86_64", branch, "active"))
}

func paths(t *testing.T, r Roots, kind rules.AppKind, value string) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	for _, e := range r.Executables(kind, value) {
		out[e.Path] = e.UID
	}
	return out
}

func TestFlatpakAppIsTheExecutablesOfItsDeployments(t *testing.T) {
	sys, home := t.TempDir(), t.TempDir()
	deploy(t, sys, "org.example.App", "stable", "c0ffee", map[string]os.FileMode{
		"bin/app": 0o755, "libexec/helper": 0o755, "share/doc/README": 0o644})
	deploy(t, sys, "org.example.App", "beta", "beef", map[string]os.FileMode{"bin/app": 0o755})
	// An older checkout that is no longer active is not the app any more.
	write(t, filepath.Join(sys, "app", "org.example.App", "x86_64", "stable", "0ld", "files", "bin", "app"), 0o755)
	// A link out of the deployment names some other program: never followed.
	symlink(t, "/usr/bin/curl", filepath.Join(sys, "app", "org.example.App", "x86_64", "stable", "c0ffee", "files", "bin", "curl"))
	deploy(t, filepath.Join(home, ".local/share/flatpak"), "org.example.App", "stable", "1234", map[string]os.FileMode{"bin/app": 0o755})
	deploy(t, sys, "org.example.Other", "stable", "aaaa", map[string]os.FileMode{"bin/other": 0o755})

	r := Roots{FlatpakSystem: []string{sys}, FlatpakUser: ".local/share/flatpak",
		Homes: func() map[uint32]string { return map[uint32]string{1000: home} }}
	got := paths(t, r, rules.AppFlatpak, "org.example.App")
	stable := filepath.Join(sys, "app", "org.example.App", "x86_64", "stable", "c0ffee", "files")
	want := map[string]uint32{
		filepath.Join(stable, "bin", "app"):                                                                                      identity.AnyUID,
		filepath.Join(stable, "libexec", "helper"):                                                                               identity.AnyUID,
		filepath.Join(sys, "app", "org.example.App", "x86_64", "beta", "beef", "files", "bin", "app"):                            identity.AnyUID,
		filepath.Join(home, ".local/share/flatpak", "app", "org.example.App", "x86_64", "stable", "1234", "files", "bin", "app"): 1000,
	}
	if len(got) != len(want) {
		t.Errorf("got %d executables, want %d: %v", len(got), len(want), got)
	}
	for p, uid := range want {
		if g, ok := got[p]; !ok || g != uid {
			t.Errorf("%s: got uid %d (listed %v), want %d", p, g, ok, uid)
		}
	}
	if n := len(paths(t, r, rules.AppFlatpak, "org.example.Missing")); n != 0 {
		t.Errorf("an app that is not installed has %d executables", n)
	}
}

func TestSnapIsEveryMountedRevision(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "tool", "1", "bin", "tool"), 0o755)
	write(t, filepath.Join(dir, "tool", "2", "bin", "tool"), 0o755)
	write(t, filepath.Join(dir, "tool", "2", "meta", "snap.yaml"), 0o644)
	symlink(t, "2", filepath.Join(dir, "tool", "current"))
	got := paths(t, Roots{SnapDir: dir}, rules.AppSnap, "tool")
	var list []string
	for p := range got {
		list = append(list, p)
	}
	sort.Strings(list)
	want := []string{filepath.Join(dir, "tool", "1", "bin", "tool"), filepath.Join(dir, "tool", "2", "bin", "tool")}
	if len(list) != 2 || list[0] != want[0] || list[1] != want[1] {
		t.Errorf("got %v, want %v", list, want)
	}
}

func TestExecutablesAreBounded(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < MaxExecutables+10; i++ {
		write(t, filepath.Join(dir, "big", "1", "bin", "f"+strconv.Itoa(i)), 0o755)
	}
	if n := len(paths(t, Roots{SnapDir: dir}, rules.AppSnap, "big")); n != MaxExecutables {
		t.Errorf("took %d executables, want the bound %d", n, MaxExecutables)
	}
}

func TestPasswdHomesAreRegularUsers(t *testing.T) {
	f := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(f, []byte("root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"+
		"u:x:1000:1000:U:/home/u:/bin/bash\nbroken\nrel:x:1001:1001::relative:/bin/sh\n"), 0o644)
	homes := PasswdHomes(f, func(uid uint32) bool { return uid < 1000 })()
	if len(homes) != 1 || homes[1000] != "/home/u" {
		t.Errorf("homes %v", homes)
	}
}
