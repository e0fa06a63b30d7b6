package resolvers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []netip.Addr
		refused  int
	}{
		{"resolved's upstreams", "# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).\n" +
			"nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n", addrs("192.0.2.53", "2001:db8::53"), 0},
		{"stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", addrs("127.0.0.53"), 0},
		{"tabs, blanks, comments, duplicates", "\n\t nameserver\t10.0.0.1  \n; nameserver 10.9.9.9\n#nameserver 10.8.8.8\nnameserver 10.0.0.1\n",
			addrs("10.0.0.1"), 0},
		{"trailing comment", "nameserver 10.0.0.2 # the router\nnameserver 10.0.0.3 ;x\n", addrs("10.0.0.2", "10.0.0.3"), 0},
		{"link-local zone dropped", "nameserver fe80::1%eth0\n", addrs("fe80::1"), 0},
		{"zone on a global address", "nameserver 2001:db8::1%eth0\n", nil, 1},
		{"IPv4-mapped", "nameserver ::ffff:198.51.100.7\n", addrs("198.51.100.7"), 0},
		{"names and junk are not addresses", "nameserver dns.example.com\nnameserver 10.0.0.256\nnameserver 10.0.0.0/8\nnameserver\nnameserver 10.1.1.1 10.2.2.2\n",
			nil, 5},
		{"unspecified and multicast", "nameserver 0.0.0.0\nnameserver ::\nnameserver 224.0.0.251\nnameserver ff02::fb\n", nil, 4},
		{"keyword must come first, whole", "domain nameserver 10.0.0.4\nnameservers 10.0.0.5\nNAMESERVER 10.0.0.6\nxnameserver 10.0.0.7\n", nil, 0},
		{"other keywords' addresses are not resolvers", "sortlist 10.0.0.0/255.0.0.0\nsearch 10.0.0.8\noptions ndots:1\n", nil, 0},
		{"leading zeros (not accepted by netip)", "nameserver 010.000.000.001\n", nil, 1},
		{"CRLF", "nameserver 10.0.0.9\r\n", addrs("10.0.0.9"), 0},
	} {
		got, refused := Parse([]byte(tc.in))
		if !slices.Equal(got, tc.want) || len(refused) != tc.refused {
			t.Errorf("%s: got %v, refused %q; want %v, %d refused", tc.name, got, refused, tc.want, tc.refused)
		}
	}
}

func TestParseLimits(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "nameserver 10.0.%d.%d\n", i/250, i%250+1)
	}
	got, refused := Parse([]byte(b.String()))
	if len(got) != maxPerFile || len(refused) == 0 {
		t.Errorf("100 nameservers: kept %d (want %d), refused %d", len(got), maxPerFile, len(refused))
	}
	long := "nameserver 10.0.0.1\n" + strings.Repeat("x", maxLineLen+10) + "\nnameserver 10.0.0.2\n"
	got, refused = Parse([]byte(long))
	if !slices.Equal(got, addrs("10.0.0.1")) || len(refused) != 1 {
		t.Errorf("a long line: %v %q", got, refused)
	}
}

// FuzzParseResolvConf: whatever the file holds, every address taken comes from a nameserver line that names it,
// none is unspecified, multicast, IPv4-mapped or zoned, none repeats, and there are at most maxPerFile.
func FuzzParseResolvConf(f *testing.F) {
	for _, s := range []string{
		"nameserver 192.0.2.1\n", "nameserver fe80::1%eth0\nnameserver ::ffff:10.0.0.1\n",
		"search lan\noptions timeout:2\nnameserver 2001:db8::1 # x\n", "nameserver\n", "nameserver 1.2.3.4 5.6.7.8\n",
		"\x00nameserver 1.1.1.1\r\n", "nameserver 10.0.0.1\nnameserver 10.0.0.1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _ := Parse(data)
		if len(got) > maxPerFile {
			t.Fatalf("%d addresses", len(got))
		}
		seen := map[netip.Addr]bool{}
		for _, a := range got {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || seen[a] {
				t.Fatalf("address %v taken from %q", a, data)
			}
			seen[a] = true
			named := false
			for _, line := range bytes.Split(data, []byte("\n")) {
				f := strings.Fields(string(line))
				if len(f) < 2 || f[0] != "nameserver" {
					continue
				}
				if b, err := netip.ParseAddr(f[1]); err == nil && b.WithZone("").Unmap() == a {
					named = true
				}
			}
			if !named {
				t.Fatalf("address %v is on no nameserver line of %q", a, data)
			}
		}
	})
}

