package dns

import (
	"container/heap"
	"container/list"
	"net/netip"
	"slices"
	"time"
)

// DefaultGrace is how long a mapping outlives its TTL: clients commonly connect a moment after the TTL ran
// out (they cached the answer themselves, or a connection attempt is retried), and ending the mapping at the
// exact second would ask the user about a host a rule already covers.
const DefaultGrace = 10 * time.Second

// CacheConfig bounds a Cache.
type CacheConfig struct {
	MaxEntries int           // total (application, name, address) entries; 0 means 100,000
	MaxPerApp  int           // entries one application may hold; 0 means MaxEntries/4 (at least 1)
	Grace      time.Duration // added to every TTL; 0 means DefaultGrace, a negative value means none
}

// Entry is one mapping an application learned: it asked for Name and was given Addr.
type Entry[K comparable] struct {
	App       K          // who asked (the caller's identity type; its zero value may stand for "unknown")
	Name      string     // the name asked for
	Canonical []string   // CNAME chain from Name to the owner of Addr, as last seen
	Addr      netip.Addr //
	Expires   time.Time  // end of TTL + grace
	Seen      time.Time  // last time an answer gave this mapping
}

// Cache holds what applications learned from DNS, bounded in entries overall and per application, with
// TTL expiry and least-recently-used eviction. Lookups by address give the names for display and rule
// matching; lookups by name give the addresses a hostname rule must cover in the kernel. Expiry is driven by
// the caller (Expire), so the cache has no goroutine. A Cache is not safe for concurrent use; the caller
// serializes (the helper keeps it in one goroutine or behind its own lock).
type Cache[K comparable] struct {
	cfg     CacheConfig
	entries map[entryKey[K]]*entry[K]
	byAddr  map[netip.Addr][]*entry[K]
	byName  map[string][]*entry[K]
	apps    map[K]*list.List // per-application LRU, front = most recently used
	lru     list.List        // global LRU, front = most recently used
	expiry  expiryHeap[K]
}

type entryKey[K comparable] struct {
	app  K
	name string
	addr netip.Addr
}

type entry[K comparable] struct {
	Entry[K]
	global  *list.Element
	perApp  *list.Element
	heapIdx int
}

// NewCache returns an empty cache bounded by cfg.
func NewCache[K comparable](cfg CacheConfig) *Cache[K] {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.MaxPerApp <= 0 {
		cfg.MaxPerApp = max(cfg.MaxEntries/4, 1)
	}
	switch {
	case cfg.Grace == 0:
		cfg.Grace = DefaultGrace
	case cfg.Grace < 0:
		cfg.Grace = 0
	}
	return &Cache[K]{
		cfg:     cfg,
		entries: make(map[entryKey[K]]*entry[K]),
		byAddr:  make(map[netip.Addr][]*entry[K]),
		byName:  make(map[string][]*entry[K]),
		apps:    make(map[K]*list.List),
	}
}

// Len is the number of entries.
func (c *Cache[K]) Len() int { return len(c.entries) }

// Add records that app was given rec at now. A mapping seen again is refreshed: its expiry moves to the
// later of the old and the new one. It returns the entries evicted to stay within bounds; the caller
// removes what it installed for them, as for expired ones.
func (c *Cache[K]) Add(app K, rec Record, now time.Time) (evicted []Entry[K]) {
	if !rec.Addr.IsValid() || rec.Query == "" {
		return nil
	}
	addr := rec.Addr.Unmap().WithZone("")
	name := Normalize(rec.Query)
	expires := now.Add(rec.TTL + c.cfg.Grace)
	k := entryKey[K]{app, name, addr}
	if e, ok := c.entries[k]; ok {
		e.Seen = now
		e.Canonical = rec.Canonical
		if expires.After(e.Expires) {
			e.Expires = expires
			heap.Fix(&c.expiry, e.heapIdx)
		}
		c.touch(e)
		return nil
	}
	al := c.apps[app]
	if al == nil {
		al = list.New()
		c.apps[app] = al
	}
	// Make room: first within the application, so one noisy program evicts its own entries, then overall.
	for al.Len() >= c.cfg.MaxPerApp {
		evicted = append(evicted, c.remove(al.Back().Value.(*entry[K])))
	}
	for len(c.entries) >= c.cfg.MaxEntries {
		evicted = append(evicted, c.remove(c.lru.Back().Value.(*entry[K])))
	}
	if c.apps[app] == nil { // remove dropped the application's list when it emptied
		c.apps[app] = al
	}
	e := &entry[K]{Entry: Entry[K]{App: app, Name: name, Canonical: rec.Canonical, Addr: addr, Expires: expires, Seen: now}}
	c.entries[k] = e
	c.byAddr[addr] = append(c.byAddr[addr], e)
	c.byName[name] = append(c.byName[name], e)
	e.global = c.lru.PushFront(e)
	e.perApp = al.PushFront(e)
	heap.Push(&c.expiry, e)
	return evicted
}

// AddAnswer adds every record of an answer for app.
func (c *Cache[K]) AddAnswer(app K, a Answer, now time.Time) (evicted []Entry[K]) {
	for _, r := range a.Records {
		evicted = append(evicted, c.Add(app, r, now)...)
	}
	return evicted
}

func (c *Cache[K]) touch(e *entry[K]) {
	c.lru.MoveToFront(e.global)
	if al := c.apps[e.App]; al != nil {
		al.MoveToFront(e.perApp)
	}
}

