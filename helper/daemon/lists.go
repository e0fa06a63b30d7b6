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
	"github.com/tattlefw/tattle/helper/resolvers"
	"github.com/tattlefw/tattle/helper/store"
)

// DefaultListsDir holds the administrator's list definitions: NAME.json names the list "list:NAME".
const DefaultListsDir = "/etc/tattle/lists.d"

// listFile is one list definition: where the list comes from and how often it is reloaded.
type listFile struct {
	Location string `json:"location"`          // an absolute file path or an http(s) URL
	Refresh  string `json:"refresh,omitempty"` // a Go duration ("6h"); default 24h for URLs, 1m for files
	// Names: "domain" (the default: a name covers the names under it) or "exact" (only that name).
	Names string `json:"names,omitempty"`
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
		if cfg.Name == resolvers.ListName {
			errs = append(errs, fmt.Errorf("list definition %s: %w", path, ErrBuiltinList))
			continue
		}
		switch f.Names {
		case "", "domain":
		case "exact":
			cfg.Limits.ExactNames = true
		default:
			errs = append(errs, fmt.Errorf("list definition %s: names %q: use \"domain\" or \"exact\"", path, f.Names))
			continue
		}
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

// ErrBuiltinList refuses a list definition that would take the name of a built-in list.
var ErrBuiltinList = errors.New(`"` + resolvers.ListName + `" is the built-in list of the configured DNS resolvers; give the list another name`)

// UseResolvers makes r the built-in list "list:resolvers", followed live while Run runs. Call before Apply.
func (d *Daemon) UseResolvers(r *resolvers.Resolvers) {
	r.Load()
	d.log.Info("resolvers", "list", "list:"+resolvers.ListName, "files", r.Files(), "resolvers", fmt.Sprint(r.Addrs()))
	d.resolvers = r
}

// listAddrs is ruleset.Options.ListAddrs: the resolvers' addresses (none without a resolvers list).
func (d *Daemon) listAddrs(list string) ([]netip.Prefix, bool) {
	if list != resolvers.ListName {
		return nil, false
	}
	if d.resolvers == nil {
		return nil, true
	}
	return d.resolvers.Prefixes(), true
}

// lookupList is rules.ListLookup over the loaded lists and the built-in resolvers (nil when there are none).
func (d *Daemon) lookupList() func(list, host string, addr netip.Addr) bool {
	if d.lists == nil && d.resolvers == nil {
		return nil
	}
	set, res := d.lists, d.resolvers
	return func(list, host string, addr netip.Addr) bool {
		if list == resolvers.ListName {
			return res != nil && res.Contains(addr)
		}
		return set != nil && set.Lookup(list, host, addr)
	}
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
	onTicks(ctx, time.Second, func(now time.Time) {
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
	})
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

// ImportedListsDir holds the lists imports made (NAME.list with the entries, NAME.json the definition), in the
// helper's state directory: they are the helper's own data, like the rules made through the API.
func ImportedListsDir(stateDir string) string { return filepath.Join(stateDir, "lists.d") }

// NewList is a named list an import makes.
type NewList struct {
	Name    string
	Exact   bool // names cover only themselves
	Entries []string
	Source  string // where the entries came from (written into the list's header)
}

// ErrListExists is returned by CreateLists for a name already defined.
var ErrListExists = errors.New("a list of that name exists")

// ConfigureImportedLists says where CreateLists keeps lists. Call before Run.
func (d *Daemon) ConfigureImportedLists(dir, stateDir string) {
	d.importedDir, d.stateDir = dir, stateDir
}

// HasList reports whether a list of that name is defined.
func (d *Daemon) HasList(name string) bool {
	if name == resolvers.ListName {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lists != nil && d.lists.Get(name) != nil {
		return true
	}
	if d.importedDir != "" {
		if _, err := os.Stat(filepath.Join(d.importedDir, name+".json")); err == nil {
			return true
		}
	}
	return false
}

// CreateLists writes the lists (each file atomically) and loads them, so that rules naming them apply at once
// and after a restart. It checks every list before writing any; on an error nothing stays written. undo
// removes what was created (the caller's transaction failed later); it does not reapply the rules.
func (d *Daemon) CreateLists(ctx context.Context, ls []NewList) (undo func(), err error) {
	if d.importedDir == "" {
		return nil, errors.New("this helper keeps no imported lists (no state directory)")
	}
	var named []*lists.Named
	var cfgs []lists.Config
	for _, l := range ls {
		if d.HasList(l.Name) {
			return nil, fmt.Errorf("list %q: %w", l.Name, ErrListExists)
		}
		cfg := lists.Config{Name: l.Name, Location: filepath.Join(d.importedDir, l.Name+".list"), StateDir: d.stateDir,
			Limits: lists.Limits{ExactNames: l.Exact}}
		n, err := lists.New(cfg)
		if err != nil {
			return nil, err
		}
		named = append(named, n)
		cfgs = append(cfgs, cfg)
	}
	if err := os.MkdirAll(d.importedDir, 0o700); err != nil {
		return nil, fmt.Errorf("make %s: %w", d.importedDir, err)
	}
	var written []string
	undo = func() {
		for _, p := range written {
			os.Remove(p)
		}
		d.mu.Lock()
		if d.lists != nil {
			keep := []*lists.Named{}
			for _, c := range d.listCfgs {
				if n := d.lists.Get(c.Name); n != nil && !slicesContainsName(cfgs, c.Name) {
					keep = append(keep, n)
				}
			}
			set, _ := lists.NewSet(keep...)
			d.lists = set
			d.listCfgs = withoutNames(d.listCfgs, cfgs)
		}
		d.mu.Unlock()
	}
	fail := func(err error) (func(), error) {
		undo()
		return nil, err
	}
	for i, l := range ls {
		var b bytes.Buffer
		fmt.Fprintf(&b, "# list %s, made by a Tattle import from %s\n", l.Name, strings.ReplaceAll(l.Source, "\n", " "))
		for _, e := range l.Entries {
			b.WriteString(e)
			b.WriteByte('\n')
		}
		if err := store.WriteFileAtomic(cfgs[i].Location, b.Bytes(), 0o600); err != nil {
			return fail(err)
		}
		written = append(written, cfgs[i].Location)
		def := listFile{Location: cfgs[i].Location}
		if l.Exact {
			def.Names = "exact"
		}
		data, _ := json.Marshal(def)
		defPath := filepath.Join(d.importedDir, l.Name+".json")
		if err := store.WriteFileAtomic(defPath, data, 0o600); err != nil {
			return fail(err)
		}
		written = append(written, defPath)
		if err := named[i].Refresh(ctx); err != nil {
			return fail(fmt.Errorf("list %q: %w", l.Name, err))
		}
	}
	d.mu.Lock()
	all := named
	if d.lists != nil {
		for _, c := range d.listCfgs {
			if n := d.lists.Get(c.Name); n != nil {
				all = append(all, n)
			}
		}
	}
	set, err := lists.NewSet(all...)
	if err == nil {
		d.lists = set
		d.listCfgs = append(append([]lists.Config(nil), d.listCfgs...), cfgs...)
	}
	d.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	for _, n := range named {
		st := n.Status()
		d.log.Info("list created by an import", "list", st.Name, "entries", st.Entries)
	}
	return undo, nil
}

func slicesContainsName(cfgs []lists.Config, name string) bool {
	for _, c := range cfgs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func withoutNames(all, drop []lists.Config) []lists.Config {
	var out []lists.Config
	for _, c := range all {
		if !slicesContainsName(drop, c.Name) {
			out = append(out, c)
		}
	}
	return out
}
