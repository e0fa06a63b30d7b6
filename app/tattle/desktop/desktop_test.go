package desktop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLookup(t *testing.T) {
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	bin := t.TempDir()
	// A real executable and a symbolic link to it, as /usr/bin/firefox -> /usr/lib/firefox/firefox.
	real := filepath.Join(bin, "browser-real")
	write(t, real, "#!/bin/sh\n")
	os.Chmod(real, 0o755)
	link := filepath.Join(bin, "browser")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(bin, "tool")
	write(t, tool, "#!/bin/sh\n")
	os.Chmod(tool, 0o755)
	t.Setenv("PATH", bin)

	home, system := t.TempDir(), t.TempDir()
	write(t, filepath.Join(system, "applications", "org.example.Browser.desktop"),
		"[Desktop Entry]\nType=Application\nName=Browser\nName[de]=Netzbetrachter\nIcon=web-browser\nExec="+link+" %u\n\n[Desktop Action new]\nName=Other\nExec=/bin/false\n")
	write(t, filepath.Join(system, "applications", "kde", "tool.desktop"),
		"[Desktop Entry]\nType=Application\nName=Tool\nIcon=tool\nExec=env FOO=1 tool --flag\n")
	write(t, filepath.Join(system, "applications", "hidden.desktop"),
		"[Desktop Entry]\nType=Application\nName=Hidden\nHidden=true\nExec=/bin/hidden\n")
	// The user's own entry overrides the system's for the same program.
	write(t, filepath.Join(home, "applications", "mytool.desktop"),
		"[Desktop Entry]\nType=Application\nName=My Tool\nIcon=mytool\nTryExec=tool\nExec=tool\n")

	ix := Load([]string{home, system})
	for _, c := range []struct {
		exe, name, icon, id string
	}{
		{real, "Netzbetrachter", "web-browser", "org.example.Browser.desktop"},
		{link, "Netzbetrachter", "web-browser", "org.example.Browser.desktop"},
		{tool, "My Tool", "mytool", "mytool.desktop"},
	} {
		e, ok := ix.Lookup(c.exe)
		if !ok || e.Name != c.name || e.Icon != c.icon || e.ID != c.id {
			t.Errorf("Lookup(%s) = %+v, %v; want %s, %s, %s", c.exe, e, ok, c.name, c.icon, c.id)
		}
	}
	if e, ok := ix.Lookup("/bin/hidden"); ok {
		t.Errorf("a hidden entry was found: %+v", e)
	}
	if e, ok := ix.Lookup("/bin/false"); ok {
		t.Errorf("a desktop action's Exec was taken for the application: %+v", e)
	}
	var nilIndex *Index
	if _, ok := nilIndex.Lookup(tool); ok {
		t.Errorf("a nil index found something")
	}
}

func TestExecProgram(t *testing.T) {
	for in, want := range map[string]string{
		"firefox %u":                 "firefox",
		`"/opt/My App/app" --x`:      `/opt/My App/app`,
		`"/opt/a\"b" x`:              `/opt/a"b`,
		"env GDK_BACKEND=x11 foo %F": "foo",
		"/usr/bin/env A=1 B=2 /x/y":  "/x/y",
		"":                           "",
	} {
		if got := execProgram(in); got != want {
			t.Errorf("execProgram(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzExecProgram: any Exec line yields a program name without panicking, and a plain absolute path as
// the first word is found as written.
func FuzzExecProgram(f *testing.F) {
	for _, s := range []string{"firefox %u", `"/opt/My App/app" --x`, "env A=1 foo", `"unterminated`, `"a\"b" c`, "\t \\", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := execProgram(line)
		if len(p) > len(line) {
			t.Fatalf("execProgram(%q) = %q: longer than its input", line, p)
		}
		if !strings.ContainsAny(line, "\"\\= \t") && strings.HasPrefix(line, "/") && p != line {
			t.Fatalf("execProgram(%q) = %q", line, p)
		}
	})
}

func TestAppNamesRuleApplications(t *testing.T) {
	t.Setenv("LANG", "C")
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	exports := t.TempDir()
	// Flatpak exports an app's entry under its id (Exec runs flatpak, not the app's own file).
	write(t, filepath.Join(exports, "applications", "org.example.Maps.desktop"),
		"[Desktop Entry]\nType=Application\nName=Maps\nIcon=org.example.Maps\nExec=/usr/bin/flatpak run org.example.Maps\n")
	write(t, filepath.Join(exports, "applications", "tool_tool.desktop"),
		"[Desktop Entry]\nType=Application\nName=Snap Tool\nIcon=/snap/tool/1/icon.png\nExec=/snap/bin/tool\n")
	ix := Load([]string{exports})
	for app, want := range map[string][2]string{
		"flatpak:org.example.Maps":      {"Maps", "org.example.Maps"},
		"flatpak:org.example.Gone":      {"org.example.Gone", "application-x-executable"},
		"snap:tool":                     {"Snap Tool", "application-x-executable"}, // an absolute icon is not a theme name
		"appimage:/home/u/App.AppImage": {"App.AppImage", "application-x-executable"},
		"/usr/bin/no-entry":             {"no-entry", "application-x-executable"},
	} {
		name, icon := ix.App(app)
		if name != want[0] || icon != want[1] {
			t.Errorf("%s: %q, %q; want %q, %q", app, name, icon, want[0], want[1])
		}
	}
	var none *Index
	if name, _ := none.App("flatpak:org.example.Maps"); name != "org.example.Maps" {
		t.Errorf("no index: %q", name)
	}
}
