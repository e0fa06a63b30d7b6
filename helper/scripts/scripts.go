// Package scripts identifies interpreters' processes by the script they run ("python3 via /home/u/tool.py").
//
// The kernel (bpf/process.h) records every exec of an interpreter: it settles "no script" itself (python3 -c,
// a REPL) and reports the others with the exec's path, arguments and working directory as read in the new
// process. A Tracker keeps the kernel's interpreter table filled, finds the script in what the kernel reported
// (shared/identity's one list of interpreters and their options), opens it inside the process's own root and
// mount table (so a bind mount or symlink there cannot stand in for another file here), and writes the
// identity of (interpreter, script) back for the kernel's connect hooks. Until then the process is
// unidentified: no rule names it, so it is decided by the helper, never by the interpreter's rules.
package scripts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/peer"
	"github.com/tattlefw/tattle/shared/identity"
)

// DefaultDirs are where interpreters are looked for.
var defaultDirs = []string{"/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"}

// maxRemembered bounds the names and resolutions kept.
const maxRemembered = 8192

// Options configure a Tracker.
type Options struct {
	Proc string   // "/proc" when empty
	Dirs []string // where interpreters are looked for; DefaultDirs when empty
	Log  *slog.Logger
}

// Result is what a process runs.
type Result struct {
	App         identity.Executable // the identity the kernel uses for it
	Interpreter string              // the interpreter's path
	Script      string              // the script's absolute path; "" when it runs none
	// Unidentified: it runs a script that could not be identified (gone, unreadable, named by a file
	// descriptor); App is identity.Unidentified.
	Unidentified bool
}

// Tracker keeps the kernel's script identities. Its methods may be called from any goroutine.
type Tracker struct {
	enf  *enforce.Enforcer
	log  *slog.Logger
	proc string
	dirs []string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever a resolution lands
	byApp   map[identity.Executable]Result
	byCook  map[uint64]Result
	interp  map[identity.Executable]identity.InterpreterKind
	// appImages names AppImage identities by their file's path, from the kernel's reports of their execs.
	appImages map[identity.Executable]string
}

// New returns a tracker for an open enforcer.
func New(enf *enforce.Enforcer, o Options) *Tracker {
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if len(o.Dirs) == 0 {
		o.Dirs = defaultDirs
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Tracker{enf: enf, log: o.Log, proc: o.Proc, dirs: o.Dirs, changed: make(chan struct{}),
		byApp: map[identity.Executable]Result{}, byCook: map[uint64]Result{}, appImages: map[identity.Executable]string{}}
}

// FindInterpreters lists the interpreters in dirs by identity: files whose name, and whose target's name
// when it is a link, is one of identity.Interpreters (so /bin/sh -> busybox is not taken for a shell).
func FindInterpreters(dirs []string) map[identity.Executable]identity.InterpreterKind {
	out := map[identity.Executable]identity.InterpreterKind{}
	mounts := identity.ReadMounts("/proc/self/mountinfo")
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, ent := range entries {
			in, ok := identity.InterpreterNamed(ent.Name())
			if !ok {
				continue
			}
			p := filepath.Join(dir, ent.Name())
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			if tin, ok := identity.InterpreterNamed(filepath.Base(target)); !ok || tin.Kind != in.Kind {
				continue
			}
			if st, err := os.Stat(target); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
				continue
			}
			if id, err := mounts.Stat(target); err == nil {
				out[id] = in.Kind
			}
		}
	}
	return out
}

// RefreshInterpreters installs the interpreters found now in the kernel's table.
func (t *Tracker) RefreshInterpreters() error {
	found := FindInterpreters(t.dirs)
	if err := t.enf.SetInterpreters(found); err != nil {
		return err
	}
	t.mu.Lock()
	t.interp = found
	t.mu.Unlock()
	return nil
}

// refreshInterval is how often the interpreter table follows installed and removed interpreters.
const refreshInterval = time.Minute

// Run fills the interpreter table, identifies the interpreters' processes that were running before, and
// resolves every exec the kernel reports until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	if err := t.RefreshInterpreters(); err != nil {
		return fmt.Errorf("install interpreters: %w", err)
	}
	// Without this list the kernel gives no AppImage its identity: they are then their bare files.
	if err := t.enf.SetAppImageRefusedEnv(AppImageRefusedEnv(), peer.InjectionPrefixes()); err != nil {
		t.log.Error("AppImages are not identified by their files", "error", err)
	}
	rd, err := t.enf.ExecEvents()
	if err != nil {
		return err
	}
	t.adoptRunning()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(refreshInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				rd.Close()
				return
			case <-tick.C:
				if err := t.RefreshInterpreters(); err != nil {
					t.log.Warn("refresh the interpreter table", "error", err)
				}
			}
		}
	}()
	for {
		ev, err := rd.Read()
		if errors.Is(err, enforce.ErrClosed) {
			break
		}
		if err != nil {
			t.log.Warn("read exec event", "error", err)
			continue
		}
		if ev.AppImage {
			t.learnAppImage(ev)
			continue
		}
		t.settle(ev.Cookie, t.resolveExec(ev), ev.TGID)
	}
	wg.Wait()
	return nil
}

