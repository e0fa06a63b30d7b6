package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/time/rate"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/hold"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// Changed executables: a rule made by an answer remembers the SHA-256 of the program's file. Whenever rules
// are compiled, a rule whose file no longer holds that content rests (the program is asked about again, the
// question saying it changed), unless the new file is its package's (dpkg's checksum for that path matches):
// then the rule follows it, so upgrades never ask. Files are watched (fsnotify, for a change in place, which
// keeps the inode the kernel knows) and an undecided attempt of an executable that a rule names by path but
// the last compilation did not know (replaced by a new inode) recompiles first. Never on the connect path.

// changeReason is why a rule rests.
const changeReason = "the executable changed since the rule was made"

// contentState is what the last compilation found.
type contentState struct {
	mu      sync.Mutex
	changed map[string]bool // executable paths with a resting rule
	watched []string        // executable paths of rules with a checksum
	notify  chan struct{}   // the watch list changed
	// packagedLimit bounds how often attempts make the rules compile again for new packaged files.
	packagedLimit *rate.Limiter
	// packagedRoots are directories packaged apps' files live under, as the helper sees them (tests'
	// installations elsewhere).
	packagedRoots []string
}

// checkContents returns the rules that rest because their executable changed, and the rules with checksums
// updated for package upgrades. Callers hold d.mu.
func (d *Daemon) checkContents(entries []store.Entry) (resting map[string]string, list []rules.Rule) {
	resting = map[string]string{}
	changed := map[string]bool{}
	var watched []string
	now := time.Now().UTC().Truncate(time.Second)
	for _, e := range entries {
		r := e.Rule
		if r.SHA256 != "" && r.Enabled {
			file := contentPath(r.Application)
			watched = append(watched, file)
			sum, err := d.contents.SHA256(file)
			switch {
			case err != nil, sum == r.SHA256:
				// Missing files are the compiler's business; an equal one is what the rule was made for.
			case !e.Source.ReadOnly && d.contents.Packaged(file):
				next := r
				next.SHA256, next.Modified = sum, now
				if err := d.store.Update(next); err != nil {
					d.log.Warn("follow a package upgrade", "rule", r.ID, "error", err)
					resting[r.ID] = changeReason
					changed[r.Application] = true
				} else {
					d.log.Info("executable upgraded by its package: the rule follows it", "rule", r.ID, "exe", r.Application)
					r = next
				}
			default:
				d.log.Info("executable changed since its rule was made: asked again", "rule", r.ID, "exe", r.Application)
				resting[r.ID] = changeReason
				changed[r.Application] = true
			}
		}
		list = append(list, r)
	}
	d.content.mu.Lock()
	d.content.changed = changed
	d.content.watched = watched
	d.content.mu.Unlock()
	select {
	case d.content.notify <- struct{}{}:
	default:
	}
	return resting, list
}

// contentPath is the file whose content a rule's application is: an executable's path, an AppImage's file.
func contentPath(application string) string {
	if p, ok := strings.CutPrefix(application, identity.AppImagePrefix); ok {
		return p
	}
	return application
}

// changedExe reports whether a rule for the application (an executable's path, "appimage:PATH") rests because
// its file changed.
func (d *Daemon) changedExe(path string) bool {
	d.content.mu.Lock()
	defer d.content.mu.Unlock()
	return d.content.changed[path]
}

// staleIdentity reports whether an undecided attempt comes from an executable that a rule names by path while
// the last compilation knew another file there (it was replaced): the rules must be compiled again first.
func (d *Daemon) staleIdentity(ev enforce.Event) bool {
	if ev.Exe == "" || ev.App.IsScript() || ev.App.IsUnidentified() {
		return false
	}
	d.mu.Lock()
	cur := d.current
	d.mu.Unlock()
	if ev.App.IsAppImage() {
		// An AppImage a rule names whose file the last compilation did not know there (replaced, or put there).
		if _, known := cur.AppImages[ev.App]; known {
			return false
		}
		path, ok := strings.CutPrefix(ev.Exe, identity.AppImagePrefix)
		if !ok {
			return false
		}
		named := false
		for i := range cur.Active {
			named = named || (cur.Active[i].AppKind == rules.AppImage && cur.Active[i].AppValue == path)
		}
		id, err := identity.Stat(path)
		return named && err == nil && identity.AppImageOf(id) == ev.App
	}
	if len(cur.Paths[ev.App]) > 0 {
		return false
	}
	if d.newPackagedFile(cur, ev) {
		return true
	}
	named := false
	for i := range cur.Active {
		if cur.Active[i].AppKind == rules.AppPath && cur.Active[i].AppValue == ev.Exe {
			named = true
			break
		}
	}
	if !named {
		d.content.mu.Lock()
		for _, p := range d.content.watched {
			named = named || p == ev.Exe
		}
		d.content.mu.Unlock()
	}
	if !named {
		return false
	}
	id, err := identity.Stat(ev.Exe)
	return err == nil && id == ev.App
}

