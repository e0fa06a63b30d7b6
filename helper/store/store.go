// Package store keeps Tattle's rules on disk and in memory: the rules users and prompts make (owned by the
// helper, in its state directory), the administrator's rule groups (read-only, /etc/tattle/rules.d/*.json,
// reloaded when they change) and the factory groups Tattle ships (read-only, share/tattle/rules.d/*.json; a
// file of the same name in the administrator's directory replaces one; each of their rules can be disabled,
// which the helper remembers in its state directory, but not deleted).
//
// Nothing is lost and nothing half-valid is used: a write replaces the file atomically and keeps the previous
// good version beside it; a file that does not parse or validate is refused with a message that names the file,
// rule and field, and the rules it held before stay in force until it is fixed.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tattlefw/tattle/shared/rules"
)

// Defaults of a system installation (DESIGN.md).
const (
	DefaultStateDir  = "/var/lib/tattle"
	DefaultAdminDir  = "/etc/tattle/rules.d"
	userRulesFile    = "rules.json"
	factoryStateFile = "factory.json"
)

// Source says where a rule lives.
type Source struct {
	File     string // the file holding it
	ReadOnly bool   // an administrator's or a factory group: changed by editing the file, not through the API
	// Factory: a group shipped with Tattle (Options.FactoryDir). Its rules can be disabled and enabled through
	// the API (remembered in the state directory), never deleted or edited.
	Factory bool
}

// Entry is one rule and its source.
type Entry struct {
	Rule   rules.Rule
	Source Source
}

// Problem is a rule file Tattle refused. The rules it held before (if any) stay in force.
type Problem struct {
	File  string
	Error string
	Since time.Time
}

// Options configure Open.
type Options struct {
	StateDir string // DefaultStateDir when empty
	AdminDir string // DefaultAdminDir when empty
	// FactoryDir holds the factory groups (*.json), read-only; "" for none. A file of the same name in AdminDir
	// replaces the factory file of that name.
	FactoryDir string
	Logger     *slog.Logger
	Now        func() time.Time
	// MaxRulesPerOwner bounds the user rules any one uid may own (0: no bound beyond the file's), so that one
	// account cannot fill the store for everyone.
	MaxRulesPerOwner int
}

// Store holds the rules. It is safe for concurrent use.
type Store struct {
	stateDir, adminDir string
	factoryDir         string
	log                *slog.Logger
	now                func() time.Time
	perOwner           int

	mu       sync.Mutex
	user     []rules.Rule
	admin    map[string][]rules.Rule // file path -> last good rules (administrators' and factory groups)
	problems map[string]Problem      // file path -> why it is refused now
	// factoryEnabled: factory rule ID -> the enabled state chosen through the API, where it differs from the
	// shipped file's (factory.json in the state directory).
	factoryEnabled map[string]bool
}

// Open loads the user rules and the administrator's rule groups.
func Open(opts Options) (*Store, error) {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.AdminDir == "" {
		opts.AdminDir = DefaultAdminDir
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		stateDir: opts.StateDir, adminDir: opts.AdminDir, factoryDir: opts.FactoryDir, log: opts.Logger, now: opts.Now,
		perOwner: opts.MaxRulesPerOwner, admin: map[string][]rules.Rule{}, problems: map[string]Problem{},
		factoryEnabled: map[string]bool{},
	}
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if err := s.loadUser(); err != nil {
		return nil, err
	}
	if err := s.loadFactoryState(); err != nil {
		return nil, err
	}
	s.ReloadAdmin()
	return s, nil
}

func (s *Store) userPath() string { return filepath.Join(s.stateDir, userRulesFile) }

