// Package desktop checks Tattle's desktop integration as a distribution would ship it: the translation template
// is current and every translation complete, the desktop entries and AppStream metainfo built by meson (with
// translations merged) pass desktop-file-validate and appstreamcli, the icons render, the app follows LANG, and
// the Flatpak manifest builds the app from the repository and vendored modules alone. No root needed.
package desktop

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the checkout's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// goTool is the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is not found")
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// tool fails the test when a program the test runs is missing, naming the Debian package
// (tests/install-deps.sh installs them all).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is missing: apt-get install %s (tests/install-deps.sh)", name, pkg)
	}
	return p
}

// run runs a command in dir and returns its combined output, failing the test if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mesonData configures the project in a temporary build directory and builds the desktop files and the
// compiled catalogs (not the Go programs), returning the build directory.
func mesonData(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	meson := tool(t, "meson", "meson")
	tool(t, "ninja", "ninja-build")
	tool(t, "msgfmt", "gettext")
	build := filepath.Join(t.TempDir(), "build")
	run(t, root, nil, meson, "setup", "--prefix=/usr", build, root)
	targets := []string{"io.github.tattlefw.Tattle.desktop", "io.github.tattlefw.Tattle.metainfo.xml",
		"io.github.tattlefw.Tattle-autostart.desktop"}
	for _, lang := range linguas(t) {
		targets = append(targets, "po/"+lang+"/LC_MESSAGES/tattle.mo")
	}
	run(t, build, nil, "ninja", append([]string{"-C", build}, targets...)...)
	return build
}

// linguas are the languages in po/LINGUAS.
func linguas(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "po", "LINGUAS"))
	if err != nil {
		t.Fatal(err)
	}
	var langs []string
	for _, l := range strings.Fields(string(data)) {
		if !strings.HasPrefix(l, "#") {
			langs = append(langs, l)
		}
	}
	if len(langs) == 0 {
		t.Fatal("po/LINGUAS names no language")
	}
	return langs
}

// poEntry is one message of a .po or .pot file.
type poEntry struct {
	ID, Plural string
	Str        []string // msgstr, or msgstr[0..n]
	Flags      []string
	Obsolete   bool
}

func (e poEntry) fuzzy() bool {
	for _, f := range e.Flags {
		if f == "fuzzy" {
			return true
		}
	}
	return false
}

// readPO reads the messages of a PO file (the header, msgid "", is left out). It understands what gettext's
// tools write: comments, flags, msgctxt-less entries, plurals, obsolete entries and continued strings.
func readPO(t *testing.T, path string) []poEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []poEntry
	var cur poEntry
	var field *string
	started := false
	flush := func() {
		if started && cur.ID != "" {
			entries = append(entries, cur)
		}
		cur, field, started = poEntry{}, nil, false
	}
	unquote := func(s string) string {
		u, err := strconv.Unquote(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("%s: bad string %s: %v", path, s, err)
		}
		return u
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		obsolete := strings.HasPrefix(line, "#~ ")
		if obsolete {
			line = strings.TrimPrefix(line, "#~ ")
		}
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#,"):
			if started && field != nil {
				flush()
			}
			for _, f := range strings.Split(line[2:], ",") {
				cur.Flags = append(cur.Flags, strings.TrimSpace(f))
			}
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "msgid_plural "):
			cur.Plural = unquote(line[len("msgid_plural "):])
			field = &cur.Plural
		case strings.HasPrefix(line, "msgid "):
			if started && field != nil && len(cur.Str) > 0 {
				flush()
			}
			started = true
			cur.Obsolete = obsolete
			cur.ID = unquote(line[len("msgid "):])
			field = &cur.ID
		case strings.HasPrefix(line, "msgstr"):
			_, rest, _ := strings.Cut(line, " ")
			cur.Str = append(cur.Str, unquote(rest))
			field = &cur.Str[len(cur.Str)-1]
		case strings.HasPrefix(strings.TrimSpace(line), `"`):
			if field == nil {
				t.Fatalf("%s: continued string outside an entry: %s", path, line)
			}
			*field += unquote(line)
		}
	}
	flush()
	return entries
}