// settle installs a resolution for every process of the exec and remembers it.
func (t *Tracker) settle(cookie uint64, r Result, tgid uint32) {
	n, err := t.enf.ResolveVia(cookie, r.App)
	if err != nil {
		t.log.Warn("set a script's identity", "pid", tgid, "error", err)
	}
	t.log.Debug("script identified", "pid", tgid, "interpreter", r.Interpreter, "script", r.Script,
		"unidentified", r.Unidentified, "processes", n)
	t.remember(cookie, r)
}

func (t *Tracker) remember(cookie uint64, r Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byApp) >= maxRemembered {
		t.byApp = map[identity.Executable]Result{}
	}
	if len(t.byCook) >= maxRemembered {
		t.byCook = map[uint64]Result{}
	}
	if !r.Unidentified {
		t.byApp[r.App] = r
	}
	if cookie != 0 {
		t.byCook[cookie] = r
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// Names returns what a script identity stands for, if the tracker resolved it.
func (t *Tracker) Names(app identity.Executable) (Result, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.byApp[app]
	return r, ok
}

// Resolve returns what process tgid runs, for an attempt the kernel reported unidentified: it waits up to wait
// for the exec's resolution, then resolves the process from /proc itself (it was started before Tattle, or its
// exec event was lost).
func (t *Tracker) Resolve(tgid uint32, wait time.Duration) Result {
	deadline := time.Now().Add(wait)
	for {
		t.mu.Lock()
		changed := t.changed
		t.mu.Unlock()
		v, ok := t.enf.ViaOf(tgid)
		switch {
		case ok && v.State == enforce.ViaResolved:
			if r, known := t.Names(v.App); known {
				return r
			}
			if v.App.IsUnidentified() {
				return Result{App: v.App, Unidentified: true, Interpreter: t.exe(tgid)}
			}
			return Result{App: v.App, Interpreter: t.exe(tgid)} // the interpreter itself
		case ok && v.State == enforce.ViaPending:
			t.mu.Lock()
			r, known := t.byCook[v.Cookie]
			t.mu.Unlock()
			if known {
				// A child forked before its parent's exec was resolved.
				t.settle(v.Cookie, r, tgid)
				return r
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		select {
		case <-changed:
		case <-time.After(min(left, 20*time.Millisecond)):
		}
	}
	r := t.resolveProc(tgid)
	if v, ok := t.enf.ViaOf(tgid); ok && v.State == enforce.ViaPending {
		t.settle(v.Cookie, r, tgid)
	} else if err := t.enf.SetVia(tgid, 0, r.App); err != nil {
		t.log.Warn("set a script's identity", "pid", tgid, "error", err)
	} else {
		t.remember(0, r)
	}
	return r
}

// adoptRunning identifies the interpreters' processes that run without a kernel entry (started before the
// programs were attached) or whose exec was never resolved.
func (t *Tracker) adoptRunning() {
	pending, err := t.enf.PendingVias()
	if err != nil {
		t.log.Warn("read pending scripts", "error", err)
	}
	t.mu.Lock()
	interp := t.interp
	t.mu.Unlock()
	entries, _ := os.ReadDir(t.proc)
	adopted := 0
	for _, ent := range entries {
		pid, err := strconv.ParseUint(ent.Name(), 10, 32)
		if err != nil {
			continue
		}
		tgid := uint32(pid)
		if cookie, ok := pending[tgid]; ok {
			t.settle(cookie, t.resolveProc(tgid), tgid)
			adopted++
			continue
		}
		if _, ok := t.enf.ViaOf(tgid); ok {
			continue
		}
		exe, err := identity.StatIn(filepath.Join(t.proc, ent.Name(), "exe"), filepath.Join(t.proc, ent.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		if _, ok := interp[exe]; !ok {
			continue
		}
		r := t.resolveProc(tgid)
		if err := t.enf.SetVia(tgid, 0, r.App); err == nil {
			t.remember(0, r)
			adopted++
		}
	}
	if adopted > 0 {
		t.log.Info("identified running interpreters by their scripts", "processes", adopted)
	}
}

// resolveExec finds the script of an exec the kernel reported.
func (t *Tracker) resolveExec(ev enforce.ExecEvent) Result {
	in, _ := identity.InterpreterOfKind(ev.Kind)
	r := Result{Interpreter: t.exe(ev.TGID)}
	args := ev.Args
	if ev.ArgsTruncated && len(args) > 0 {
		args = args[:len(args)-1] // cut inside: not a name to trust
	}
	var script string
	switch {
	case ev.Shebang:
		script = ev.Filename
	case len(args) > 1:
		script = in.ScriptArg(args[1:])
	}
	if script == "" {
		if ev.ArgsTruncated {
			// The script may be in what was cut off.
			return Result{App: identity.Unidentified, Unidentified: true, Interpreter: r.Interpreter}
		}
		r.App = ev.Interpreter
		return r
	}
	return t.identify(ev.TGID, ev.Interpreter, script, ev.Cwd, r.Interpreter)
}

// resolveProc finds the script of a running process from /proc (its arguments and directory now: a process
// that changed them since its exec is identified by what it shows now, which is why the exec event is used
// whenever there is one).
func (t *Tracker) resolveProc(tgid uint32) Result {
	dir := filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10))
	interp := t.exe(tgid)
	un := Result{App: identity.Unidentified, Unidentified: true, Interpreter: interp}
	exe, err := identity.StatIn(filepath.Join(dir, "exe"), filepath.Join(dir, "mountinfo"))
	if err != nil {
		return un
	}
	t.mu.Lock()
	kind, ok := t.interp[exe]
	t.mu.Unlock()
	if !ok {
		return Result{App: exe, Interpreter: interp}
	}
	in, _ := identity.InterpreterOfKind(kind)
	data, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return un
	}
	args := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
	script := ""
	if len(args) > 1 {
		script = in.ScriptArg(args[1:])
	}
	if script == "" {
		return Result{App: exe, Interpreter: interp}
	}
	cwd, _ := os.Readlink(filepath.Join(dir, "cwd"))
	return t.identify(tgid, exe, script, cwd, interp)
}

// identify opens script inside process tgid's root (relative names from cwd) and returns the identity of
// (interpreter, script).
func (t *Tracker) identify(tgid uint32, interp identity.Executable, script, cwd, interpPath string) Result {
	un := Result{App: identity.Unidentified, Unidentified: true, Interpreter: interpPath, Script: script}
	if !filepath.IsAbs(script) {
		if cwd == "" {
			c, err := os.Readlink(filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10), "cwd"))
			if err != nil {
				return un
			}
			cwd = c
		}
		script = filepath.Join(cwd, script)
	}
	script = filepath.Clean(script)
	un.Script = script
	if strings.HasPrefix(script, "/dev/fd/") || strings.HasPrefix(script, "/proc/") {
		return un // a descriptor the process held: gone by now, and never a name rules could use
	}
	dir := filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10))
	root, err := unix.Open(filepath.Join(dir, "root"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return un
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, script, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return un
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return un
	}
	id, err := identity.ReadMounts(filepath.Join(dir, "mountinfo")).StatFD(fd)
	if err != nil {
		return un
	}
	return Result{App: identity.ViaIdentity(interp, id), Interpreter: interpPath, Script: script}
}

