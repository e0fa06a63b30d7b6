package dns

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// app is an application identity as the helper builds it: executable (dev, inode) and uid.
type app struct {
	dev uint32
	ino uint64
	uid uint32
}

var (
	curl    = app{dev: 8, ino: 1001, uid: 1000}
	firefox = app{dev: 8, ino: 2002, uid: 1000}
	t0      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	addrA   = netip.MustParseAddr("192.0.2.1")
	addrB   = netip.MustParseAddr("2001:db8::2")
)

func rec(name string, addr netip.Addr, ttl time.Duration) Record {
	return Record{Query: name, Addr: addr, TTL: ttl}
}

func TestCacheExpiryWithGrace(t *testing.T) {
	c := NewCache[app](CacheConfig{Grace: 5 * time.Second})
	c.Add(curl, rec("www.example.test", addrA, 60*time.Second), t0)
	c.Add(curl, rec("api.example.test", addrB, 10*time.Second), t0)
	if got := c.Expire(t0.Add(14 * time.Second)); len(got) != 0 {
		t.Fatalf("expired before TTL+grace: %+v", got)
	}
	if got := c.Names(curl, addrB, t0.Add(14*time.Second)); !slices.Equal(got, []string{"api.example.test"}) {
		t.Fatalf("names within grace: %v", got)
	}
	got := c.Expire(t0.Add(15 * time.Second))
	if len(got) != 1 || got[0].Addr != addrB || got[0].Name != "api.example.test" || got[0].App != curl {
		t.Fatalf("expired at TTL+grace: %+v", got)
	}
	if n := c.Names(curl, addrB, t0.Add(15*time.Second)); len(n) != 0 {
		t.Fatalf("names after expiry: %v", n)
	}
	if next, ok := c.NextExpiry(); !ok || !next.Equal(t0.Add(65*time.Second)) {
		t.Fatalf("next expiry %v %v", next, ok)
	}
	// A refresh moves the expiry later, never earlier.
	c.Add(curl, rec("WWW.example.test.", addrA, 100*time.Second), t0.Add(30*time.Second))
	c.Add(curl, rec("www.example.test", addrA, 1*time.Second), t0.Add(31*time.Second))
	if got := c.Expire(t0.Add(134 * time.Second)); len(got) != 0 {
		t.Fatalf("refreshed entry expired early: %+v", got)
	}
	if got := c.Expire(t0.Add(135 * time.Second)); len(got) != 1 || c.Len() != 0 {
		t.Fatalf("refreshed entry did not expire at its new time: %+v, %d left", got, c.Len())
	}
}

func TestCacheNamesPerAppAndGlobal(t *testing.T) {
	c := NewCache[app](CacheConfig{})
	c.Add(curl, rec("a.example.test", addrA, time.Minute), t0)
	c.Add(curl, rec("b.example.test", addrA, time.Minute), t0.Add(time.Second))
	c.Add(firefox, rec("c.example.test", addrA, time.Minute), t0.Add(2*time.Second))
	now := t0.Add(3 * time.Second)
	if got := c.Names(curl, addrA, now); !slices.Equal(got, []string{"b.example.test", "a.example.test"}) {
		t.Errorf("curl's names, most recent first: %v", got)
	}
	if got := c.Names(firefox, addrA, now); !slices.Equal(got, []string{"c.example.test"}) {
		t.Errorf("firefox's names: %v", got)
	}
	// An application with no lookup of its own sees what others learned.
	var unknown app
	if got := c.Names(unknown, addrA, now); !slices.Equal(got, []string{"c.example.test", "b.example.test", "a.example.test"}) {
		t.Errorf("fallback names: %v", got)
	}
	if got := c.Addrs("B.example.test.", now); !slices.Equal(got, []netip.Addr{addrA}) {
		t.Errorf("addresses for b: %v", got)
	}
	if got := c.AppAddrs(firefox, "b.example.test", now); len(got) != 0 {
		t.Errorf("firefox never asked for b but has %v", got)
	}
	p, err := ParsePattern("domain:example.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Match(p, now); len(got) != 3 {
		t.Errorf("domain:example.test covers %d entries, want 3", len(got))
	}
}