func TestLoadSources(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc-resolv.conf")
	resolved := filepath.Join(dir, "resolved.conf")
	nm := filepath.Join(dir, "nm", "no-stub-resolv.conf") // its directory does not exist: contributes nothing
	os.WriteFile(etc, []byte("nameserver 127.0.0.53\n"), 0o644)
	os.WriteFile(resolved, []byte("nameserver 192.0.2.1\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n"), 0o644)
	var logs bytes.Buffer
	r, err := New(Options{Files: []string{etc, resolved, nm}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Load() {
		t.Fatal("first load reported no change")
	}
	want := addrs("127.0.0.53", "192.0.2.1", "2001:db8::1")
	if got := r.Addrs(); !slices.Equal(got, want) {
		t.Fatalf("addrs %v, want %v", got, want)
	}
	for _, a := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "127.0.0.53"} {
		if !r.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not contained", a)
		}
	}
	for _, a := range []string{"192.0.2.2", "127.0.0.1", "2001:db8::2"} {
		if r.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s contained", a)
		}
	}
	if p := r.Prefixes(); len(p) != 3 || p[1] != netip.MustParsePrefix("192.0.2.1/32") || p[2] != netip.MustParsePrefix("2001:db8::1/128") {
		t.Errorf("prefixes %v", p)
	}
	if r.Load() {
		t.Error("a second load of the same files reported a change")
	}
	// Malformed: only its valid lines count, and it is logged once.
	os.WriteFile(resolved, []byte("nameserver evil.example\nnameserver 192.0.2.9\n"), 0o644)
	if !r.Load() || !slices.Equal(r.Addrs(), addrs("127.0.0.53", "192.0.2.9")) {
		t.Fatalf("after a malformed file: %v", r.Addrs())
	}
	r.Load()
	if n := strings.Count(logs.String(), "evil.example"); n != 1 {
		t.Errorf("the malformed line was logged %d times, want once:\n%s", n, logs.String())
	}
	// Unreadable (a directory in its place) and binary junk: empty contributions, no crash.
	os.Remove(resolved)
	os.Mkdir(resolved, 0o755)
	os.WriteFile(etc, bytes.Repeat([]byte{0xff, 0, '\n'}, 1000), 0o644)
	r.Load()
	if got := r.Addrs(); len(got) != 0 {
		t.Errorf("after junk: %v", got)
	}
	if !strings.Contains(logs.String(), "not a regular file") {
		t.Errorf("the directory in the file's place was not logged:\n%s", logs.String())
	}
	if _, err := New(Options{Files: []string{"etc/resolv.conf"}}); err == nil {
		t.Error("a relative path was accepted")
	}
}

// changes counts Run's change calls.
type changes struct {
	mu sync.Mutex
	n  int
	c  chan struct{}
}

func (c *changes) changed() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	select {
	case c.c <- struct{}{}:
	default:
	}
}

func waitFor(t *testing.T, r *Resolvers, c *changes, what string, want []netip.Addr) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(3 * time.Second)
	for !slices.Equal(r.Addrs(), want) {
		select {
		case <-c.c:
		case <-deadline:
			t.Fatalf("%s: resolvers %v after 3 s, want %v", what, r.Addrs(), want)
		}
	}
	return time.Since(start)
}

// replace writes path as resolvconf and NetworkManager do: a new file renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRunFollowsChanges: Run sees a symlink's target renamed over, the symlink pointed elsewhere, replaced by a
// file, the file removed, each within a second; it calls back on changes only, not for a rewrite with the same
// addresses, and stops with its context.
func TestRunFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc", "resolv.conf")
	os.MkdirAll(filepath.Dir(etc), 0o755)
	run := filepath.Join(dir, "run")
	os.MkdirAll(run, 0o755)
	stub, upstream := filepath.Join(run, "stub.conf"), filepath.Join(run, "upstream.conf")
	os.WriteFile(stub, []byte("nameserver 192.0.2.1\n"), 0o644)
	os.WriteFile(upstream, []byte("nameserver 192.0.2.2\n"), 0o644)
	if err := os.Symlink("../run/stub.conf", etc); err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Files: []string{etc}, Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &changes{c: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, c.changed) }()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	}()
	waitFor(t, r, c, "start (through the symlink)", addrs("192.0.2.1"))

	took := waitForAfter(t, r, c, "the symlink's target replaced by a rename", addrs("192.0.2.9"), func() {
		replace(t, stub, "nameserver 192.0.2.9\n")
	})
	if took > time.Second {
		t.Errorf("the rename took %v to be seen", took)
	}
	waitForAfter(t, r, c, "the symlink pointed elsewhere", addrs("192.0.2.2"), func() {
		tmp := etc + ".new"
		os.Symlink("../run/upstream.conf", tmp)
		os.Rename(tmp, etc)
	})
	waitForAfter(t, r, c, "the symlink replaced by a file", addrs("2001:db8::2"), func() {
		replace(t, etc, "nameserver 2001:db8::2\n")
	})
	c.mu.Lock()
	before := c.n
	c.mu.Unlock()
	replace(t, etc, "# same server\nnameserver 2001:db8::2\n")
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	if c.n != before {
		t.Errorf("a rewrite with the same resolvers called back %d times", c.n-before)
	}
	c.mu.Unlock()
	waitForAfter(t, r, c, "removed", []netip.Addr{}, func() { os.Remove(etc) })
	if got := r.Addrs(); len(got) != 0 {
		t.Errorf("after removal: %v", got)
	}
}

func waitForAfter(t *testing.T, r *Resolvers, c *changes, what string, want []netip.Addr, do func()) time.Duration {
	t.Helper()
	select { // a stale signal from before
	case <-c.c:
	default:
	}
	do()
	if want == nil {
		want = []netip.Addr{}
	}
	return waitFor(t, r, c, what, want)
}