func (t *Tracker) exe(tgid uint32) string {
	p, _ := os.Readlink(filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10), "exe"))
	return p
}

// AppImageRefusedEnv are the environment variables with which an exec'd AppImage is not given its identity:
// the injection variables (helper/peer) and TARGET_APPIMAGE, with which an AppImage's runtime mounts and runs
// another file's payload. Prefixes are peer.InjectionPrefixes.
func AppImageRefusedEnv() []string {
	return append(peer.InjectionNames(), "TARGET_APPIMAGE")
}

// learnAppImage remembers the path of an AppImage the kernel saw exec'd.
func (t *Tracker) learnAppImage(ev enforce.ExecEvent) {
	if ev.File == "" {
		return
	}
	app := identity.AppImageOf(ev.Interpreter)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.appImages) >= maxRemembered {
		t.appImages = map[identity.Executable]string{}
	}
	t.appImages[app] = ev.File
	t.log.Debug("AppImage started", "pid", ev.TGID, "file", ev.File)
}

// AppImagePath names an AppImage identity by its file's path: as the kernel reported its exec, else from
// process tgid's APPIMAGE variable (which its runtime sets) when that path, opened in the process's root, is
// the very file; "" when neither tells.
func (t *Tracker) AppImagePath(tgid uint32, app identity.Executable) string {
	t.mu.Lock()
	p, ok := t.appImages[app]
	t.mu.Unlock()
	if ok {
		return p
	}
	dir := filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10))
	data, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		v, found := strings.CutPrefix(kv, "APPIMAGE=")
		if !found || !filepath.IsAbs(v) {
			continue
		}
		v = filepath.Clean(v)
		if id, ok := t.fileIn(tgid, v); ok && identity.AppImageOf(id) == app {
			t.mu.Lock()
			t.appImages[app] = v
			t.mu.Unlock()
			return v
		}
	}
	return ""
}

// fileIn identifies the regular file at an absolute path inside process tgid's root and mount table.
func (t *Tracker) fileIn(tgid uint32, path string) (identity.Executable, bool) {
	dir := filepath.Join(t.proc, strconv.FormatUint(uint64(tgid), 10))
	root, err := unix.Open(filepath.Join(dir, "root"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return identity.Executable{}, false
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return identity.Executable{}, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return identity.Executable{}, false
	}
	id, err := identity.ReadMounts(filepath.Join(dir, "mountinfo")).StatFD(fd)
	return id, err == nil
}
