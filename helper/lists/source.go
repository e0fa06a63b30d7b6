package lists

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one named list.
type Config struct {
	Name     string        // the NAME of "list:NAME"
	Location string        // an absolute file path, or an http:// or https:// URL
	StateDir string        // where the last good download is cached (a "lists" directory is made in it)
	Refresh  time.Duration // how often Run reloads; 0 means 24 h for URLs and 1 min for files
	Limits   Limits        //
	Client   *http.Client  // for URLs; nil means one with a 2-minute timeout
}

// Status is what the UI shows about a list.
type Status struct {
	Name, Location string
	Entries        int       // entries of the list in use
	Loaded         time.Time // when the list in use was loaded; zero if none is
	From           string    // where the list in use came from: "file", "url" or "cache"; "" if none
	LastAttempt    time.Time // the last load attempt
	LastError      error     // why the last attempt failed; nil if it worked
	LastErrorTime  time.Time //
	Skipped        int       // unreadable lines in the list in use
}

// Named is one named list kept up to date. Its lookups read the current version without locking; a reload
// builds a complete new version and swaps it in, so a lookup never sees half a list, and a failed reload
// leaves the previous version in use.
type Named struct {
	cfg    Config
	isURL  bool
	client *http.Client
	cur    atomic.Pointer[List]

	loadMu  sync.Mutex // serializes loads; guards etag and lastMod
	etag    string
	lastMod string
	mu      sync.Mutex // guards status, held briefly so Status never waits for a download
	status  Status
}

// New checks cfg and returns the list, empty until the first Refresh or Run.
func New(cfg Config) (*Named, error) {
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, "/\\") || cfg.Name == "." || cfg.Name == ".." {
		return nil, fmt.Errorf("list name %q: use letters, digits, '.', '_' and '-'", cfg.Name)
	}
	n := &Named{cfg: cfg, status: Status{Name: cfg.Name, Location: cfg.Location}}
	switch {
	case strings.HasPrefix(cfg.Location, "http://"), strings.HasPrefix(cfg.Location, "https://"):
		if _, err := url.Parse(cfg.Location); err != nil {
			return nil, fmt.Errorf("list %s: bad URL: %w", cfg.Name, err)
		}
		n.isURL = true
	case filepath.IsAbs(cfg.Location):
	default:
		return nil, fmt.Errorf("list %s: location %q is neither an absolute file path nor an http(s) URL", cfg.Name, cfg.Location)
	}
	if n.cfg.Refresh <= 0 {
		n.cfg.Refresh = time.Minute
		if n.isURL {
			n.cfg.Refresh = 24 * time.Hour
		}
	}
	n.client = cfg.Client
	if n.client == nil {
		n.client = &http.Client{Timeout: 2 * time.Minute}
	}
	n.cfg.Limits = cfg.Limits.withDefaults()
	return n, nil
}

// List is the version in use (empty before the first good load).
func (n *Named) List() *List {
	if l := n.cur.Load(); l != nil {
		return l
	}
	return &List{}
}

// Contains reports whether the list in use covers name (the entry or a domain above it).
func (n *Named) Contains(name string) bool { return n.cur.Load().Contains(name) }

// ContainsAddr reports whether the list in use covers addr.
func (n *Named) ContainsAddr(addr netip.Addr) bool { return n.cur.Load().ContainsAddr(addr) }

// Status reports the list's state.
func (n *Named) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}

func (n *Named) cachePath() string {
	return filepath.Join(n.cfg.StateDir, "lists", n.cfg.Name+".list")
}

