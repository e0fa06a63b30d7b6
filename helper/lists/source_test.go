package lists

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

// listServer serves whatever body the test sets, on 127.0.0.1, with an ETag so unchanged lists are not
// downloaded again.
type listServer struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	body     string
	requests int
	notMod   int
}

func newListServer(t *testing.T) *listServer {
	s := &listServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests++
		if s.status != http.StatusOK {
			http.Error(w, "list server is down", s.status)
			return
		}
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(s.body)))
		if r.Header.Get("If-None-Match") == etag {
			s.notMod++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write([]byte(s.body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func TestURLRefresh(t *testing.T) {
	srv := newListServer(t)
	state := t.TempDir()
	ctx := context.Background()
	n, err := New(Config{Name: "ads", Location: srv.URL + "/ads.txt", StateDir: state, Limits: Limits{MaxBytes: 1 << 20, MaxEntries: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Contains("ads.example.com") || n.List().Len() != 0 {
		t.Fatal("a list contains something before it was loaded")
	}

	srv.set(http.StatusOK, hostsFile)
	if err := n.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if !n.Contains("www.ads.example.com") || st.Entries != 4 || st.From != "url" || st.LastError != nil {
		t.Fatalf("after the first download: %+v", st)
	}
	cached, err := os.ReadFile(filepath.Join(state, "lists", "ads.list"))
	if err != nil || string(cached) != hostsFile {
		t.Fatalf("cache file: %v, %q", err, cached)
	}

	// Unchanged: the server says so and nothing is parsed again.
	if err := n.Refresh(ctx); err != nil || srv.notMod != 1 {
		t.Fatalf("unchanged refresh: %v, %d not-modified answers", err, srv.notMod)
	}

	// A bad version (an error page served with 200), a version over the limits and a failing server each
	// leave the good list in use and say why.
	for label, set := range map[string]func(){
		"an HTML page":   func() { srv.set(http.StatusOK, "<html>\n<body>\n<p>Sorry</p>\n</body>\n</html>\n") },
		"a huge list":    func() { srv.set(http.StatusOK, strings.Repeat("0.0.0.0 x.example\n", 70_000)) },
		"too many names": func() { srv.set(http.StatusOK, string(domains(1001))) },
		"a server error": func() { srv.set(http.StatusInternalServerError, "") },
	} {
		set()
		before := time.Now()
		err := n.Refresh(ctx)
		st := n.Status()
		if err == nil || st.LastError == nil || st.LastErrorTime.Before(before) {
			t.Errorf("%s: refresh error %v, status %+v", label, err, st)
		}
		if !n.Contains("ads.example.com") || st.Entries != 4 {
			t.Errorf("%s replaced the good list: %+v", label, st)
		}
		if c, _ := os.ReadFile(filepath.Join(state, "lists", "ads.list")); string(c) != hostsFile {
			t.Errorf("%s replaced the cached copy", label)
		}
	}

	// A changed good version is swapped in whole and clears the error.
	srv.set(http.StatusOK, plainList)
	if err := n.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st = n.Status()
	if n.Contains("ads.example.com") || !n.Contains("evil.example") || !n.ContainsAddr(netip.MustParseAddr("198.51.100.9")) || st.LastError != nil || st.Entries != 7 {
		t.Fatalf("after the change: %+v", st)
	}
}

// TestCacheAtStart: a helper that starts while the list's URL fails uses the copy cached by an earlier run.
func TestCacheAtStart(t *testing.T) {
	srv := newListServer(t)
	state := t.TempDir()
	ctx := context.Background()
	cfg := Config{Name: "ads", Location: srv.URL + "/ads.txt", StateDir: state}
	srv.set(http.StatusOK, hostsFile)
	first, _ := New(cfg)
	if err := first.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	srv.set(http.StatusServiceUnavailable, "")
	second, _ := New(cfg) // the helper restarted
	err := second.Refresh(ctx)
	st := second.Status()
	if err == nil || st.LastError == nil || !strings.Contains(st.LastError.Error(), "503") {
		t.Fatalf("refresh against a failing server: %v, %+v", err, st)
	}
	if st.From != "cache" || st.Entries != 4 || !second.Contains("ads.example.com") {
		t.Fatalf("cache not used at start: %+v", st)
	}

	// With neither a server nor a cache there is no list, and the error says why.
	empty, _ := New(Config{Name: "other", Location: srv.URL + "/other.txt", StateDir: state})
	if err := empty.Refresh(ctx); err == nil || empty.List().Len() != 0 || empty.Status().From != "" {
		t.Fatalf("no source: %v %+v", err, empty.Status())
	}
}

// TestFileRun: a list read from a file is reloaded by Run when the file changes, and Run stops with its
// context.
func TestFileRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.txt")
	if err := os.WriteFile(path, []byte("one.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Name: "blocked", Location: path, Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	waitFor(t, func() bool { return n.Contains("one.example") })
	if err := os.WriteFile(path, []byte("two.example\n10.0.0.0/8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.Contains("two.example") && !n.Contains("one.example") })
	if st := n.Status(); st.From != "file" || st.Entries != 2 {
		t.Fatalf("status %+v", st)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "x", Location: "relative/path"},
		{Name: "x", Location: "ftp://example.test/list"},
		{Name: "../x", Location: "/etc/hosts"},
		{Name: "", Location: "/etc/hosts"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestSetWithRules: a Set is what rules.Compiled.Matches takes for "list:" remotes; a rule on a list
// matches a flow by its host names and by its address.
func TestSetWithRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ads.txt")
	os.WriteFile(path, []byte(plainList), 0o644)
	n, _ := New(Config{Name: "ads", Location: path})
	if err := n.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSet(n, n); err == nil {
		t.Error("a set with the same list twice was made")
	}
	c, err := rules.Compile(rules.Rule{ID: "block-ads", Application: rules.Any, Remote: "list:ads", Port: rules.Any,
		Protocol: rules.Any, Action: rules.ActionDeny, Duration: rules.DurationForever, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	flow := func(addr string, names ...string) rules.Flow {
		return rules.Flow{Addr: netip.MustParseAddr(addr), Hostnames: names, Port: 443, Proto: rules.ProtocolTCP}
	}
	for _, tc := range []struct {
		f    rules.Flow
		want bool
	}{
		{flow("203.0.113.5", "cdn.evil.example"), true},
		{flow("203.0.113.5", "good.example"), false},
		{flow("198.51.100.77"), true},
		{flow("198.51.100.77", "good.example"), true},
		{flow("203.0.113.5"), false},
	} {
		if got := c.Matches(tc.f, set.Lookup, now); got != tc.want {
			t.Errorf("%+v: matches %v, want %v", tc.f, got, tc.want)
		}
	}
	if set.Lookup("unknown", "evil.example", netip.Addr{}) {
		t.Error("an unknown list matched")
	}
}
