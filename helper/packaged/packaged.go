// Package packaged finds the executables of packaged applications on disk: a Flatpak app's deployments
// (system installations and each user's own) and a snap's mounted revisions. The helper knows every process
// by the file it runs, so an app is the set of its files: nothing a program can say about itself (a forged
// /.flatpak-info, a scope named like a Flatpak app's, a path under /app in its own mount namespace) makes it
// one.
package packaged

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// MaxExecutables bounds the executables taken from one app (all its deployments together), so a huge or
// hostile tree cannot make compiling the rules unbounded.
const MaxExecutables = 4096

// Defaults of a Debian system.
const (
	DefaultFlatpakSystem = "/var/lib/flatpak"
	DefaultFlatpakUser   = ".local/share/flatpak" // under each user's home directory
	DefaultSnapDir       = "/snap"
)

// Roots says where packaged apps are installed.
type Roots struct {
	FlatpakSystem []string // system installations (each holds app/ID/ARCH/BRANCH/active/files)
	FlatpakUser   string   // a user's own installation, relative to the home directory; "" for none
	SnapDir       string   // where snaps' revisions are mounted (NAME/REVISION); "" for none
	// Homes lists the home directory of each user whose own installation counts (regular users).
	Homes func() map[uint32]string
}

// Executables lists the executable files of one app. It is a ruleset.Packaged.
func (r Roots) Executables(kind rules.AppKind, value string) []ruleset.PackagedExe {
	var out []ruleset.PackagedExe
	switch kind {
	case rules.AppFlatpak:
		for _, base := range r.FlatpakSystem {
			out = appendFlatpak(out, filepath.Join(base, "app", value), identity.AnyUID)
		}
		if r.FlatpakUser != "" && r.Homes != nil {
			homes := r.Homes()
			uids := make([]uint32, 0, len(homes))
			for uid := range homes {
				uids = append(uids, uid)
			}
			sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
			for _, uid := range uids {
				out = appendFlatpak(out, filepath.Join(homes[uid], r.FlatpakUser, "app", value), uid)
			}
		}
	case rules.AppSnap:
		if r.SnapDir != "" {
			out = appendSnap(out, filepath.Join(r.SnapDir, value))
		}
	}
	return out
}

// appendFlatpak adds the files of every deployed branch of an app: ARCH/BRANCH/active is the deployment in
// use (a symlink to the commit's checkout); "current" only picks the default branch, and every branch is the app.
func appendFlatpak(out []ruleset.PackagedExe, appDir string, uid uint32) []ruleset.PackagedExe {
	actives, _ := filepath.Glob(filepath.Join(appDir, "*", "*", "active"))
	sort.Strings(actives)
	for _, active := range actives {
		files, err := filepath.EvalSymlinks(filepath.Join(active, "files"))
		if err != nil {
			continue
		}
		out = appendExecutables(out, files, uid)
	}
	return out
}

// appendSnap adds the files of each mounted revision (NAME/REV; "current" is a symlink to one of them): a
// refresh mounts a new revision beside the old, and both are the snap.
func appendSnap(out []ruleset.PackagedExe, snapDir string) []ruleset.PackagedExe {
	entries, err := os.ReadDir(snapDir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "current" {
			continue
		}
		out = appendExecutables(out, filepath.Join(snapDir, e.Name()), identity.AnyUID)
	}
	return out
}

// appendExecutables walks a tree for regular files with an execute bit, never following symlinks (a link
// out of the tree would name some other program as the app's).
func appendExecutables(out []ruleset.PackagedExe, root string, uid uint32) []ruleset.PackagedExe {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if len(out) >= MaxExecutables {
			return fs.SkipAll
		}
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir // unreadable: what it holds is not known to be the app's
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm()&0o111 == 0 {
			return nil
		}
		out = append(out, ruleset.PackagedExe{Path: path, UID: uid})
		return nil
	})
	return out
}

// PasswdHomes reads the home directories of the regular users (per isSystem, false) from a passwd file.
func PasswdHomes(passwd string, isSystem func(uid uint32) bool) func() map[uint32]string {
	return func() map[uint32]string {
		homes := map[uint32]string{}
		f, err := os.Open(passwd)
		if err != nil {
			return homes
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// name:password:uid:gid:gecos:home:shell
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 7 {
				continue
			}
			uid, err := strconv.ParseUint(fields[2], 10, 32)
			if err != nil || isSystem(uint32(uid)) || !filepath.IsAbs(fields[5]) {
				continue
			}
			homes[uint32(uid)] = fields[5]
		}
		return homes
	}
}