func TestCacheLRU(t *testing.T) {
	c := NewCache[app](CacheConfig{MaxEntries: 4, MaxPerApp: 3})
	for i := range 3 {
		if ev := c.Add(curl, rec(fmt.Sprintf("n%d.test", i), addrA, time.Hour), t0.Add(time.Duration(i)*time.Second)); len(ev) != 0 {
			t.Fatalf("evicted below the bound: %+v", ev)
		}
	}
	// Using n0 makes n1 the least recently used of curl's.
	c.Lookup(curl, addrA, t0.Add(5*time.Second))
	c.Add(curl, rec("n0.test", addrA, time.Hour), t0.Add(6*time.Second))
	ev := c.Add(curl, rec("n3.test", addrA, time.Hour), t0.Add(7*time.Second))
	if len(ev) != 1 || ev[0].Name != "n1.test" {
		t.Fatalf("per-application bound evicted %+v, want n1.test", ev)
	}
	// Another application fills the global bound: the globally least recently used goes.
	c.Add(firefox, rec("f0.test", addrB, time.Hour), t0.Add(8*time.Second))
	ev = c.Add(firefox, rec("f1.test", addrB, time.Hour), t0.Add(9*time.Second))
	if len(ev) != 1 || ev[0].App != curl || ev[0].Name != "n2.test" {
		t.Fatalf("global bound evicted %+v, want curl's n2.test", ev)
	}
	if c.Len() != 4 {
		t.Fatalf("%d entries, want 4", c.Len())
	}
	// Evicted entries are gone from every index and never expire again.
	if got := c.Addrs("n1.test", t0); len(got) != 0 {
		t.Fatalf("evicted name still resolves to %v", got)
	}
	if got := c.Expire(t0.Add(2 * time.Hour)); len(got) != 4 {
		t.Fatalf("expired %d, want the 4 remaining", len(got))
	}
}

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"host:www.example.com", []string{"www.example.com", "WWW.Example.COM.", "www.example.com."}, []string{"example.com", "a.www.example.com", "wwwexample.com"}},
		{"domain:example.com", []string{"example.com", "a.example.com", "a.b.EXAMPLE.com."}, []string{"notexample.com", "example.com.evil", "com"}},
		{"wildcard:*.example.com", []string{"www.example.com", "a.b.example.com"}, []string{"example.com", "www.example.org"}},
		{"wildcard:cdn.*.net", []string{"cdn.x.net", "cdn.x.y.net"}, []string{"cdn.net", "img.x.net"}},
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		for _, n := range tc.yes {
			if !p.Match(n) {
				t.Errorf("%s does not match %s", tc.pattern, n)
			}
		}
		for _, n := range tc.no {
			if p.Match(n) {
				t.Errorf("%s matches %s", tc.pattern, n)
			}
		}
	}
	for _, bad := range []string{"any", "192.0.2.1", "10.0.0.0/8", "list:ads", "host:", "wildcard:img*.example.com", "example.com"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q parsed as a name pattern", bad)
		}
	}
	if (Pattern{}).Match("example.com") {
		t.Error("the zero pattern matches")
	}
}

// TestCacheScale inserts 100,000 names (the default bound) and reports time and memory; the bound must hold
// when 10% more arrive.
func TestCacheScale(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 100_000
	apps := make([]app, 50)
	for i := range apps {
		apps[i] = app{dev: 8, ino: uint64(i + 1), uid: 1000}
	}
	c := NewCache[app](CacheConfig{MaxEntries: n, MaxPerApp: n})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		c.Add(apps[i%len(apps)], rec(fmt.Sprintf("host%d.example%d.test", i, i%97), a, time.Duration(60+i%600)*time.Second), t0)
	}
	insert := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapDelta := int64(after.HeapAlloc) - int64(before.HeapAlloc)

	start = time.Now()
	const lookups = 100_000
	hits := 0
	for i := range lookups {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if len(c.Names(apps[i%len(apps)], a, t0)) == 1 {
			hits++
		}
	}
	lookup := time.Since(start) / lookups
	if hits != lookups {
		t.Fatalf("%d of %d lookups found their name", hits, lookups)
	}
	for i := range n / 10 {
		c.Add(apps[0], rec(fmt.Sprintf("more%d.test", i), addrA, time.Minute), t0)
	}
	if c.Len() != n {
		t.Fatalf("%d entries, bound %d", c.Len(), n)
	}
	start = time.Now()
	expired := len(c.Expire(t0.Add(time.Hour)))
	expire := time.Since(start)
	report := fmt.Sprintf("dns.Cache: %d names inserted in %v (%v per insert), heap +%.1f MiB (%d bytes per entry) after GC; "+
		"Names lookup %v; Expire of %d entries %v\n",
		n, insert.Round(time.Millisecond), insert/n, float64(heapDelta)/(1<<20), heapDelta/n, lookup, expired, expire.Round(time.Millisecond))
	t.Log(report)
	if dir := os.Getenv("TATTLE_RESULTS_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "bench-dns-cache.txt"), []byte(report), 0o644)
	}
	if heapDelta > 100<<20 {
		t.Errorf("100,000 entries take %d MiB, more than 100 MiB", heapDelta>>20)
	}
}

func BenchmarkCacheAdd(b *testing.B) {
	c := NewCache[app](CacheConfig{MaxEntries: 100_000})
	names := make([]string, 4096)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.example.test", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		c.Add(curl, rec(names[i%len(names)], a, time.Minute), t0)
	}
}
