package history

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// The app's search matches the executable, the script, the host name and the destination, and nothing else.
func TestQueryText(t *testing.T) {
	h, err := Open(filepath.Join(t.TempDir(), "history.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	now := time.Now()
	for _, d := range []Decision{
		{Time: now, App: "/usr/bin/firefox-esr", Dest: "192.0.2.1:443", Host: "www.example.org", Proto: "tcp", Verdict: "allow"},
		{Time: now, App: "/usr/bin/python3.11", Via: "/home/ann/sync-photos.py", Dest: "192.0.2.2:443", Proto: "tcp", Verdict: "deny"},
		{Time: now, App: "/usr/bin/curl", Dest: "198.51.100.7:80", Proto: "tcp", Verdict: "undecided", Rule: "firefox-like-rule"},
	} {
		h.Record(d)
	}
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"firefox":       "/usr/bin/firefox-esr", // the rule id of curl's entry mentions it too: not searched
		"sync-photos":   "/usr/bin/python3.11",
		"example.org":   "/usr/bin/firefox-esr",
		"198.51.100.7:": "/usr/bin/curl",
	} {
		got, err := h.Query(context.Background(), Filter{Text: text})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].App != want {
			t.Errorf("search %q found %+v, want only %s", text, got, want)
		}
	}
	if got, _ := h.Query(context.Background(), Filter{Text: "nothing-like-it"}); len(got) != 0 {
		t.Errorf("a search matching nothing found %+v", got)
	}
}
