// Command gotestreport turns the events of `go test -json` into what tests/run-all.sh shows and keeps: the
// plain log (what `go test -v` prints) written to -log, and on stdout one line per package plus, for every
// failure, enough to diagnose it without opening the log: a package that did not build prints its compiler
// output; a failing test prints its whole output (its messages, and a panic's stack); a package that failed
// outside any test (a panic in TestMain or init, a timeout, a crash of the test binary) prints its last lines.
//
// Usage: go test -json ./... | go run ./tests/internal/gotestreport -log tests/output/go-test.log
// Exit status: 1 when anything failed (or the input held no result), else 0.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), build events included (Go 1.24+).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output and build-fail events name the package being built
	FailedBuild string // a package's fail event: the package whose build failed
}

// maxLines caps what one failure prints; the log holds everything.
const maxLines = 150

type pkgState struct {
	output   []string            // the package's lines outside any test
	tests    map[string][]string // each test's lines
	failed   []string            // tests that failed, in order
	passed   int                 // tests (and subtests) that passed
	running  []string            // tests started and not ended: when the binary died (a timeout's panic)
	result   string              // pass, fail, skip; "" while running
	build    string              // the package whose build failed, when one did
	elapsed  string
	noTests  bool
	finished bool
}

type report struct {
	pkgs   map[string]*pkgState
	order  []string
	builds map[string][]string // compiler output per package built
	plain  []string            // lines that are no events: go test's own messages (setup failures, downloads)
	log    io.Writer
}

func newReport(log io.Writer) *report {
	return &report{pkgs: map[string]*pkgState{}, builds: map[string][]string{}, log: log}
}

func (r *report) pkg(name string) *pkgState {
	p, ok := r.pkgs[name]
	if !ok {
		p = &pkgState{tests: map[string][]string{}}
		r.pkgs[name] = p
		r.order = append(r.order, name)
	}
	return p
}

// add takes one event; a line that is no JSON (go test's own messages: a setup failure, a download) is kept
// and shown when something failed.
func (r *report) add(line []byte) error {
	var e event
	if err := json.Unmarshal(line, &e); err != nil || (e.Action == "" && e.ImportPath == "") {
		fmt.Fprintf(r.log, "%s\n", line)
		r.plain = append(r.plain, string(line))
		return nil
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.log, e.Output)
		r.builds[e.ImportPath] = append(r.builds[e.ImportPath], strings.TrimRight(e.Output, "\n"))
		return nil
	case "build-fail":
		return nil
	}
	p := r.pkg(e.Package)
	if e.Test != "" {
		switch e.Action {
		case "run":
			p.running = append(p.running, e.Test)
		case "pass", "fail", "skip":
			p.running = slices.DeleteFunc(p.running, func(t string) bool { return t == e.Test })
		}
	}
	switch e.Action {
	case "output":
		fmt.Fprint(r.log, e.Output)
		text := strings.TrimRight(e.Output, "\n")
		if e.Test != "" {
			p.tests[e.Test] = append(p.tests[e.Test], text)
		} else {
			p.output = append(p.output, text)
		}
	case "fail":
		if e.Test != "" {
			p.failed = append(p.failed, e.Test)
			return nil
		}
		p.result, p.build, p.finished = "fail", e.FailedBuild, true
	case "pass", "skip":
		if e.Test != "" && e.Action == "pass" {
			p.passed++
		}
		if e.Test == "" {
			p.result, p.finished = e.Action, true
			p.noTests = e.Action == "skip"
		}
	}
	return nil
}

