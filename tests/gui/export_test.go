package gui

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// TestExportImportThroughFileChooser exports the rules as a user would: the Export button, the format, the
// desktop's file chooser (GTK's own here: no portal runs), a file name; the file then holds the rules. With
// the rule removed, importing that file through the chooser (a path typed after Ctrl+L) and the preview's
// Import brings it back.
func TestExportImportThroughFileChooser(t *testing.T) {
	h, cl := startQuietHelper(t)
	now := time.Now().Unix()
	if _, err := cl.AddRules(context.Background(), []api.Rule{{ID: "deny-wget-exported", Application: "/usr/bin/wget", Owner: 0,
		Direction: "outgoing", Remote: "domain:example.net", Port: "any", Protocol: "any", Action: "deny", Duration: "forever",
		Enabled: true, Created: now, Modified: now}}); err != nil {
		t.Fatal(err)
	}
	s := StartSession(t, "x11")
	StartApp(t, s, h, English())
	s.ShowPage(t, "rules")
	s.WaitFor(t, "table cell", "domain:example.net", 10*time.Second)

	s.Click(t, "push button", "Export rules")
	s.WaitFor(t, "push button", "Continue", 10*time.Second)
	s.Click(t, "push button", "Continue")
	s.WaitFor(t, "push button", "Export", 10*time.Second)
	dst := filepath.Join(t.TempDir(), "exported.json")
	// The file name entry has no name of its own (a "Name:" label stands beside it).
	if _, err := s.atspi(t, "settext-within", "tattle", "file chooser", "Export rules", "text", "", dst); err != nil {
		names, _ := s.atspi(t, "names", "tattle", "50")
		t.Fatalf("%v\n%s", err, names)
	}
	s.Click(t, "push button", "Export")
	s.WaitForText(t, "label", "Exported the rules to", 10*time.Second)
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "deny-wget-exported") || !strings.Contains(string(data), "domain:example.net") {
		t.Fatalf("the exported file does not hold the rule:\n%s", data)
	}

	if err := cl.RemoveRules(context.Background(), []string{"deny-wget-exported"}); err != nil {
		t.Fatal(err)
	}
	importFile(t, s, "", dst)
	// The preview first: nothing changes until Import.
	s.WaitForText(t, "label", "1 file, 1 source rule: 1 imported exactly, 0 reported, 0 refused; 1 Tattle rule, 0 named lists", 10*time.Second)
	s.Click(t, "push button", "Import")
	s.WaitForText(t, "label", "Imported 1 rule from exported.json.", 10*time.Second)
	rs, err := cl.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Remote != "domain:example.net" || rs[0].Application != "/usr/bin/wget" || rs[0].Action != "deny" {
		t.Fatalf("after the import the helper holds %+v", rs)
	}
}
