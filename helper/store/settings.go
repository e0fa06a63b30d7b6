package store

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// settingsFile is the on-disk form of api.Settings; fields missing from an older file take their defaults.
type settingsFile struct {
	Mode            string `json:"mode"`
	DefaultAction   string `json:"default_action,omitempty"`
	QuestionTimeout uint32 `json:"question_timeout,omitempty"`
	FailPolicy      string `json:"fail_policy,omitempty"`
	HistoryDays     uint32 `json:"history_days,omitempty"`
	SystemDefault   string `json:"system_default,omitempty"`
	Protected       bool   `json:"protected,omitempty"`
	GUIScripting    bool   `json:"allow_gui_scripting,omitempty"`
	// LearnUntil (Unix seconds) is when learning mode ends, kept so that it ends on time across restarts.
	LearnUntil int64 `json:"learn_until,omitempty"`
}

// DefaultSettings are used until something is saved.
func DefaultSettings() api.Settings {
	return api.Settings{Mode: api.ModeAlert, DefaultAction: api.DefaultDeny, QuestionTimeout: 30,
		FailPolicy: api.FailPass, HistoryDays: 30, SystemDefault: api.DefaultAllow}
}

// ValidateSettings checks every field (api.ValidateSettings, the contract's one list of values); its error
// names the field and the values it may take.
func ValidateSettings(st api.Settings) error { return api.ValidateSettings(st) }

func (s *Store) settingsPath() string { return filepath.Join(s.stateDir, "settings.json") }

// Settings returns the saved settings (the defaults when none are saved, or when the file is unreadable,
// which is then listed in Problems).
func (s *Store) Settings() api.Settings {
	st, _ := s.settings()
	return st
}

// LearnUntil is when learning mode ends; zero when the mode is not learn.
func (s *Store) LearnUntil() time.Time {
	st, until := s.settings()
	if st.Mode != api.ModeLearn {
		return time.Time{}
	}
	return until
}

func (s *Store) settings() (api.Settings, time.Time) {
	data, err := os.ReadFile(s.settingsPath())
	if errors.Is(err, os.ErrNotExist) {
		return DefaultSettings(), time.Time{}
	}
	st := DefaultSettings()
	var until time.Time
	if err == nil {
		var f settingsFile
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err = dec.Decode(&f); err == nil {
			st.Mode = f.Mode
			// A setting the file leaves out (omitempty: the zero value) keeps its default.
			st.DefaultAction = cmp.Or(f.DefaultAction, st.DefaultAction)
			st.QuestionTimeout = cmp.Or(f.QuestionTimeout, st.QuestionTimeout)
			st.FailPolicy = cmp.Or(f.FailPolicy, st.FailPolicy)
			st.HistoryDays = cmp.Or(f.HistoryDays, st.HistoryDays)
			st.SystemDefault = cmp.Or(f.SystemDefault, st.SystemDefault)
			st.Protected, st.AllowGUIScripting = f.Protected, f.GUIScripting
			err = ValidateSettings(st)
			if err == nil && st.Mode == api.ModeLearn {
				if f.LearnUntil <= 0 {
					err = fmt.Errorf("mode learn without learn_until")
				}
				until = time.Unix(f.LearnUntil, 0)
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		s.problems[s.settingsPath()] = Problem{File: s.settingsPath(), Error: err.Error() + "; using the defaults", Since: s.now()}
		s.mu.Unlock()
		return DefaultSettings(), time.Time{}
	}
	return st, until
}

// ErrNotLearning refuses settings that say learn when learning mode is not on: it is started for a time.
var ErrNotLearning = errors.New("learning mode is started for a time (tattlectl learn DURATION), not set as a mode")

// Learn starts learning mode until the given time, keeping the other settings.
func (s *Store) Learn(until time.Time) error {
	st, _ := s.settings()
	st.Mode = api.ModeLearn
	end := until.Unix()
	if until.Nanosecond() > 0 {
		end++ // kept in whole seconds: never shorter than asked
	}
	return s.saveSettings(st, end)
}

// SetSettings validates and saves the settings whole: an invalid value changes nothing. Mode learn keeps the
// current learning period (settings read while learning come back with it); it cannot start one.
func (s *Store) SetSettings(st api.Settings) error {
	if err := ValidateSettings(st); err != nil {
		return err
	}
	var until int64
	if st.Mode == api.ModeLearn {
		u := s.LearnUntil()
		if u.IsZero() || !u.After(s.now()) {
			return ErrNotLearning
		}
		until = u.Unix()
	}
	return s.saveSettings(st, until)
}

func (s *Store) saveSettings(st api.Settings, learnUntil int64) error {
	if st.SystemDefault == "" {
		st.SystemDefault = api.DefaultAllow // clients older than the setting send none
	}
	data, err := json.MarshalIndent(settingsFile{Mode: st.Mode, DefaultAction: st.DefaultAction,
		QuestionTimeout: st.QuestionTimeout, FailPolicy: st.FailPolicy, HistoryDays: st.HistoryDays,
		SystemDefault: st.SystemDefault, Protected: st.Protected, GUIScripting: st.AllowGUIScripting,
		LearnUntil: learnUntil}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.settingsPath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	s.mu.Lock()
	delete(s.problems, s.settingsPath())
	s.mu.Unlock()
	return nil
}

// SetMode saves the mode, keeping the other settings.
func (s *Store) SetMode(mode string) error {
	st := s.Settings()
	st.Mode = mode
	return s.SetSettings(st)
}
