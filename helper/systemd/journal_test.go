package systemd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type entry struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

func TestJournalHandlerFields(t *testing.T) {
	var got []entry
	send := func(m string, p journal.Priority, f map[string]string) error {
		got = append(got, entry{m, p, f})
		return nil
	}
	log := slog.New(NewJournalHandler(slog.LevelInfo, send, nil))
	log.With("backend", "lsm").WithGroup("hold").Warn("queue full", "queue", 7, slog.Group("peer", "addr", "127.0.0.1"),
		"error", errors.New("no buffer space"), "bad-key", "x", "_PID", "1")
	log.Debug("not shown")
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1 (debug is below the level)", len(got))
	}
	e := got[0]
	if e.msg != "queue full" || e.pri != journal.PriWarning {
		t.Fatalf("message/priority: %q %d", e.msg, e.pri)
	}
	want := map[string]string{
		"BACKEND": "lsm", "HOLD_QUEUE": "7", "HOLD_PEER_ADDR": "127.0.0.1", "HOLD_ERROR": "no buffer space",
		"HOLD_BAD_KEY": "x", "HOLD_PID": "1", "SYSLOG_IDENTIFIER": "tattled",
	}
	for k, v := range want {
		if e.fields[k] != v {
			t.Errorf("field %s = %q, want %q (all: %v)", k, e.fields[k], v, e.fields)
		}
	}
	if !strings.HasSuffix(e.fields["CODE_FILE"], "journal_test.go") || e.fields["CODE_LINE"] == "" {
		t.Errorf("source fields: %v", e.fields)
	}
	for k := range e.fields {
		if strings.HasPrefix(k, "_") {
			t.Errorf("field %s would claim to be one of the journal's trusted fields", k)
		}
	}
}

// A record the journal refuses is written by the fallback handler instead of being lost.
func TestJournalHandlerFallsBack(t *testing.T) {
	var buf bytes.Buffer
	send := func(string, journal.Priority, map[string]string) error { return errors.New("journal socket gone") }
	log := slog.New(NewJournalHandler(slog.LevelInfo, send, slog.NewTextHandler(&buf, nil)))
	log.Error("rules could not be applied", "rule", "r1")
	if !strings.Contains(buf.String(), "rules could not be applied") || !strings.Contains(buf.String(), "rule=r1") {
		t.Fatalf("fallback got %q", buf.String())
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"pin_dir": "PIN_DIR", "9lives": "F_9LIVES", "__x": "X", "": "F_",
		"événement": "V_NEMENT"} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}
