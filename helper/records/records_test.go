package records

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

func TestFields(t *testing.T) {
	w := New(Options{UserName: func(uid uint32) string { return "alice" }})
	at := time.Unix(1700000000, 123456000)
	msg, prio, v := w.Fields(Decision{Time: at, App: "/usr/bin/python3.11", Via: "/home/alice/sync.py", UID: 1000,
		Dest: "192.0.2.7:443", Host: "photos.example", Proto: "tcp", Verdict: "deny", Rule: "no-sync"})
	want := map[string]string{"TATTLE_APP": "/usr/bin/python3.11", "TATTLE_VIA": "/home/alice/sync.py", "TATTLE_UID": "1000",
		"TATTLE_USER": "alice", "TATTLE_DEST": "192.0.2.7:443", "TATTLE_HOST": "photos.example", "TATTLE_PROTO": "tcp",
		"TATTLE_VERDICT": "deny", "TATTLE_RULE": "no-sync", "TATTLE_TIME_USEC": "1700000000123456", "SYSLOG_IDENTIFIER": "tattled"}
	for k, x := range want {
		if v[k] != x {
			t.Errorf("%s = %q, want %q", k, v[k], x)
		}
	}
	if len(v) != len(want) {
		t.Errorf("fields %v, want %v", v, want)
	}
	if prio != journal.PriNotice {
		t.Errorf("a denial's priority %v, want notice", prio)
	}
	if wantMsg := "tcp denied: /home/alice/sync.py via /usr/bin/python3.11 to photos.example (192.0.2.7:443) run by alice, rule no-sync"; msg != wantMsg {
		t.Errorf("message %q, want %q", msg, wantMsg)
	}
	_, _, v = w.Fields(Decision{App: "/usr/bin/curl", Dest: "192.0.2.7:80", Proto: "tcp", Verdict: "allow", Rule: "default"})
	if _, ok := v["TATTLE_VIA"]; ok {
		t.Error("TATTLE_VIA set for a program that runs no script")
	}
	if _, ok := v["TATTLE_HOST"]; ok {
		t.Error("TATTLE_HOST set with no name known")
	}
}

// A flood never blocks the decision path: a full queue drops and counts.
func TestRecordNeverBlocks(t *testing.T) {
	w := New(Options{Queue: 4})
	done := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ {
			w.Record(Decision{App: "/usr/bin/curl"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked with nobody sending")
	}
	if w.Dropped() != 996 || w.Queued() != 4 {
		t.Errorf("dropped %d, queued %d; want 996 and 4", w.Dropped(), w.Queued())
	}
}

// What is queued when the helper stops is still sent; Run returns.
func TestRunDrainsOnStop(t *testing.T) {
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	w := New(Options{Queue: 16, Send: func(msg string, _ journal.Priority, v map[string]string) error {
		<-block
		mu.Lock()
		got = append(got, v["TATTLE_APP"])
		mu.Unlock()
		return nil
	}})
	for _, a := range []string{"a", "b", "c"} {
		w.Record(Decision{App: a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(stopped)
	}()
	cancel()
	close(block)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if len(got) != 3 || w.Sent() != 3 {
		t.Errorf("sent %v (%d), want a, b, c", got, w.Sent())
	}
}