// loadUser reads the helper-owned rules. A corrupted file is moved aside (never deleted) and the previous good
// copy is used instead.
func (s *Store) loadUser() error {
	path := s.userPath()
	f, err := readRuleFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		for _, r := range f.Rules {
			if durable(r) {
				s.user = append(s.user, r)
			} else {
				s.log.Warn("dropping a rule that was to last only until a restart", "rule", r.ID, "file", path)
			}
		}
		return nil
	}
	aside := fmt.Sprintf("%s.corrupt-%d", path, s.now().Unix())
	if rnErr := os.Rename(path, aside); rnErr != nil {
		return fmt.Errorf("%w; and it could not be moved aside: %v", err, rnErr)
	}
	s.log.Error("rule file refused; kept for inspection, using the previous good copy", "error", err, "kept_as", aside)
	s.problems[path] = Problem{File: path, Error: err.Error() + " (kept as " + aside + ")", Since: s.now()}
	backup, bErr := readRuleFile(path + ".bak")
	if bErr != nil {
		if !errors.Is(bErr, os.ErrNotExist) {
			s.log.Error("previous good copy is unusable too", "error", bErr)
		}
		return nil
	}
	s.user = backup.Rules
	// Restore the good copy as the current file, so the next start does not repeat this.
	return s.persistUser(s.user)
}

func readRuleFile(path string) (*rules.File, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > rules.MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes is larger than the limit of %d", path, info.Size(), rules.MaxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return rules.Parse(path, data)
}

// durable reports whether a rule outlives the helper: "until-restart", "until-quit" and "once" rules live in
// memory only.
func durable(r rules.Rule) bool {
	switch r.Duration {
	case rules.DurationUntilRestart, rules.DurationUntilQuit, rules.DurationOnce:
		return false
	}
	return true
}

// persistUser writes the durable user rules atomically, keeping the file it replaces as .bak.
func (s *Store) persistUser(all []rules.Rule) error {
	rs := make([]rules.Rule, 0, len(all))
	for _, r := range all {
		if durable(r) {
			rs = append(rs, r)
		}
	}
	data, err := rules.Marshal(&rules.File{Version: rules.FormatVersion, Rules: rs})
	if err != nil {
		return fmt.Errorf("encode rules: %w", err)
	}
	path := s.userPath()
	if old, err := os.ReadFile(path); err == nil {
		if _, perr := rules.Parse(path, old); perr == nil {
			if err := writeFileAtomic(path+".bak", old, 0o600); err != nil {
				return err
			}
		}
	}
	return writeFileAtomic(path, data, 0o600)
}

// Entries returns every rule: the factory groups first, then the administrator's (each by file name), then
// the user rules. A factory rule's Enabled is the state chosen through the API, if any.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	files := make([]string, 0, len(s.admin))
	for f := range s.admin {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool {
		if fi, fj := s.isFactory(files[i]), s.isFactory(files[j]); fi != fj {
			return fi
		}
		return files[i] < files[j]
	})
	for _, f := range files {
		factory := s.isFactory(f)
		for _, r := range s.admin[f] {
			if on, ok := s.factoryEnabled[r.ID]; ok && factory {
				r.Enabled = on
			}
			out = append(out, Entry{Rule: r, Source: Source{File: f, ReadOnly: true, Factory: factory}})
		}
	}
	for _, r := range s.user {
		out = append(out, Entry{Rule: r, Source: Source{File: s.userPath()}})
	}
	return out
}

// Problems lists the files currently refused.
func (s *Store) Problems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Problem, 0, len(s.problems))
	for _, p := range s.problems {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// ErrNotFound is returned for a rule ID that no user rule has.
var ErrNotFound = errors.New("no such rule")

// ErrReadOnly is returned for changes to an administrator's rule.
var ErrReadOnly = errors.New("the rule belongs to an administrator's rule group; edit its file instead")

// ErrFactory is returned for deleting or editing a factory rule: it can only be disabled (or its group
// replaced by the administrator's file of the same name).
var ErrFactory = errors.New("factory rules cannot be deleted or edited")

// ErrIDTaken: a new rule's id is already another rule's (or another in the same request).
var ErrIDTaken = errors.New("the id is already used; choose another")

// ErrTooMany: the rules would be more than one file may hold.
var ErrTooMany = errors.New("too many rules")

// Add validates and stores new user rules, all or none. IDs must be unique among all rules.
func (s *Store) Add(rs []rules.Rule) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.user)+len(rs) > rules.MaxRulesPerFile {
		return fmt.Errorf("adding %d rules would exceed the limit of %d user rules: %w", len(rs), rules.MaxRulesPerFile, ErrTooMany)
	}
	ids := s.idsLocked()
	for i := range rs {
		if err := rs[i].Validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
		if src, dup := ids[rs[i].ID]; dup {
			return fmt.Errorf("rule %d: id %q (%s): %w", i+1, rs[i].ID, src, ErrIDTaken)
		}
		ids[rs[i].ID] = "this request"
	}
	if s.perOwner > 0 {
		owned := map[uint32]int{}
		for _, r := range append(append([]rules.Rule(nil), s.user...), rs...) {
			if r.Owner == nil {
				continue
			}
			if owned[*r.Owner]++; owned[*r.Owner] > s.perOwner {
				return fmt.Errorf("user %d would own more than %d rules: %w", *r.Owner, s.perOwner, ErrQuota)
			}
		}
	}
	next := append(append([]rules.Rule(nil), s.user...), rs...)
	if err := s.persistUser(next); err != nil {
		return err
	}
	s.user = next
	return nil
}

