package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// factoryState is factory.json in the state directory: the factory rules switched on or off through the API,
// by rule ID, where that differs from the shipped file. Keyed by ID, so the choice survives a package upgrade
// that changes the rule.
type factoryState struct {
	Version int             `json:"version"`
	Enabled map[string]bool `json:"enabled"`
}

func (s *Store) factoryStatePath() string { return filepath.Join(s.stateDir, factoryStateFile) }

// loadFactoryState reads factory.json. A file that does not parse is moved aside (kept for inspection) and
// named in Problems; the factory rules then apply as shipped.
func (s *Store) loadFactoryState() error {
	path := s.factoryStatePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var st factoryState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err = dec.Decode(&st); err == nil && st.Version != 1 {
		err = fmt.Errorf("version %d: this Tattle reads version 1", st.Version)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", path, s.now().Unix())
		if rnErr := os.Rename(path, aside); rnErr != nil {
			return fmt.Errorf("%s: %w; and it could not be moved aside: %v", path, err, rnErr)
		}
		msg := fmt.Sprintf("%s: %v (kept as %s); the factory rules apply as shipped", path, err, aside)
		s.log.Error("factory rule state refused", "error", msg)
		s.problems[path] = Problem{File: path, Error: msg, Since: s.now()}
		return nil
	}
	for id, on := range st.Enabled {
		s.factoryEnabled[id] = on
	}
	return nil
}

// IsFactory reports whether id is a factory rule in force (not replaced by an administrator's file).
func (s *Store) IsFactory(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.factoryRuleLocked(id)
	return ok
}

func (s *Store) factoryRuleLocked(id string) (shippedEnabled bool, ok bool) {
	for f, rs := range s.admin {
		if !s.isFactory(f) {
			continue
		}
		for _, r := range rs {
			if r.ID == id {
				return r.Enabled, true
			}
		}
	}
	return false, false
}

// SetFactoryEnabled switches the factory rule id on or off and remembers it (written atomically before the
// change is made). Any other rule gives ErrReadOnly or ErrNotFound.
func (s *Store) SetFactoryEnabled(id string, enabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	shipped, ok := s.factoryRuleLocked(id)
	if !ok {
		if i := s.userIndexLocked(id); i >= 0 {
			return fmt.Errorf("rule %q is not a factory rule", id)
		}
		return s.notFoundLocked(id)
	}
	next := make(map[string]bool, len(s.factoryEnabled)+1)
	for k, v := range s.factoryEnabled {
		next[k] = v
	}
	if enabled == shipped {
		delete(next, id)
	} else {
		next[id] = enabled
	}
	if err := s.persistFactoryState(next); err != nil {
		return err
	}
	s.factoryEnabled = next
	return nil
}

func (s *Store) persistFactoryState(enabled map[string]bool) error {
	// encoding/json writes map keys sorted, so the file is the same for the same state.
	data, err := json.MarshalIndent(factoryState{Version: 1, Enabled: enabled}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode factory rule state: %w", err)
	}
	return writeFileAtomic(s.factoryStatePath(), append(data, '\n'), 0o600)
}
