// Package peer decides whether the process behind a bus connection is one of Tattle's own agent programs,
// unaltered: the installed executable (by device and inode), not traced, not traceable by its user, and not
// started with variables that make the loader or the toolkit run other code in it.
//
// A program running as the user can start the real agent program, so the identity alone proves little; the
// other checks close the ways such a program could make the real agent do its bidding (ptrace, LD_PRELOAD,
// GTK modules). What is left (input injection on X11, a same-user program replacing the user's own
// configuration) is written down in SECURITY.md.
package peer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind is what sort of agent a program is: the order in which agents are asked depends on it.
type Kind int

const (
	Terminal Kind = iota // tattlectl agent
	GUI                  // the desktop app
)

func (k Kind) String() string {
	if k == GUI {
		return "gui"
	}
	return "terminal"
}

// Program is one trusted agent executable.
type Program struct {
	Path string // absolute
	Kind Kind
}

// Sentinel errors of Check, wrapped with the details.
var (
	ErrUntrusted = errors.New("not an installed Tattle agent program")
	ErrUnsafe    = errors.New("the agent program could be replaced by a user")
	ErrTraced    = errors.New("the process is being traced")
	ErrTraceable = errors.New("the process did not protect itself from being traced")
	ErrInjected  = errors.New("the process was started with code injected into it")
	ErrGone      = errors.New("the process is gone or its PID was reused")
)

