package gui

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestModuleFromSettingsIsRefused: a program of the user names a GTK module of its own in the user's
// ~/.config/gtk-3.0/settings.ini, no variable needed: GTK reads the file and loads the module into the app at
// start, where it could answer questions for the user. The helper refuses the app as an agent, since the app
// runs code its user could have written, and the app says it will not be asked.
func TestModuleFromSettingsIsRefused(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc is missing (tests/install-deps.sh installs build-essential)")
	}
	h := StartHelper(t)
	s := StartSession(t, "x11")
	dir := t.TempDir()
	src := filepath.Join(dir, "evil.c")
	mark := filepath.Join(dir, "loaded")
	// The module proves it ran inside the app by leaving a file.
	code := `#include <stdio.h>
#include <stdlib.h>
void gtk_module_init(int *argc, char ***argv) { FILE *f = fopen(getenv("EVIL_MARK"), "w"); if (f) fclose(f); }
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "libevil.so")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", mod, src).CombinedOutput(); err != nil {
		t.Fatalf("build the module: %v\n%s", err, out)
	}
	// A file its user could write: here the app runs as root, so another uid's file stands for the user's own.
	if err := os.Chown(mod, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(s.dir, "home", ".config", "gtk-3.0")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "settings.ini"), []byte("[Settings]\ngtk-modules="+mod+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	StartApp(t, s, h, English(), "EVIL_MARK="+mark)
	s.WaitForText(t, "label", "did not accept this app as the one to ask", 30*time.Second)
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the module did not run in the app (so the test shows nothing): %v", err)
	}
	if !strings.Contains(s.Log.String()+h.Log.String(), "runs code from "+mod) {
		t.Errorf("neither the app nor the helper says why it was refused:\n%s\n%s", s.Log, h.Log)
	}
	s.Screenshot(t, "module-refused")
}