// sha256For is the content of an attempt's executable, for the rule an answer makes ("" when it cannot be
// read as the very file the process runs).
func (d *Daemon) sha256For(a hold.Attempt) string {
	if file, ok := strings.CutPrefix(a.Exe, identity.AppImagePrefix); ok && a.App.IsAppImage() {
		// An AppImage's rule is for the content of its file.
		if id, err := identity.Stat(file); err != nil || identity.AppImageOf(id) != a.App {
			return ""
		}
		sum, err := d.contents.SHA256(file)
		if err != nil {
			return ""
		}
		return sum
	}
	if a.Exe == "" || !filepath.IsAbs(a.Exe) {
		return ""
	}
	if !a.App.IsScript() {
		if id, err := identity.Stat(a.Exe); err != nil || id != a.App {
			return ""
		}
	}
	sum, err := d.contents.SHA256(a.Exe)
	if err != nil {
		return ""
	}
	return sum
}

// watchContents recompiles when a file that a checksum rule names is written, replaced or removed.
func (d *Daemon) watchContents(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("executables are not watched; changes are found at the next recompilation", "error", err)
		return
	}
	defer w.Close()
	dirs := map[string]bool{}
	files := map[string]bool{}
	sync := func() {
		d.content.mu.Lock()
		watched := append([]string(nil), d.content.watched...)
		d.content.mu.Unlock()
		want := map[string]bool{}
		files = map[string]bool{}
		for _, p := range watched {
			files[p] = true
			// The directory: a replacement is a rename into it, which a watch on the old file never sees.
			want[filepath.Dir(p)] = true
		}
		for dir := range dirs {
			if !want[dir] {
				w.Remove(dir)
				delete(dirs, dir)
			}
		}
		for dir := range want {
			if !dirs[dir] {
				if err := w.Add(dir); err == nil {
					dirs[dir] = true
				} else if !os.IsNotExist(err) {
					d.log.Debug("watch a directory of executables", "dir", dir, "error", err)
				}
			}
		}
	}
	sync()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.content.notify:
			sync()
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if files[ev.Name] && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove|fsnotify.Chmod) != 0 {
				debounce = time.After(50 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			d.log.Warn("watch executables", "error", err)
		case <-debounce:
			debounce = nil
			d.reapply()
		}
	}
}

// Attempts from unknown packaged files recompile the rules at most packagedBurst times at once and once per
// packagedRefresh after: any program can run a file at /app/... in a mount namespace of its own, and must not
// make the helper walk apps endlessly. (Past the bound, a new file waits for the periodic recompilation and
// its program is asked meanwhile.)
const (
	packagedRefresh = 2 * time.Second
	packagedBurst   = 5
)

// newPackagedFile reports whether an undecided attempt may come from a packaged app's file the last
// compilation did not know (a Flatpak update deploys a new checkout, a snap refresh mounts a new revision)
// while packaged rules exist: compiling again finds the new files. The path is only a hint to look again;
// the match is by identity.
func (d *Daemon) newPackagedFile(cur ruleset.Result, ev enforce.Event) bool {
	if _, known := cur.Packaged[ev.App]; known || d.packaged == nil {
		return false
	}
	packagedRules := false
	for i := range cur.Active {
		k := cur.Active[i].AppKind
		packagedRules = packagedRules || k == rules.AppFlatpak || k == rules.AppSnap
	}
	// Inside its sandbox a Flatpak app's files are at /app; a snap's at /snap/NAME/REV.
	if !packagedRules || !(strings.HasPrefix(ev.Exe, "/app/") || strings.HasPrefix(ev.Exe, "/snap/") || d.underPackagedRoot(ev.Exe)) {
		return false
	}
	return d.content.packagedLimit.Allow()
}

// underPackagedRoot reports whether path lies under a directory packaged apps are installed in.
func (d *Daemon) underPackagedRoot(path string) bool {
	d.content.mu.Lock()
	defer d.content.mu.Unlock()
	for _, root := range d.content.packagedRoots {
		if strings.HasPrefix(path, strings.TrimSuffix(root, "/")+"/") {
			return true
		}
	}
	return false
}
