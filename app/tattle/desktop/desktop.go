// Package desktop finds the .desktop entry of an executable, so the monitor and the alert can show an
// application's own name and icon instead of its binary. It reads the entries under $XDG_DATA_HOME and
// $XDG_DATA_DIRS (applications/) the way GIO's DesktopAppInfo does, matching an executable against each
// entry's TryExec and the program of its Exec line (resolved through PATH and symbolic links).
package desktop

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tattlefw/tattle/app/xdg"
)

// Entry is what the UI shows for an application.
type Entry struct {
	ID   string // desktop file id, e.g. "org.gnome.Epiphany.desktop"
	Name string // localized Name
	Icon string // icon name or absolute path
}

// Index maps executables to entries. Build it once (Load) and share it read-only.
type Index struct {
	byExe map[string]Entry
	byID  map[string]Entry // by desktop file id without ".desktop": Flatpak exports name theirs by app id
}

// DataDirs are the XDG data directories, most important first, and Flatpak's exports.
func DataDirs() []string {
	return append(xdg.DataDirs(), "/var/lib/flatpak/exports/share")
}

// Load reads the entries under each dir's applications folder; earlier directories win.
func Load(dataDirs []string) *Index {
	ix := &Index{byExe: map[string]Entry{}, byID: map[string]Entry{}}
	langs := languages()
	for _, d := range dataDirs {
		root := filepath.Join(d, "applications")
		filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
			if err != nil || de.IsDir() || !strings.HasSuffix(path, ".desktop") {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			id := strings.ReplaceAll(rel, string(filepath.Separator), "-")
			e, progs, ok := parse(path, id, langs)
			if !ok {
				return nil
			}
			if key := strings.TrimSuffix(id, ".desktop"); ix.byID[key] == (Entry{}) {
				ix.byID[key] = e
			}
			for _, p := range progs {
				for _, k := range resolve(p) {
					if _, seen := ix.byExe[k]; !seen {
						ix.byExe[k] = e
					}
				}
			}
			return nil
		})
	}
	return ix
}

// Lookup returns the entry for the executable at exe.
func (ix *Index) Lookup(exe string) (Entry, bool) {
	if ix == nil || exe == "" {
		return Entry{}, false
	}
	if e, ok := ix.byExe[exe]; ok {
		return e, true
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		e, ok := ix.byExe[real]
		return e, ok
	}
	return Entry{}, false
}

// App names an application as a rule does ("/usr/bin/firefox", "flatpak:org.mozilla.firefox",
// "snap:firefox", "appimage:/path/App.AppImage"): its entry's name and icon, else the file's name and a
// generic icon. The monitor and the Rules page both name applications through it, so they agree.
func (ix *Index) App(app string) (name, icon string) {
	const generic = "application-x-executable"
	var e Entry
	ok := false
	switch {
	case strings.HasPrefix(app, "flatpak:"):
		id := strings.TrimPrefix(app, "flatpak:")
		if ix != nil {
			e, ok = ix.byID[id]
		}
		if !ok {
			return id, generic
		}
	case strings.HasPrefix(app, "snap:"):
		name := strings.TrimPrefix(app, "snap:")
		if ix != nil {
			// snapd exports NAME_APP.desktop; the snap's own app is NAME_NAME.
			e, ok = ix.byID[name+"_"+name]
		}
		if !ok {
			return name, generic
		}
	case strings.HasPrefix(app, "appimage:"):
		return filepath.Base(strings.TrimPrefix(app, "appimage:")), generic
	default:
		if e, ok = ix.Lookup(app); !ok {
			return filepath.Base(app), generic
		}
	}
	icon = e.Icon
	if icon == "" || filepath.IsAbs(icon) {
		icon = generic
	}
	return e.Name, icon
}

// languages are the Name[...] keys to try, best first, from the locale environment ("de_DE.UTF-8" ->
// de_DE, de).
func languages() []string {
	var loc string
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if loc = os.Getenv(v); loc != "" {
			break
		}
	}
	if i := strings.IndexAny(loc, ".@"); i >= 0 {
		loc = loc[:i]
	}
	if loc == "" || loc == "C" || loc == "POSIX" {
		return nil
	}
	out := []string{loc}
	if i := strings.IndexByte(loc, '_'); i > 0 {
		out = append(out, loc[:i])
	}
	return out
}

// parse reads one entry: its name and icon and the programs it runs. Hidden entries and non-applications
// are skipped.
func parse(path, id string, langs []string) (Entry, []string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, nil, false
	}
	defer f.Close()
	kv := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = line == "[Desktop Entry]"
			continue
		}
		if !in || line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if kv["Type"] != "Application" || kv["Hidden"] == "true" {
		return Entry{}, nil, false
	}
	e := Entry{ID: id, Name: kv["Name"], Icon: kv["Icon"]}
	for _, l := range langs {
		if n := kv["Name["+l+"]"]; n != "" {
			e.Name = n
			break
		}
	}
	var progs []string
	if t := kv["TryExec"]; t != "" {
		progs = append(progs, t)
	}
	if p := execProgram(kv["Exec"]); p != "" {
		progs = append(progs, p)
	}
	return e, progs, e.Name != "" && len(progs) > 0
}

// execProgram is the program an Exec line runs, skipping an "env VAR=x" prefix. Arguments may be quoted
// with double quotes, inside which a backslash escapes the next character (Desktop Entry Specification).
func execProgram(execLine string) string {
	for i, f := range splitExec(execLine) {
		if filepath.Base(f) == "env" && i == 0 || strings.Contains(f, "=") && !strings.HasPrefix(f, "/") {
			continue
		}
		return f
	}
	return ""
}

func splitExec(line string) []string {
	var out []string
	var cur strings.Builder
	in, quoted, started := false, false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			started = true
		case !quoted && (c == ' ' || c == '\t'):
			if in || started {
				out = append(out, cur.String())
				cur.Reset()
			}
			in, started = false, false
			continue
		default:
			cur.WriteByte(c)
		}
		in = true
	}
	if in || started {
		out = append(out, cur.String())
	}
	return out
}

// resolve is the paths an entry's program may appear as: itself, found through PATH, and its real path.
func resolve(p string) []string {
	if !filepath.IsAbs(p) {
		lp, err := exec.LookPath(p)
		if err != nil {
			return nil
		}
		p = lp
	}
	out := []string{p}
	if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
		out = append(out, real)
	}
	return out
}
