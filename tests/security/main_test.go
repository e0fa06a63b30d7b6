// Package security is the security ring: attacks a program running as an ordinary desktop user could try
// against Tattle, each tried for real (real dbus-daemon, polkitd, tattled holding real connections, the
// real tattlectl and app) and each expected to fail. tests/output/security.txt gets one line per attack
// path, tried / stopped, and the count.
package security

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// ledger is the attack paths tried, for tests/output/security.txt.
type ledger struct {
	mu    sync.Mutex
	lines []string
	tried int
	won   int
}

var attacks ledger

// attack records one attack path: tried, and whether it was stopped (with what the user would see).
func (l *ledger) attack(t *testing.T, path string, stopped bool, seen string) {
	t.Helper()
	verdict := "stopped"
	if !stopped {
		verdict = "SUCCEEDED"
		t.Errorf("attack succeeded: %s: %s", path, seen)
	}
	seen = strings.Join(strings.Fields(seen), " ")
	if len(seen) > 200 {
		seen = seen[:200] + "…"
	}
	line := fmt.Sprintf("tried: %s / %s: %s", path, verdict, seen)
	t.Log(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tried++
	if !stopped {
		l.won++
	}
	l.lines = append(l.lines, line)
	out := strings.Join(l.lines, "\n") + fmt.Sprintf("\nattack paths tried: %d, succeeded: %d\n", l.tried, l.won)
	dir := testrig.ResultsDir(t)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "security.txt"), []byte(out), 0o644)
}

// note records a check that must work (the legitimate path), in the same file.
func (l *ledger) note(t *testing.T, format string, args ...any) {
	t.Helper()
	line := "ok: " + fmt.Sprintf(format, args...)
	t.Log(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}
