package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Settings are the helper's own settings, kept in its state directory.
type Settings struct {
	Mode string `json:"mode"` // alert, silent-allow or silent-deny
}

// Modes lists the values Settings.Mode may hold.
func Modes() []string { return []string{"alert", "silent-allow", "silent-deny"} }

// defaultSettings are used until something is saved.
func defaultSettings() Settings { return Settings{Mode: "alert"} }

func validMode(m string) bool {
	for _, v := range Modes() {
		if m == v {
			return true
		}
	}
	return false
}

func (s *Store) settingsPath() string { return filepath.Join(s.stateDir, "settings.json") }

// Settings returns the saved settings (the defaults when none are saved, or when the file is unreadable,
// which is then listed in Problems).
func (s *Store) Settings() Settings {
	data, err := os.ReadFile(s.settingsPath())
	if errors.Is(err, os.ErrNotExist) {
		return defaultSettings()
	}
	var st Settings
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(&st)
		if err == nil && !validMode(st.Mode) {
			err = fmt.Errorf("mode %q is not one of %v", st.Mode, Modes())
		}
	}
	if err != nil {
		s.mu.Lock()
		s.problems[s.settingsPath()] = Problem{File: s.settingsPath(), Error: err.Error() + "; using the defaults", Since: s.now()}
		s.mu.Unlock()
		return defaultSettings()
	}
	return st
}

// SetMode saves the mode.
func (s *Store) SetMode(mode string) error {
	if !validMode(mode) {
		return fmt.Errorf("mode %q: use one of %v", mode, Modes())
	}
	st := s.Settings()
	st.Mode = mode
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.settingsPath(), append(data, '\n'), 0o600); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.problems, s.settingsPath())
	s.mu.Unlock()
	return nil
}