// InjectionVariable reports whether an environment variable makes the dynamic loader, glibc, GLib/GIO, GTK
// or an interpreter load code the program did not ask for. This is the one list of them (InjectionNames and
// InjectionPrefixes spell it out, for the kernel's AppImage check).
func InjectionVariable(name string) bool {
	for _, p := range InjectionPrefixes() {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return slices.Contains(InjectionNames(), name)
}

// InjectionPrefixes are the prefixes of injection variables: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT,
// LD_DEBUG_OUTPUT, …
func InjectionPrefixes() []string { return []string{"LD_"} }

// InjectionNames are the injection variables named one by one.
func InjectionNames() []string {
	return []string{
		"GCONV_PATH", // glibc's iconv loads modules from here
		"GTK_MODULES", "GTK3_MODULES", "GTK_PATH", "GTK_EXE_PREFIX", "GTK_IM_MODULE_FILE",
		"GDK_PIXBUF_MODULE_FILE", "GDK_PIXBUF_MODULEDIR",
		"GIO_EXTRA_MODULES", "GIO_MODULE_DIR", "GI_TYPELIB_PATH",
		"GST_PLUGIN_PATH", "GST_PLUGIN_PATH_1_0", "GST_PLUGIN_SYSTEM_PATH", "GST_PLUGIN_SYSTEM_PATH_1_0",
		"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PERL5LIB", "PERL5OPT", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS",
	}
}

// Trusted is the set of agent programs tattled accepts.
type Trusted struct{ progs []Program }

// NewTrusted checks the paths are absolute. The files need not exist yet (the app may be installed after the
// helper); each registration looks at them afresh, so an upgraded program is recognized at once.
func NewTrusted(progs []Program) (*Trusted, error) {
	for _, p := range progs {
		if !filepath.IsAbs(p.Path) {
			return nil, fmt.Errorf("trusted agent program %q: give an absolute path", p.Path)
		}
	}
	return &Trusted{progs: append([]Program(nil), progs...)}, nil
}

// Programs lists the trusted programs.
func (t *Trusted) Programs() []Program { return append([]Program(nil), t.progs...) }

// DefaultPrograms are tattle and tattlectl in the bin directory of the prefix the helper runs from
// (PREFIX/libexec/tattled -> PREFIX/bin/tattle, PREFIX/bin/tattlectl).
func DefaultPrograms(helperExe string) []Program {
	prefix := filepath.Dir(filepath.Dir(helperExe))
	return []Program{
		{Path: filepath.Join(prefix, "bin", "tattle"), Kind: GUI},
		{Path: filepath.Join(prefix, "bin", "tattlectl"), Kind: Terminal},
	}
}

// Process is a checked caller.
type Process struct {
	PID     int
	Exe     string // the trusted program's path
	Kind    Kind
	Started uint64 // start time in clock ticks after boot
}

// Check decides whether pid (the bus's word for the caller, with pidfd >= 0 when the bus handed one over)
// runs a trusted program unaltered, as uid. Every read goes through one open /proc/PID directory, which
// keeps referring to that process (reads fail once it exits, even if the PID is reused); the start time is
// compared before and after, and a pidfd, when there is one, must still refer to a live process at the end.
func (t *Trusted) Check(pid int, pidfd int, uid uint32) (Process, error) {
	if pidfd >= 0 {
		fdPID, err := pidOfPidfd(pidfd)
		if err != nil {
			return Process{}, fmt.Errorf("%w: %v", ErrGone, err)
		}
		pid = fdPID
	}
	if pid <= 0 {
		return Process{}, fmt.Errorf("%w: the bus gave no PID", ErrGone)
	}
	dir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Process{}, fmt.Errorf("%w: %v", ErrGone, err)
	}
	defer unix.Close(dir)
	started, err := startTime(dir)
	if err != nil {
		return Process{}, err
	}
	p := Process{PID: pid, Started: started}

	var exe unix.Stat_t
	if err := unix.Fstatat(dir, "exe", &exe, 0); err != nil {
		return Process{}, fmt.Errorf("%w: its executable: %v", ErrGone, err)
	}
	var found *Program
	for i, prog := range t.progs {
		var st unix.Stat_t
		if unix.Stat(prog.Path, &st) == nil && st.Dev == exe.Dev && st.Ino == exe.Ino {
			found = &t.progs[i]
			break
		}
	}
	if found == nil {
		link, _ := readlinkat(dir, "exe")
		return Process{}, fmt.Errorf("%w: process %d runs %s; only %s may register", ErrUntrusted, pid, link, t.names())
	}
	if err := safePath(found.Path); err != nil {
		return Process{}, fmt.Errorf("%w: %v", ErrUnsafe, err)
	}
	p.Exe, p.Kind = found.Path, found.Kind

	status, err := readAt(dir, "status")
	if err != nil {
		return Process{}, err
	}
	if tracer := statusField(status, "TracerPid"); tracer != "0" {
		return Process{}, fmt.Errorf("%w: process %d is traced by process %s", ErrTraced, pid, tracer)
	}
	if uid != 0 {
		// A non-dumpable process's /proc files (not the directory) belong to root, and its user cannot ptrace
		// it or write its memory: the agents make themselves so before they connect, which closes the window
		// after this check.
		var st unix.Stat_t
		if err := unix.Fstatat(dir, "status", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return Process{}, fmt.Errorf("%w: %v", ErrGone, err)
		}
		if st.Uid != 0 {
			return Process{}, fmt.Errorf("%w: process %d can be traced by its user (it is dumpable)", ErrTraceable, pid)
		}
	}
	environ, err := readAt(dir, "environ")
	if err != nil {
		return Process{}, err
	}
	for _, kv := range bytes.Split(environ, []byte{0}) {
		name, _, _ := bytes.Cut(kv, []byte{'='})
		if len(name) > 0 && InjectionVariable(string(name)) {
			return Process{}, fmt.Errorf("%w: process %d was started with %s set; start it without", ErrInjected, pid, name)
		}
	}

	if err := ownCodeOnly(dir, pid); err != nil {
		return Process{}, err
	}

	again, err := startTime(dir)
	if err != nil {
		return Process{}, err
	}
	if again != started {
		return Process{}, fmt.Errorf("%w: process %d changed while it was checked", ErrGone, pid)
	}
	if pidfd >= 0 {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			return Process{}, fmt.Errorf("%w: %v", ErrGone, err)
		}
	}
	return p, nil
}

