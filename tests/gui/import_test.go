package gui

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestImportPreview imports a Little Snitch export as a user would: the Import button, the format, a file
// typed into the desktop's file chooser (GTK's own: no portal runs). Before anything changes the app shows
// the helper's dry run: the summary line tattlectl prints for the same file, the rules it would make (a rule
// that lost a narrowing condition shown disabled and flagged) and the report with file:line:column. Cancel
// leaves the rules as they were; Import makes exactly the previewed rules. A file the helper refuses shows
// why, with Close as the only way on.
func TestImportPreview(t *testing.T) {
	h, cl := startQuietHelper(t)
	file := filepath.Join(testrig.RepoRoot(t), "tests", "testdata", "rulefiles", "littlesnitch", "macbook-export.lsrules")

	// What tattlectl says of the same import (the app's default: the user's own rules, so --user).
	cmd := exec.Command(testrig.Tattlectl(t), "rules", "import", "--dry-run", "--user", "--format", "lsrules", file)
	cmd.Env = h.Env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tattlectl rules import --dry-run: %v\n%s", err, out)
	}
	summary, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "dry run, nothing changed: ")
	m := regexp.MustCompile(`; (\d+) Tattle rules,`).FindStringSubmatch(summary)
	if !ok || m == nil {
		t.Fatalf("tattlectl's dry run printed %q", out)
	}
	want, _ := strconv.Atoi(m[1])

	s := StartSession(t, "x11")
	StartApp(t, s, h, English())
	s.ShowPage(t, "rules")
	const lsrules = "Little Snitch rule group (.lsrules)"
	rulesNow := func() []api.Rule {
		t.Helper()
		rs, err := cl.Rules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	tattlectlList := func() string {
		t.Helper()
		cmd := exec.Command(testrig.Tattlectl(t), "rules", "list")
		cmd.Env = h.Env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tattlectl rules list: %v\n%s", err, out)
		}
		return string(out)
	}

	importFile(t, s, lsrules, file)
	s.WaitForText(t, "label", summary, 20*time.Second)
	names := s.Names(t)
	for _, c := range []struct{ role, text string }{
		{"table cell", "/usr/lib/firefox/firefox"}, {"table cell", "domain:mozilla.org"}, {"table cell", "443"},
		{"table cell", "Disabled, flagged"}, {"table cell", `[import: disabled, lost via "/usr/local/bin/pip3"]`},
		{"table cell", "incoming rules are not imported — at macbook-export.lsrules:41:5"},
	} {
		if !hasName(names, c.role, c.text) {
			t.Errorf("the preview shows no %s with %q; it shows:\n%s", c.role, c.text, dumpNames(names))
		}
	}
	if !hasExact(names, "push button", "Import") || !hasExact(names, "push button", "Cancel") {
		t.Errorf("the preview has no Import and Cancel buttons; it shows:\n%s", dumpNames(names))
	}
	pointerAway(t, s) // no tooltip over the rows in the picture
	s.Screenshot(t, "x11-en-import-preview")

	s.Click(t, "push button", "Cancel")
	time.Sleep(time.Second)
	if rs := rulesNow(); len(rs) != 0 {
		t.Fatalf("Cancel in the preview left %d rules: %+v", len(rs), rs)
	}
	if out := tattlectlList(); strings.Contains(out, "mozilla.org") {
		t.Fatalf("after Cancel tattlectl lists:\n%s", out)
	}

	importFile(t, s, lsrules, file)
	s.WaitForText(t, "label", summary, 20*time.Second)
	s.Click(t, "push button", "Import")
	s.WaitForText(t, "label", "Imported "+strconv.Itoa(want)+" rules from macbook-export.lsrules.", 20*time.Second)
	rs := rulesNow()
	if len(rs) != want {
		t.Errorf("Import made %d rules, the preview said %d", len(rs), want)
	}
	var firefox, pip bool
	for _, r := range rs {
		firefox = firefox || (r.Application == "/usr/lib/firefox/firefox" && r.Remote == "domain:mozilla.org" && r.Port == "443" && r.Enabled && r.Owner == 0)
		pip = pip || (r.Application == "/usr/bin/python3" && r.Remote == "domain:pypi.org" && !r.Enabled)
	}
	if !firefox || !pip {
		t.Errorf("after Import the helper holds %+v", rs)
	}
	if out := tattlectlList(); !strings.Contains(out, "mozilla.org") {
		t.Errorf("after Import tattlectl lists:\n%s", out)
	}

	// A file that is not a rule group: the reason with its place, only Close, nothing changed.
	broken := filepath.Join(t.TempDir(), "broken.lsrules")
	if err := os.WriteFile(broken, []byte("{\n  \"rules\": [ { \"action\": \"allow\", }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	importFile(t, s, lsrules, broken)
	s.WaitForText(t, "label", "These files cannot be imported", 20*time.Second)
	names = s.Names(t)
	if hasName(names, "animation", "") || !hasName(names, "label", "broken.lsrules: invalid JSON at line 2, column 36") || !hasName(names, "push button", "Close") || hasExact(names, "push button", "Import") {
		t.Errorf("the refused file's preview shows:\n%s", dumpNames(names))
	}
	pointerAway(t, s)
	s.Screenshot(t, "x11-en-import-refused")
	s.Click(t, "push button", "Close")
	time.Sleep(500 * time.Millisecond)
	if n := len(rulesNow()); n != want {
		t.Errorf("after the refused file the helper holds %d rules, want %d", n, want)
	}
}

// startQuietHelper starts a helper in silent-allow mode, so that no question comes up over the dialogs, and a
// client of it through which the test looks at the rules.
func startQuietHelper(t *testing.T) (*Helper, *client.Client) {
	t.Helper()
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	// The test drives the pages through AT-SPI, which changes nothing unless the administrator allows GUI
	// scripting (TestForgedInputChangesNothing shows it refused otherwise).
	h.SetGUIScripting(t, true)
	cl := h.Dial(t)
	return h, cl
}

// importFile imports path as a user would from the Rules page: Import rules, the format (the first step's
// choice; "" keeps its default, Tattle rules), Continue, and the path typed into the desktop's file chooser
// after Ctrl+L. The preview comes next.
func importFile(t *testing.T, s *Session, format, path string) {
	t.Helper()
	s.Click(t, "push button", "Import rules")
	s.WaitFor(t, "push button", "Continue", 10*time.Second)
	if format != "" {
		if _, err := s.atspi(t, "choose", "tattle", "Tattle rules (.json)", format); err != nil {
			t.Fatal(err)
		}
	}
	s.Click(t, "push button", "Continue")
	// The file chooser itself: a preview cancelled just before may still list its own Import button.
	s.WaitFor(t, "file chooser", "Import rules", 10*time.Second)
	s.Keys(t, "ctrl+l")
	s.Type(t, path)
	time.Sleep(300 * time.Millisecond)
	s.Keys(t, "Return")
}

// hasExact reports whether names holds an accessible with that role and exactly that name.
func hasExact(names [][2]string, role, name string) bool {
	for _, n := range names {
		if n[0] == role && n[1] == name {
			return true
		}
	}
	return false
}

// pointerAway moves the X11 pointer to the screen's corner, where it points at nothing.
func pointerAway(t *testing.T, s *Session) {
	t.Helper()
	s.xdotool(t, "mousemove", "0", "0")
}
