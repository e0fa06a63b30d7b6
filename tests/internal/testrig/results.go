package testrig

import (
	"os"
	"path/filepath"
	"strings"
)

// WriteSection puts text into the results file name (under $TATTLE_RESULTS_DIR, default tests/output) as
// the section headed "== section ==", replacing that section from an earlier run and keeping the others, so
// several tests can report into one file. Errors are ignored: a report that cannot be kept fails no test.
func WriteSection(name, section, text string) {
	dir := os.Getenv("TATTLE_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "output")
	}
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, name)
	head := "== " + section + " =="
	old, _ := os.ReadFile(path)
	var parts []string // each a section: its head line, then its text
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if strings.HasPrefix(line, "== ") && strings.HasSuffix(line, " ==") || len(parts) == 0 {
			parts = append(parts, "")
		}
		parts[len(parts)-1] += line + "\n"
	}
	var out strings.Builder
	for _, p := range parts {
		if strings.TrimSpace(p) == "" || strings.HasPrefix(p, head+"\n") {
			continue
		}
		out.WriteString(p)
	}
	out.WriteString(head + "\n" + strings.TrimRight(text, "\n") + "\n")
	os.WriteFile(path, []byte(out.String()), 0o644)
}
