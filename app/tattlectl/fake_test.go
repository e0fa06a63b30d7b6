package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// fakeHelper stands in for tattled: it answers from memory and records what it was asked.
type fakeHelper struct {
	mu      sync.Mutex
	status  api.Status
	rules   []api.Rule
	flows   []api.Flow
	history []api.HistoryEntry
	traffic []api.TrafficBucket

	historyQuery api.HistoryQuery
	problems     []api.Problem
	export       []byte
	skipped      []string
	err          error // returned by every call when set

	connects     []bool // the interactive argument of each connection
	calls        []string
	added        []api.Rule
	approved     []string
	removed      []string
	enabled      map[string]bool
	mode         string
	learnSeconds uint32
	imported     struct {
		format string
		data   []byte
		system bool
		req    api.ImportRequest
	}
	importSum    api.ImportSummary
	exportFormat string
	closed       int
}

func (f *fakeHelper) called(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.err
}

func (f *fakeHelper) Status(context.Context) (api.Status, error) { return f.status, f.called("Status") }
func (f *fakeHelper) SetMode(_ context.Context, m string) error {
	f.mode = m
	return f.called("SetMode")
}
func (f *fakeHelper) Learn(_ context.Context, seconds uint32) error {
	f.learnSeconds = seconds
	return f.called("Learn")
}
func (f *fakeHelper) Rules(context.Context) ([]api.Rule, error) { return f.rules, f.called("List") }
func (f *fakeHelper) AddRules(_ context.Context, rs []api.Rule) ([]string, error) {
	f.added = append(f.added, rs...)
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids, f.called("Add")
}
func (f *fakeHelper) RemoveRules(_ context.Context, ids []string) error {
	f.removed = append(f.removed, ids...)
	return f.called("Remove")
}
func (f *fakeHelper) Approve(_ context.Context, ids []string) error {
	f.approved = append(f.approved, ids...)
	return f.called("Approve")
}
func (f *fakeHelper) SetEnabled(_ context.Context, id string, on bool) error {
	if f.enabled == nil {
		f.enabled = map[string]bool{}
	}
	f.enabled[id] = on
	return f.called("SetEnabled")
}
func (f *fakeHelper) ImportFiles(_ context.Context, req api.ImportRequest) (api.ImportSummary, []string, error) {
	f.imported.format, f.imported.system, f.imported.req = req.Format, req.System, req
	if len(req.Files) > 0 {
		f.imported.data = req.Files[0].Data
	}
	return f.importSum, f.skipped, f.called("ImportFiles")
}
func (f *fakeHelper) Export(_ context.Context, format string) ([]byte, []string, error) {
	f.exportFormat = format
	return f.export, f.skipped, f.called("Export")
}
func (f *fakeHelper) Problems(context.Context) ([]api.Problem, error) {
	return f.problems, f.called("Problems")
}
func (f *fakeHelper) Flows(context.Context) ([]api.Flow, error) { return f.flows, f.called("Flows") }
func (f *fakeHelper) History(_ context.Context, q api.HistoryQuery) ([]api.HistoryEntry, error) {
	f.historyQuery = q
	return f.history, f.called("History")
}
func (f *fakeHelper) Traffic(context.Context, time.Time, time.Time, time.Duration) ([]api.TrafficBucket, error) {
	return f.traffic, f.called("Traffic")
}
func (f *fakeHelper) Close() error {
	f.closed++
	return nil
}

type fakeFile struct{ mode os.FileMode }

func (f fakeFile) Name() string       { return "" }
func (f fakeFile) Size() int64        { return 0 }
func (f fakeFile) Mode() os.FileMode  { return f.mode }
func (f fakeFile) ModTime() time.Time { return time.Time{} }
func (f fakeFile) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFile) Sys() any           { return nil }

// testNow is the fake clock: 2024-05-01 12:00:00 UTC.
var testNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// testEnv is an environment with a fake helper, fake files and a fixed clock, uid 1000 ("alice").
type testEnv struct {
	*env
	h        *fakeHelper
	out, err *bytes.Buffer
	files    map[string][]byte
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	te := &testEnv{h: &fakeHelper{}, out: &bytes.Buffer{}, err: &bytes.Buffer{}, files: map[string][]byte{}}
	te.env = &env{
		stdin: strings.NewReader(""), stdout: te.out, stderr: te.err,
		connect: func(interactive bool) (Helper, error) {
			te.h.connects = append(te.h.connects, interactive)
			return te.h, nil
		},
		now:   func() time.Time { return testNow },
		uid:   1000,
		getwd: func() (string, error) { return "/home/alice/src", nil },
		lookPath: func(file string) (string, error) {
			if file == "curl" {
				return "/usr/bin/curl", nil
			}
			return "", exec.ErrNotFound
		},
		lstat: func(name string) (os.FileInfo, error) {
			switch name {
			case "/usr/bin/curl", "/home/alice/src/app", "/opt/app":
				return fakeFile{}, nil
			}
			return nil, os.ErrNotExist
		},
		userName: func(uid uint32) string {
			return map[uint32]string{0: "root", 1000: "alice"}[uid]
		},
		readFile: func(name string) ([]byte, error) {
			if d, ok := te.files[name]; ok {
				return d, nil
			}
			return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
		},
		readDir: func(name string) ([]string, error) {
			var out []string
			for f := range te.files {
				if rest, ok := strings.CutPrefix(f, name+"/"); ok && !strings.Contains(rest, "/") {
					out = append(out, rest)
				}
			}
			if out == nil {
				return nil, &os.PathError{Op: "readdir", Path: name, Err: os.ErrNotExist}
			}
			return out, nil
		},
		writeFile: func(name string, data []byte) error {
			te.files[name] = data
			return nil
		},
	}
	return te
}

// run runs tattlectl with args and returns the exit status.
func (te *testEnv) run(args ...string) int {
	te.out.Reset()
	te.err.Reset()
	return run(context.Background(), args, te.env)
}