// ownCodeOnly checks that every file mapped executable in the process belongs to root and is writable by
// nobody else: code its user could have written (a GTK module named in ~/.config/gtk-3.0/settings.ini or by
// XSETTINGS, a library dlopen'ed from the home directory, a memfd) would run as the agent. The file is the one
// the mapping holds (map_files, whatever its path now names or in whichever mount namespace), so a file
// renamed or replaced since counts as what was mapped.
func ownCodeOnly(dir, pid int) error {
	maps, err := readAt(dir, "maps")
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(maps, []byte{'\n'}) {
		// start-end perms offset dev inode path
		f := strings.Fields(string(line))
		if len(f) < 6 || len(f[1]) < 3 || f[1][2] != 'x' {
			continue
		}
		start, end, ok := strings.Cut(f[0], "-")
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		path := strings.Join(f[5:], " ")
		var st unix.Stat_t
		// map_files names are the range without maps' zero padding.
		if err := unix.Fstatat(dir, fmt.Sprintf("map_files/%x-%x", lo, hi), &st, 0); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // unmapped meanwhile; the start time check catches an exited process
			}
			return fmt.Errorf("%w: process %d maps %s, which cannot be checked: %v", ErrInjected, pid, path, err)
		}
		if st.Uid != 0 || st.Mode&0o022 != 0 {
			return fmt.Errorf("%w: process %d runs code from %s, which uid %d owns (mode %o): a module or library its user could write",
				ErrInjected, pid, path, st.Uid, st.Mode&0o7777)
		}
		// A file system the user mounted (a disk image through udisks, FUSE) says root owns what it likes;
		// such mounts are nosuid, the system's own are not.
		var fs unix.Statfs_t
		if err := unix.Statfs(fmt.Sprintf("/proc/self/fd/%d/map_files/%x-%x", dir, lo, hi), &fs); err == nil && fs.Flags&unix.ST_NOSUID != 0 {
			return fmt.Errorf("%w: process %d runs code from %s, on a file system mounted nosuid (one its user may have mounted)",
				ErrInjected, pid, path)
		}
	}
	return nil
}

func (t *Trusted) names() string {
	var out []string
	for _, p := range t.progs {
		out = append(out, p.Path)
	}
	if len(out) == 0 {
		return "(no program: none is configured)"
	}
	return strings.Join(out, " and ")
}

// safePath checks that nobody but root can replace path: it and every directory above it belong to root
// and are not writable by group or others (a sticky directory such as /tmp is fine: only an entry's owner
// may rename it there).
func safePath(path string) error {
	for p := path; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if p == path && st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s is not a regular file", p)
		}
		if st.Uid != 0 {
			return fmt.Errorf("%s belongs to uid %d, not root", p, st.Uid)
		}
		writable := st.Mode&0o022 != 0
		if writable && (p == path || st.Mode&unix.S_ISVTX == 0) {
			return fmt.Errorf("%s is writable by group or others (mode %o)", p, st.Mode&0o7777)
		}
		if p == "/" {
			return nil
		}
	}
}

func readAt(dir int, name string) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrGone, name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrGone, name, err)
	}
	return buf.Bytes(), nil
}

func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// startTime reads field 22 of stat (after the parenthesized command name, which may contain anything).
func startTime(dir int) (uint64, error) {
	stat, err := readAt(dir, "stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: unreadable stat", ErrGone)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("%w: short stat", ErrGone)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

func statusField(status []byte, key string) string {
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// pidOfPidfd reads the PID a pidfd refers to from its fdinfo (-1 there: the process has exited).
func pidOfPidfd(pidfd int) (int, error) {
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, err
	}
	v := statusField(data, "Pid")
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("the pidfd refers to no live process (Pid: %q)", v)
	}
	return pid, nil
}