// ErrChanged is returned when a rule changed between a caller's authorization and its change.
var ErrChanged = errors.New("the rule was changed meanwhile; look at it again and retry")

// ErrQuota is returned when a user would own more rules than allowed.
var ErrQuota = errors.New("remove some of that user's rules first")

// HasID reports whether any rule (a user's or an administrator's) has id.
func (s *Store) HasID(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.idsLocked()[id]
	return ok
}

// Update replaces the user rule with r.ID.
func (s *Store) Update(r rules.Rule) error {
	return s.Modify(r.ID, func(rules.Rule) (rules.Rule, error) { return r, nil })
}

// UserRule returns the user rule with id; an administrator's rule gives ErrReadOnly, an unknown id ErrNotFound.
func (s *Store) UserRule(id string) (rules.Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.userIndexLocked(id); i >= 0 {
		return s.user[i], nil
	}
	return rules.Rule{}, s.notFoundLocked(id)
}

// Modify replaces the user rule with id by what change makes of it, atomically: change sees the rule as it is
// at that moment (so a caller can check it is still what it authorized) and may refuse with an error.
func (s *Store) Modify(id string, change func(old rules.Rule) (rules.Rule, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.userIndexLocked(id)
	if i < 0 {
		return s.notFoundLocked(id)
	}
	r, err := change(s.user[i])
	if err != nil {
		return err
	}
	if r.ID != id {
		return fmt.Errorf("rule %q: the id cannot change (to %q)", id, r.ID)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	next := append([]rules.Rule(nil), s.user...)
	next[i] = r
	if err := s.persistUser(next); err != nil {
		return err
	}
	s.user = next
	return nil
}

// Remove deletes user rules by ID, all or none.
func (s *Store) Remove(ids []string) error {
	return s.RemoveIf(ids, func(rules.Rule) error { return nil })
}

// RemoveIf deletes user rules by ID, all or none, after check accepted each as it is at that moment.
func (s *Store) RemoveIf(ids []string, check func(rules.Rule) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	drop := map[string]bool{}
	for _, id := range ids {
		i := s.userIndexLocked(id)
		if i < 0 {
			return s.notFoundLocked(id)
		}
		if err := check(s.user[i]); err != nil {
			return err
		}
		drop[id] = true
	}
	next := make([]rules.Rule, 0, len(s.user))
	for _, r := range s.user {
		if !drop[r.ID] {
			next = append(next, r)
		}
	}
	if err := s.persistUser(next); err != nil {
		return err
	}
	s.user = next
	return nil
}

func (s *Store) idsLocked() map[string]string {
	ids := map[string]string{}
	for f, rs := range s.admin {
		for _, r := range rs {
			ids[r.ID] = f
		}
	}
	for _, r := range s.user {
		ids[r.ID] = s.userPath()
	}
	return ids
}

func (s *Store) userIndexLocked(id string) int {
	for i, r := range s.user {
		if r.ID == id {
			return i
		}
	}
	return -1
}

func (s *Store) notFoundLocked(id string) error {
	for f, rs := range s.admin {
		for _, r := range rs {
			if r.ID == id && s.isFactory(f) {
				return fmt.Errorf("rule %q (%s): %w; disable it instead (tattlectl rules disable %s), or replace its group with a file named %s in %s",
					id, f, ErrFactory, id, filepath.Base(f), s.adminDir)
			}
			if r.ID == id {
				return fmt.Errorf("rule %q (%s): %w", id, f, ErrReadOnly)
			}
		}
	}
	return fmt.Errorf("rule %q: %w", id, ErrNotFound)
}

// ReloadAdmin rereads the administrator's rule groups. A file that fails keeps its previous good rules and is
// listed in Problems; a deleted file's rules go. It reports whether the rules in force changed.
func (s *Store) ReloadAdmin() bool {
	paths, err := filepath.Glob(filepath.Join(s.adminDir, "*.json"))
	if err != nil {
		s.log.Error("list rule groups", "dir", s.adminDir, "error", err)
		return false
	}
	if s.factoryDir != "" {
		factory, err := filepath.Glob(filepath.Join(s.factoryDir, "*.json"))
		if err != nil {
			s.log.Error("list factory rule groups", "dir", s.factoryDir, "error", err)
			return false
		}
		// The administrator's file of the same name replaces a factory file, even while it is refused (its
		// last good rules, if any, stay in force): the administrator meant that group to be theirs.
		overridden := map[string]bool{}
		for _, p := range paths {
			overridden[filepath.Base(p)] = true
		}
		for _, p := range factory {
			if !overridden[filepath.Base(p)] {
				paths = append(paths, p)
			}
		}
	}
	loaded := map[string][]rules.Rule{}
	failed := map[string]error{}
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".") {
			continue
		}
		f, err := readRuleFile(p)
		if err != nil {
			failed[p] = err
			continue
		}
		loaded[p] = f.Rules
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	next := map[string][]rules.Rule{}
	for p, rs := range loaded {
		next[p] = rs
		if !sameRules(s.admin[p], rs) {
			changed = true
		}
		delete(s.problems, p)
	}
	for p, err := range failed {
		if old, ok := s.admin[p]; ok {
			next[p] = old // keep the last good rules of a file that broke
		}
		if prev, ok := s.problems[p]; !ok || prev.Error != err.Error() {
			s.log.Error("rule group refused; its previous rules stay in force", "error", err)
			s.problems[p] = Problem{File: p, Error: err.Error(), Since: s.now()}
		}
	}
	for p := range s.admin {
		if _, ok := next[p]; !ok {
			changed = true // deleted
		}
	}
	for p := range s.problems {
		if _, ok := failed[p]; !ok && p != s.userPath() && p != s.factoryStatePath() {
			if _, exists := loaded[p]; !exists {
				delete(s.problems, p) // a refused file that is gone is no longer a problem
			}
		}
	}
	if dup := duplicateIDs(next, s.user); dup != "" {
		s.log.Error("rule groups share a rule ID; rules are still enforced, but the API cannot address them apart", "id", dup)
	}
	s.admin = next
	return changed
}

// isFactory reports whether the group file at path is a factory group.
func (s *Store) isFactory(path string) bool {
	return s.factoryDir != "" && filepath.Dir(path) == filepath.Clean(s.factoryDir)
}

func sameRules(a, b []rules.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}

func duplicateIDs(admin map[string][]rules.Rule, user []rules.Rule) string {
	seen := map[string]bool{}
	for _, rs := range admin {
		for _, r := range rs {
			if seen[r.ID] {
				return r.ID
			}
			seen[r.ID] = true
		}
	}
	for _, r := range user {
		if seen[r.ID] {
			return r.ID
		}
	}
	return ""
}

// WatchAdmin reloads the administrator's rule groups when their directory changes and calls changed when the
// rules in force did. It returns when ctx ends.
func (s *Store) WatchAdmin(ctx context.Context, changed func()) error {
	if err := os.MkdirAll(s.adminDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.adminDir, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.adminDir, err)
	}
	defer w.Close()
	if err := w.Add(s.adminDir); err != nil {
		return fmt.Errorf("watch %s: %w", s.adminDir, err)
	}
	// The factory directory changes when the package is upgraded; it is the package's to create.
	if s.factoryDir != "" {
		if err := w.Add(s.factoryDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("factory rule groups are not watched; they are read at start", "dir", s.factoryDir, "error", err)
		}
	}
	// Editors save through temporary files and renames: settle for a moment before reading.
	const settle = 150 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	if s.ReloadAdmin() {
		changed()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if strings.HasSuffix(ev.Name, ".json") {
				timer.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("watching rule groups", "error", err)
			timer.Reset(settle) // events may have been lost: reread everything
		case <-timer.C:
			if s.ReloadAdmin() {
				changed()
			}
		}
	}
}