// write prints the summary to w and says whether everything passed.
func (r *report) write(w io.Writer) (ok bool) {
	ok = true
	passed, failed := 0, 0
	shownBuilds := map[string]bool{}
	for _, name := range r.order {
		p := r.pkgs[name]
		passed += p.passed
		failed += len(p.failed)
		switch {
		case p.result == "pass" || p.result == "skip":
			fmt.Fprintf(w, "ok   %s\n", name)
		default:
			ok = false
			why := "failed"
			switch {
			case !p.finished:
				why = "did not finish (the test binary crashed or go test was stopped)"
			case p.build != "":
				why = "build failed (" + p.build + ")"
			}
			fmt.Fprintf(w, "FAIL %s: %s\n", name, why)
			if p.build != "" {
				if out := r.builds[p.build]; len(out) > 0 {
					shownBuilds[p.build] = true
					printLines(w, out)
				} else {
					printLines(w, p.output)
				}
				continue
			}
			for _, t := range p.failed {
				// A parent fails with its subtests: print the innermost ones, which hold the messages.
				if hasFailedChild(p.failed, t) {
					continue
				}
				// The messages first: a long output is cut in the middle where CI shows only a part of it,
				// and the reason must survive the cut.
				if why := failureMessages(p.tests[t]); len(why) > 0 {
					fmt.Fprintf(w, "  --- %s: why:\n", t)
					printLines(w, why)
				}
				fmt.Fprintf(w, "  --- %s:\n", t)
				printLines(w, p.tests[t])
			}
			for _, t := range p.running {
				if hasRunningChild(p.running, t) {
					continue
				}
				fmt.Fprintf(w, "  --- %s (never ended; its last lines):\n", t)
				printLines(w, tail(p.tests[t], maxLines))
			}
			if len(p.failed) == 0 || !p.finished || hasPanic(p.output) {
				// Failed outside any test: a panic, a timeout, TestMain, a crash. The last lines say which.
				fmt.Fprintln(w, "  package output (last lines):")
				printLines(w, tail(p.output, maxLines))
			}
		}
	}
	// Packages that did not build for another package's test (an import of a broken package) have their
	// compiler output here too, once.
	for path, out := range r.builds {
		if !shownBuilds[path] {
			ok = false
			fmt.Fprintf(w, "FAIL %s: build failed\n", path)
			printLines(w, out)
		}
	}
	if len(r.order) == 0 {
		ok = false
		fmt.Fprintln(w, "FAIL: go test reported no package at all")
	}
	if !ok && len(r.plain) > 0 {
		fmt.Fprintln(w, "go test's own messages:")
		printLines(w, tail(r.plain, maxLines))
	}
	fmt.Fprintf(w, "tests: %d passed, %d failed\n", passed, failed)
	return ok
}

func hasFailedChild(failed []string, t string) bool {
	for _, f := range failed {
		if strings.HasPrefix(f, t+"/") {
			return true
		}
	}
	return false
}

func hasRunningChild(running []string, t string) bool {
	for _, r := range running {
		if strings.HasPrefix(r, t+"/") {
			return true
		}
	}
	return false
}

func hasPanic(lines []string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			return true
		}
	}
	return false
}

// messageLine is how the testing package starts a t.Error, t.Fatal or t.Log line: "    name_test.go:42: ".
var messageLine = regexp.MustCompile(`^\s+[\w.-]+\.go:\d+: `)

// failureMessages picks the test's messages (with their continuation lines, indented deeper) out of its
// output, leaving out the rest (what the test printed itself, the RUN and FAIL lines).
func failureMessages(lines []string) []string {
	var out []string
	depth := -1 // the indentation of the message being copied, or -1 outside one
	for _, l := range lines {
		indent := len(l) - len(strings.TrimLeft(l, " \t"))
		switch {
		case messageLine.MatchString(l):
			out, depth = append(out, strings.TrimSpace(l)), indent
		case depth >= 0 && indent > depth && strings.TrimSpace(l) != "":
			out = append(out, "  "+strings.TrimSpace(l))
		default:
			depth = -1
		}
	}
	return out
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

func printLines(w io.Writer, lines []string) {
	shown := lines
	if len(shown) > maxLines {
		shown = shown[:maxLines]
	}
	for _, l := range shown {
		for _, part := range strings.Split(l, "\n") {
			fmt.Fprintf(w, "    %s\n", part)
		}
	}
	if len(lines) > len(shown) {
		fmt.Fprintf(w, "    ... %d more lines in the log\n", len(lines)-len(shown))
	}
}

func run(in io.Reader, out io.Writer, logPath string) (bool, error) {
	var log io.Writer = io.Discard
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return false, fmt.Errorf("create the log: %w", err)
		}
		defer f.Close()
		bw := bufio.NewWriter(f)
		defer bw.Flush()
		log = bw
	}
	r := newReport(log)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := r.add(sc.Bytes()); err != nil {
			return false, err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read go test's events: %w", err)
	}
	return r.write(out), nil
}

func main() {
	logPath := flag.String("log", "", "write the plain test log (as go test -v prints it) here")
	flag.Parse()
	ok, err := run(os.Stdin, os.Stdout, *logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotestreport:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
