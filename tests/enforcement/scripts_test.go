package enforcement

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/scripts"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestScriptIdentityInTheKernel: on either backend, an interpreter's process is decided by (interpreter,
// script), never by the interpreter's own verdict. The test client, installed as "python3" in a directory of
// its own, plays the interpreter (its first non-option argument, "tcp", is the script it runs), so the test
// needs no real interpreter and runs in the VM boots too.
func TestScriptIdentityInTheKernel(t *testing.T) {
	pin := testrig.FreshPinDir(t, "scripts")
	enf, err := enforce.Open(enforce.Options{Backend: backend(t), PinDir: pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer enf.Close()
	srv := testrig.StartServers(t)
	interpDir := testrig.AppDir(t)
	interp := testrig.CopyApp(t, testrig.Build(t).Client, interpDir, "python3")
	ctx, cancel := context.WithCancel(context.Background())
	tr := scripts.New(enf, scripts.Options{Dirs: []string{interpDir}, Log: quietLogger()})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := tr.Run(ctx); err != nil {
			t.Errorf("script tracker: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()

	interpID, err := identity.Stat(interp)
	if err != nil {
		t.Fatal(err)
	}
	scriptIn := func(name string) (string, identity.Executable) {
		dir := testrig.AppDir(t)
		if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte("# "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		id, err := identity.Stat(filepath.Join(dir, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		return dir, identity.ViaIdentity(interpID, id)
	}
	goodDir, good := scriptIn("good")
	evilDir, evil := scriptIn("evil")
	for _, v := range []struct {
		app identity.Executable
		v   enforce.Verdict
	}{{interpID, enforce.Allow}, {good, enforce.Allow}, {evil, enforce.Deny}} {
		if err := enf.SetDefault(enforce.Scope{App: v.app, UID: identity.AnyUID}, v.v, 1); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dir string) testrig.Result {
		t.Helper()
		// --delay: the helper identifies the script before the connect (an attempt before that is
		// unidentified: undecided, never the interpreter's verdict).
		cmd := exec.Command(interp, "--delay=1s", "tcp", srv.TCP4)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("run %s in %s: %v", interp, dir, err)
		}
		var r testrig.Result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("bad report %q", out)
		}
		return r
	}
	expectAllowed(t, "python3 via the allowed script", run(goodDir), false)
	expectDenied(t, "python3 via the denied script, the interpreter itself being allowed", run(evilDir))

	flows, err := enf.Flows()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[identity.Executable]enforce.Flow{}
	for _, f := range flows {
		seen[f.App] = f
	}
	if f, ok := seen[evil]; !ok || f.Denied == 0 || f.Undecided != 0 {
		t.Errorf("the denied script's flow: %+v (present %v); want denied in the kernel, nothing undecided", f, ok)
	}
	if _, ok := seen[interpID]; ok {
		t.Error("an attempt was decided as the interpreter itself")
	}
}
