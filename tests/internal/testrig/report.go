package testrig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Report collects the figures a ring's tests measure and keeps them in one file of TATTLE_RESULTS_DIR
// (tests/output by default), rewritten after every line so a run that dies still leaves what it measured.
type Report struct {
	file  string
	mu    sync.Mutex
	lines []string
}

// NewReport is a report written to file (a base name such as "hold.txt").
func NewReport(file string) *Report { return &Report{file: file} }

// Add logs one figure under the test's name and writes the report.
func (r *Report) Add(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf("%s: %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	lines := strings.Join(r.lines, "\n") + "\n"
	r.mu.Unlock()
	dir := ResultsDir(t)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, r.file), []byte(lines), 0o644)
}
