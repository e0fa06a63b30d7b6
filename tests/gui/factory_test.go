package gui

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestRulesFactoryScreen: with the shipped factory groups (data/rules.d), the Rules page shows them in a group
// of their own, each with its switch and its reason, and a screenshot (x11-en-rules-factory.png).
func TestRulesFactoryScreen(t *testing.T) {
	src, err := filepath.Glob(filepath.Join(testrig.RepoRoot(t), "data", "rules.d", "*.json"))
	if err != nil || len(src) == 0 {
		t.Fatalf("no data/rules.d (%v)", err)
	}
	dir := t.TempDir()
	for _, p := range src {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := StartHelper(t, "-factory-dir", dir)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	lang := English()
	StartApp(t, s, h, lang)
	s.ShowPage(t, "rules")
	group := "Factory rules"
	s.WaitFor(t, "table cell", group, 20*time.Second)
	names := s.Names(t)
	for _, want := range []string{
		"Any application → 127.0.0.0/8", "systemd-timesyncd", "http", "python3 dnf",
		"Everyone (system) · Factory (dns.json)", "Everyone (system) · Factory (packages.json)",
	} {
		if !hasName(names, "table cell", want) {
			t.Errorf("the rules page does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	s.Screenshot(t, "x11-en-rules-factory")
}