func (c *Cache[K]) remove(e *entry[K]) Entry[K] {
	delete(c.entries, entryKey[K]{e.App, e.Name, e.Addr})
	c.byAddr[e.Addr] = deleteEntry(c.byAddr[e.Addr], e)
	if len(c.byAddr[e.Addr]) == 0 {
		delete(c.byAddr, e.Addr)
	}
	c.byName[e.Name] = deleteEntry(c.byName[e.Name], e)
	if len(c.byName[e.Name]) == 0 {
		delete(c.byName, e.Name)
	}
	c.lru.Remove(e.global)
	if al := c.apps[e.App]; al != nil {
		al.Remove(e.perApp)
		if al.Len() == 0 {
			delete(c.apps, e.App)
		}
	}
	heap.Remove(&c.expiry, e.heapIdx)
	return e.Entry
}

func deleteEntry[K comparable](s []*entry[K], e *entry[K]) []*entry[K] {
	if i := slices.Index(s, e); i >= 0 {
		s[i] = s[len(s)-1]
		s[len(s)-1] = nil
		s = s[:len(s)-1]
	}
	return s
}

// Expire removes the entries whose TTL and grace ended at or before now and returns them, soonest first, so
// the caller can remove the kernel entries it installed for them. An address may still be mapped by another
// entry (another name, another application): check with AppsFor or Names before removing a shared entry.
func (c *Cache[K]) Expire(now time.Time) []Entry[K] {
	var out []Entry[K]
	for len(c.expiry) > 0 && !c.expiry[0].Expires.After(now) {
		out = append(out, c.remove(c.expiry[0]))
	}
	return out
}

// NextExpiry is when the soonest entry expires, so the caller can sleep until then; ok is false when the
// cache is empty.
func (c *Cache[K]) NextExpiry() (t time.Time, ok bool) {
	if len(c.expiry) == 0 {
		return time.Time{}, false
	}
	return c.expiry[0].Expires, true
}

// Lookup returns app's live entries for addr, most recently seen first, and marks them used.
func (c *Cache[K]) Lookup(app K, addr netip.Addr, now time.Time) []Entry[K] {
	return c.lookup(addr, now, func(e *entry[K]) bool { return e.App == app })
}

// LookupAll returns every application's live entries for addr, most recently seen first, and marks them used.
func (c *Cache[K]) LookupAll(addr netip.Addr, now time.Time) []Entry[K] {
	return c.lookup(addr, now, func(*entry[K]) bool { return true })
}

func (c *Cache[K]) lookup(addr netip.Addr, now time.Time, keep func(*entry[K]) bool) []Entry[K] {
	var out []Entry[K]
	for _, e := range c.byAddr[addr.Unmap().WithZone("")] {
		if keep(e) && e.Expires.After(now) {
			c.touch(e)
			out = append(out, e.Entry)
		}
	}
	slices.SortStableFunc(out, func(a, b Entry[K]) int { return b.Seen.Compare(a.Seen) })
	return out
}

// Names returns the names app asked for that gave addr, most recent first, without duplicates: what the
// monitor shows and what name rules match against. It falls back to what other applications learned when
// app itself has no entry (the address came from another program's lookup, or from systemd-resolved).
func (c *Cache[K]) Names(app K, addr netip.Addr, now time.Time) []string {
	es := c.Lookup(app, addr, now)
	if len(es) == 0 {
		es = c.LookupAll(addr, now)
	}
	var out []string
	for _, e := range es {
		if !slices.Contains(out, e.Name) {
			out = append(out, e.Name)
		}
	}
	return out
}

// Addrs returns the live addresses learned for name by any application (global) — what a hostname rule
// must cover in the kernel — without duplicates.
func (c *Cache[K]) Addrs(name string, now time.Time) []netip.Addr {
	var out []netip.Addr
	for _, e := range c.byName[Normalize(name)] {
		if e.Expires.After(now) && !slices.Contains(out, e.Addr) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// AppAddrs returns the live addresses app learned for name, without duplicates.
func (c *Cache[K]) AppAddrs(app K, name string, now time.Time) []netip.Addr {
	var out []netip.Addr
	for _, e := range c.byName[Normalize(name)] {
		if e.App == app && e.Expires.After(now) && !slices.Contains(out, e.Addr) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// Match returns the live entries whose name p matches, for installing a new or changed name rule's
// addresses. It visits every name (rules change rarely; connections use Names).
func (c *Cache[K]) Match(p Pattern, now time.Time) []Entry[K] {
	var out []Entry[K]
	for name, es := range c.byName {
		if !p.Match(name) {
			continue
		}
		for _, e := range es {
			if e.Expires.After(now) {
				out = append(out, e.Entry)
			}
		}
	}
	return out
}

// MatchFunc returns the live entries whose name, or a name in whose CNAME chain, match reports true: for
// installing the addresses of a new or changed name rule.
func (c *Cache[K]) MatchFunc(match func(name string) bool, now time.Time) []Entry[K] {
	var out []Entry[K]
	for _, es := range c.byName {
		for _, e := range es {
			if !e.Expires.After(now) {
				continue
			}
			if match(e.Name) || slices.ContainsFunc(e.Canonical, match) {
				out = append(out, e.Entry)
			}
		}
	}
	return out
}

// expiryHeap orders entries by expiry, soonest first.
type expiryHeap[K comparable] []*entry[K]

func (h expiryHeap[K]) Len() int           { return len(h) }
func (h expiryHeap[K]) Less(i, j int) bool { return h[i].Expires.Before(h[j].Expires) }
func (h expiryHeap[K]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expiryHeap[K]) Push(x any) {
	e := x.(*entry[K])
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap[K]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
