package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportsEveryKindOfFailure runs the real `go test -json` on a small module with a package that passes,
// one that does not compile, one whose test fails with a message, and one whose test panics, and checks that
// the report names each and prints what says why: the compiler's error, the message, the panic and its frame.
func TestReportsEveryKindOfFailure(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":                "module example.com/m\n\ngo 1.22\n",
		"good/good_test.go":     "package good\nimport \"testing\"\nfunc TestGood(t *testing.T) {}\n",
		"broken/broken.go":      "package broken\nfunc F() int { return undefinedThing }\n",
		"broken/broken_test.go": "package broken\nimport \"testing\"\nfunc TestB(t *testing.T) { F() }\n",
		"fails/fails_test.go": "package fails\nimport \"testing\"\nfunc TestFails(t *testing.T) {\n" +
			"\tt.Run(\"sub\", func(t *testing.T) { t.Errorf(\"wanted %d, got %d\", 1, 2) })\n}\n" +
			"func TestPasses(t *testing.T) {}\n",
		"hangs/hangs_test.go": "package hangs\nimport (\"testing\"; \"time\")\nfunc TestHangs(t *testing.T) { t.Log(\"waiting for Godot\"); time.Sleep(time.Minute) }\n",
		"panics/panics_test.go": "package panics\nimport \"testing\"\nfunc helperThatPanics() { var m map[string]int; m[\"x\"] = 1 }\n" +
			"func TestPanics(t *testing.T) { helperThatPanics() }\n",
	}
	for name, text := range files {
		path := filepath.Join(mod, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "-timeout=3s", "./...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	events, err := cmd.Output()
	if err == nil {
		t.Fatal("go test passed a module with failing packages")
	}
	var out bytes.Buffer
	logPath := filepath.Join(t.TempDir(), "go-test.log")
	ok, err := run(bytes.NewReader(events), &out, logPath)
	if err != nil {
		t.Fatal(err)
	}
	report := out.String()
	t.Logf("report:\n%s", report)
	if ok {
		t.Error("the report says everything passed")
	}
	for _, want := range []string{
		"ok   example.com/m/good",
		"FAIL example.com/m/broken: build failed",
		"undefined: undefinedThing",
		"broken.go:2",
		"FAIL example.com/m/fails: failed",
		"--- TestFails/sub: why:\n    fails_test.go:4: wanted 1, got 2\n",
		"--- TestFails/sub:",
		"FAIL example.com/m/panics: failed",
		"assignment to entry in nil map",
		"helperThatPanics",
		"FAIL example.com/m/hangs: failed",
		"--- TestHangs (never ended",
		"waiting for Godot",
		"test timed out after 3s",
		"tests: 2 passed, 3 failed", // TestGood, TestPasses; TestFails, TestFails/sub, TestPanics
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Count(report, "undefined: undefinedThing") != 1 {
		t.Error("the compiler output is not printed exactly once")
	}
	if strings.Contains(report, "--- TestFails:\n") {
		t.Error("the report prints the parent test, whose subtest holds the message")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== RUN   TestGood", "--- FAIL: TestFails/sub", "undefined: undefinedThing", "panic:"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the plain log lacks %q", want)
		}
	}
}