// Refresh loads the list now. On success the new version replaces the one in use (and, for a URL, is
// cached on disk). On failure the version in use stays, the error is recorded in Status and returned; if no
// version is in use yet, the cached copy of an earlier download is loaded instead (Status.From "cache").
func (n *Named) Refresh(ctx context.Context) error {
	n.loadMu.Lock()
	defer n.loadMu.Unlock()
	now := time.Now()
	l, from, err := n.load(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status.LastAttempt = now
	if err == nil && l == nil { // not modified since the last download
		n.status.LastError = nil
		return nil
	}
	if err != nil {
		err = fmt.Errorf("list %s from %s: %w", n.cfg.Name, n.cfg.Location, err)
		n.status.LastError, n.status.LastErrorTime = err, now
		if n.cur.Load() == nil && n.isURL {
			if cl, cerr := n.loadCache(); cerr == nil {
				n.use(cl, "cache", now)
				slog.Warn("list download failed; using the cached copy", "list", n.cfg.Name, "err", err, "entries", cl.Len())
			}
		}
		return err
	}
	n.use(l, from, now)
	n.status.LastError = nil
	return nil
}

// use swaps l in; n.mu is held.
func (n *Named) use(l *List, from string, now time.Time) {
	n.cur.Store(l)
	n.status.Entries, n.status.Loaded, n.status.From = l.Len(), now, from
	n.status.Skipped, _ = l.Skipped()
}

// load reads and parses the list from its location; a nil list with no error means unchanged (HTTP 304).
func (n *Named) load(ctx context.Context) (*List, string, error) {
	if !n.isURL {
		data, err := readLimited(n.cfg.Location, n.cfg.Limits.MaxBytes)
		if err != nil {
			return nil, "", err
		}
		l, err := Parse(data, n.cfg.Limits)
		return l, "file", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.cfg.Location, nil)
	if err != nil {
		return nil, "", err
	}
	if n.cur.Load() != nil { // validators only help when there is a version to keep
		if n.etag != "" {
			req.Header.Set("If-None-Match", n.etag)
		}
		if n.lastMod != "" {
			req.Header.Set("If-Modified-Since", n.lastMod)
		}
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && n.cur.Load() != nil {
		return nil, "", nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("download: server answered %s", resp.Status)
	}
	if resp.ContentLength > n.cfg.Limits.MaxBytes {
		return nil, "", fmt.Errorf("download: list is %d bytes, more than the limit of %d", resp.ContentLength, n.cfg.Limits.MaxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, n.cfg.Limits.MaxBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("download: %w", err)
	}
	if int64(len(data)) > n.cfg.Limits.MaxBytes {
		return nil, "", fmt.Errorf("download: list is more than the limit of %d bytes", n.cfg.Limits.MaxBytes)
	}
	l, err := Parse(data, n.cfg.Limits)
	if err != nil {
		return nil, "", err
	}
	// Only a good list is cached: the cache is what the helper falls back to.
	if n.cfg.StateDir != "" {
		if err := writeFileAtomic(n.cachePath(), data, 0o600); err != nil {
			slog.Warn("could not cache a downloaded list", "list", n.cfg.Name, "err", err)
		}
	}
	n.etag, n.lastMod = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return l, "url", nil
}

func (n *Named) loadCache() (*List, error) {
	if n.cfg.StateDir == "" {
		return nil, errors.New("no state directory")
	}
	data, err := readLimited(n.cachePath(), n.cfg.Limits.MaxBytes)
	if err != nil {
		return nil, err
	}
	return Parse(data, n.cfg.Limits)
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is more than the limit of %d bytes", path, max)
	}
	return data, nil
}

// Run loads the list at once and then every Config.Refresh until ctx ends; failures are recorded in Status
// and logged, and the version in use stays. It returns ctx's error.
func (n *Named) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Refresh)
	defer t.Stop()
	for {
		if err := n.Refresh(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("list not refreshed; keeping the version in use", "list", n.cfg.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// writeFileAtomic replaces path with data so that a crash leaves the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: flush: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Set is the named lists rules can refer to. Its Lookup has the shape of rules.ListLookup.
type Set struct {
	lists map[string]*Named
}

// NewSet makes a set of lists; names must be unique.
func NewSet(lists ...*Named) (*Set, error) {
	s := &Set{lists: make(map[string]*Named, len(lists))}
	for _, l := range lists {
		if _, dup := s.lists[l.cfg.Name]; dup {
			return nil, fmt.Errorf("list %s is defined twice", l.cfg.Name)
		}
		s.lists[l.cfg.Name] = l
	}
	return s, nil
}

// Get returns the named list, or nil.
func (s *Set) Get(name string) *Named { return s.lists[name] }

// Lookup reports whether the named list covers host (when not "") or addr. An unknown list covers nothing.
func (s *Set) Lookup(list, host string, addr netip.Addr) bool {
	n := s.lists[list]
	if n == nil {
		return false
	}
	return (host != "" && n.Contains(host)) || n.ContainsAddr(addr)
}
