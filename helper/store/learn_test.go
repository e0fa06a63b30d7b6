package store

import (
	"errors"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// Learning mode's end is kept on disk (it ends on time after a restart); settings saying learn cannot start it.
func TestLearnUntilPersistsAndCannotBeSetAsAMode(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	s, err := Open(Options{StateDir: dir, AdminDir: t.TempDir(), Logger: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Settings()
	st.Mode = api.ModeLearn
	if err := s.SetSettings(st); !errors.Is(err, ErrNotLearning) {
		t.Fatalf("settings with mode learn while not learning: %v", err)
	}
	until := now.Add(time.Minute)
	if err := s.Learn(until); err != nil {
		t.Fatal(err)
	}
	st = s.Settings()
	st.HistoryDays = 7 // the app saves settings read while learning: the period stays
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Options{StateDir: dir, AdminDir: t.TempDir(), Logger: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Settings(); got.Mode != api.ModeLearn || got.HistoryDays != 7 || !again.LearnUntil().Equal(until) {
		t.Fatalf("after reopening: %+v until %v, want learn until %v", got, again.LearnUntil(), until)
	}
	if err := again.SetMode(api.ModeAlert); err != nil || !again.LearnUntil().IsZero() || again.Settings().Mode != api.ModeAlert {
		t.Fatalf("back to alert: %v, until %v", err, again.LearnUntil())
	}
}
