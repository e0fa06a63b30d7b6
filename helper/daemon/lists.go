package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/tattlefw/tattle/helper/lists"
)

// DefaultListsDir holds the administrator's list definitions: NAME.json names the list "list:NAME".
const DefaultListsDir = "/etc/tattle/lists.d"

// listFile is one list definition: where the list comes from and how often it is reloaded.
type listFile struct {
	Location string `json:"location"`          // an absolute file path or an http(s) URL
	Refresh  string `json:"refresh,omitempty"` // a Go duration ("6h"); default 24h for URLs, 1m for files
}

// ReadListConfigs reads the list definitions in dir. A broken definition is reported and left out; the others
// load.
func ReadListConfigs(dir, stateDir string) ([]lists.Config, []error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("read list definitions: %w", err)}
	}
	var cfgs []lists.Config
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("list definition %s: %w", path, err))
			continue
		}
		var f listFile
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			errs = append(errs, fmt.Errorf("list definition %s: %w", path, err))
			continue
		}
		cfg := lists.Config{Name: strings.TrimSuffix(e.Name(), ".json"), Location: f.Location, StateDir: stateDir}
		if f.Refresh != "" {
			d, err := time.ParseDuration(f.Refresh)
			if err != nil || d < time.Second {
				errs = append(errs, fmt.Errorf("list definition %s: refresh %q: give a duration such as 6h", path, f.Refresh))
				continue
			}
			cfg.Refresh = d
		}
		cfgs = append(cfgs, cfg)
	}
	sort.Slice(cfgs, func(i, j int) bool { return cfgs[i].Name < cfgs[j].Name })
	return cfgs, errs
}

// StartLists loads the named lists that list rules refer to, once now (so the rules apply with them from the
// start), and keeps them fresh while Run runs. A list that fails to load stays empty (it matches nothing) with
// its error in the log; its disk cache is used when there is one.
func (d *Daemon) StartLists(ctx context.Context, cfgs []lists.Config) error {
	var named []*lists.Named
	for _, c := range cfgs {
		n, err := lists.New(c)
		if err != nil {
			d.log.Error("list left out", "list", c.Name, "error", err)
			continue
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		if err := n.Refresh(ctx); err != nil {
			d.log.Error("list not loaded; it matches nothing until it loads", "list", c.Name, "error", err)
		}
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := n.Status()
		d.log.Info("list loaded", "list", c.Name, "entries", st.Entries, "from", st.From, "took", took,
			"heap_delta_bytes", int64(after.HeapAlloc)-int64(before.HeapAlloc))
		named = append(named, n)
	}
	set, err := lists.NewSet(named...)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.lists = set
	d.listCfgs = cfgs
	d.mu.Unlock()
	return nil
}

// lookupList is rules.ListLookup over the loaded lists (nil when none are).
func (d *Daemon) lookupList() func(list, host string, addr netip.Addr) bool {
	if d.lists == nil {
		return nil
	}
	return d.lists.Lookup
}

// refreshLists reloads each list on its schedule and reapplies the rules when one changed.
func (d *Daemon) refreshLists(ctx context.Context) {
	d.mu.Lock()
	set, cfgs := d.lists, d.listCfgs
	d.mu.Unlock()
	if set == nil {
		return
	}
	next := map[string]time.Time{}
	for _, c := range cfgs {
		next[c.Name] = time.Now().Add(refreshOf(c))
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, c := range cfgs {
				n := set.Get(c.Name)
				if n == nil || now.Before(next[c.Name]) {
					continue
				}
				next[c.Name] = now.Add(refreshOf(c))
				old := n.List()
				if err := n.Refresh(ctx); err != nil {
					d.log.Warn("list not refreshed; keeping the version in use", "list", c.Name, "error", err)
					continue
				}
				if n.List() != old {
					d.log.Info("list changed", "list", c.Name, "entries", n.Status().Entries)
					d.reapply()
				}
			}
		}
	}
}

func refreshOf(c lists.Config) time.Duration {
	if c.Refresh > 0 {
		return c.Refresh
	}
	if strings.HasPrefix(c.Location, "http://") || strings.HasPrefix(c.Location, "https://") {
		return 24 * time.Hour
	}
	return time.Minute
}
