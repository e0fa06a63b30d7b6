package security

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

var (
	callerOnce sync.Once
	callerPath string
	callerErr  error
)

// callerBinary builds tests/security/caller into a directory every user may enter.
func callerBinary(t *testing.T) string {
	callerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tattle-caller-")
		if err != nil {
			callerErr = err
			return
		}
		os.Chmod(dir, 0o755)
		callerPath = filepath.Join(dir, "caller")
		callerErr = testrig.BuildTrusted(callerPath, "github.com/tattlefw/tattle/tests/security/caller")
	})
	if callerErr != nil {
		t.Fatal(callerErr)
	}
	return callerPath
}

// runAs runs argv as u without a terminal (so no polkit agent can ask anything) and returns its combined
// output and exit code.
func runAs(t *testing.T, env []string, u testrig.User, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.UID}}
	out, err := cmd.CombinedOutput()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	return strings.TrimSpace(string(out)), code
}
