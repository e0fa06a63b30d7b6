// Package resolvers keeps the machine's configured DNS resolvers, the built-in address list "list:resolvers":
// the nameserver lines of /etc/resolv.conf (through its symlink), of systemd-resolved's list of its upstreams
// and of NetworkManager's, followed live. The factory DNS rules allow port 53 to these addresses only, not to any
// host.
package resolvers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ListName is the list rules name as "list:resolvers". An administrator's or an import's list cannot take it.
const ListName = "resolvers"

// DefaultFiles are the resolv.conf files read by default: the one the C library reads (often a symlink to one
// of the others); systemd-resolved's list of its real upstreams (/etc/resolv.conf names its stub 127.0.0.53
// then, which the factory's local rules cover); NetworkManager's list of the servers it got, without its local
// dnsmasq (what dnsmasq forwards to, and what resolv.conf names when NetworkManager manages it without one).
var DefaultFiles = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf", "/run/NetworkManager/no-stub-resolv.conf"}

const (
	maxFileBytes = 64 << 10 // a resolv.conf is a few hundred bytes; anything bigger is not one
	maxPerFile   = 32       // the C library uses 3; systemd-resolved lists all it has
	maxLineLen   = 4096
	settle       = 50 * time.Millisecond // events of one replacement (create, rename, chmod) are read once
	pollEvery    = 10 * time.Second      // catches directories made after the start (NetworkManager's under /run)
)

// Parse returns the addresses of the nameserver lines of a resolv.conf, in order, each once, and the nameserver
// lines it refused ("line N: text"). A line counts only as "nameserver ADDRESS" (keyword first, one address,
// nothing after it but a comment): an IPv4 or IPv6 literal; an IPv4-mapped IPv6 address is taken as its IPv4
// address; a zone ("fe80::1%eth0") is accepted on a link-local address and dropped (the kernel's rules match
// addresses, not interfaces), refused on any other. Unspecified and multicast addresses are refused. Every other
// line (comments, search, options, junk) is ignored.
func Parse(data []byte) (addrs []netip.Addr, refused []string) {
	if len(data) > maxFileBytes {
		data = data[:maxFileBytes]
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 512), maxLineLen)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "nameserver" {
			continue
		}
		refuse := func() {
			if len(refused) < 5 {
				refused = append(refused, fmt.Sprintf("line %d: %.80q", lineNo, strings.TrimSpace(line)))
			}
		}
		if len(f) < 2 || (len(f) > 2 && f[2][0] != '#' && f[2][0] != ';') {
			refuse()
			continue
		}
		a, ok := parseAddr(f[1])
		if !ok {
			refuse()
			continue
		}
		if !slices.Contains(addrs, a) {
			if len(addrs) == maxPerFile {
				refuse()
				continue
			}
			addrs = append(addrs, a)
		}
	}
	// A line longer than maxLineLen ends the scan: what came before it stands, the rest is not read.
	if sc.Err() != nil && len(refused) < 5 {
		refused = append(refused, fmt.Sprintf("a line longer than %d bytes; the rest of the file is not read", maxLineLen))
	}
	return addrs, refused
}

func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		if !a.IsLinkLocalUnicast() {
			return netip.Addr{}, false
		}
		a = a.WithZone("")
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, false
	}
	return a, true
}

// Options configure Resolvers.
type Options struct {
	Files []string     // resolv.conf files; nil means DefaultFiles
	Log   *slog.Logger // nil means slog.Default()
}

// Resolvers is the live list. Its lookups read the current addresses without locking; Load and Run swap in a
// complete new set.
type Resolvers struct {
	files  []string
	log    *slog.Logger
	cur    atomic.Pointer[[]netip.Addr] // sorted, each once
	loadMu sync.Mutex                   // serializes loads
	warned map[string]string            // file -> the problem last logged for it (guarded by loadMu)
}

// New makes the list, empty until Load or Run. Files must be absolute paths.
func New(o Options) (*Resolvers, error) {
	files := o.Files
	if files == nil {
		files = DefaultFiles
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			return nil, fmt.Errorf("resolver file %q: give an absolute path", f)
		}
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	r := &Resolvers{files: slices.Clone(files), log: log, warned: map[string]string{}}
	empty := []netip.Addr{}
	r.cur.Store(&empty)
	return r, nil
}

// Files are the files the list is read from.
func (r *Resolvers) Files() []string { return slices.Clone(r.files) }

// Addrs are the resolvers now, sorted.
func (r *Resolvers) Addrs() []netip.Addr { return slices.Clone(*r.cur.Load()) }

// Contains reports whether addr (IPv4-mapped or not) is one of the resolvers.
func (r *Resolvers) Contains(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	_, ok := slices.BinarySearchFunc(*r.cur.Load(), addr.Unmap().WithZone(""), netip.Addr.Compare)
	return ok
}

// Prefixes are the resolvers as single-address prefixes (/32, /128), for kernel entries.
func (r *Resolvers) Prefixes() []netip.Prefix {
	addrs := *r.cur.Load()
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// Load reads the files now and reports whether the list changed. A file that is missing contributes nothing;
// one that cannot be read, or has nameserver lines that are not addresses, contributes what it validly has
// and is logged (once per problem, not at every reload).
func (r *Resolvers) Load() bool {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	var all []netip.Addr
	for _, f := range r.files {
		addrs, problem := r.read(f)
		if problem != r.warned[f] {
			if problem != "" {
				r.log.Warn("resolver file: only its valid nameserver lines count", "file", f, "problem", problem)
			}
			r.warned[f] = problem
		}
		all = append(all, addrs...)
	}
	slices.SortFunc(all, netip.Addr.Compare)
	all = slices.Compact(all)
	if all == nil {
		all = []netip.Addr{}
	}
	if slices.Equal(all, *r.cur.Load()) {
		return false
	}
	r.cur.Store(&all)
	return true
}

// read parses one file; problem says what was wrong with it ("" for nothing, also for a missing file).
func (r *Resolvers) read(path string) (addrs []netip.Addr, problem string) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, err.Error()
	}
	defer fh.Close()
	if st, err := fh.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, "not a regular file"
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, err.Error()
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Sprintf("more than %d bytes: not a resolv.conf", maxFileBytes)
	}
	addrs, refused := Parse(data)
	if len(refused) > 0 {
		problem = "refused nameserver lines: " + strings.Join(refused, "; ")
	}
	return addrs, problem
}

// Run loads the list at once and again whenever one of the files (or a symlink on the way to it) changes, for
// as long as ctx lasts, calling changed after each load that changed the list. The files' directories are
// watched (resolv.conf is replaced by a rename, not rewritten), and the files are also read every 10 s, which
// finds directories made after the start. Without inotify it reads every 10 s only. It returns ctx's error.
func (r *Resolvers) Run(ctx context.Context, changed func()) error {
	load := func() {
		if r.Load() {
			r.log.Info("resolvers changed", "list", "list:"+ListName, "resolvers", r.addrStrings())
			changed()
			r.log.Info("resolvers in force", "list", "list:"+ListName, "resolvers", r.addrStrings())
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn("resolver files are not watched; they are read every 10 s", "error", err)
	}
	var events chan fsnotify.Event
	var errs chan error
	watched := map[string]bool{}
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	rewatch := func() {
		if w == nil {
			return
		}
		want := r.dirs()
		for d := range watched {
			if !want[d] {
				w.Remove(d)
				delete(watched, d)
			}
		}
		for d := range want {
			if watched[d] {
				continue
			}
			if err := w.Add(d); err == nil {
				watched[d] = true
			}
		}
	}
	rewatch()
	load()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	var settleC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if r.relevant(ev.Name) && settleC == nil {
				settleC = time.After(settle)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.log.Warn("watching the resolver files", "error", err)
			if settleC == nil {
				settleC = time.After(settle) // events may have been lost
			}
		case <-settleC:
			settleC = nil
			rewatch() // a symlink may point elsewhere now
			load()
		case <-poll.C:
			rewatch()
			load()
		}
	}
}

func (r *Resolvers) addrStrings() []string {
	var out []string
	for _, a := range *r.cur.Load() {
		out = append(out, a.String())
	}
	return out
}

// chain is each file's path and, when it is a symlink, every path on the way to what it points to.
func (r *Resolvers) chain() []string {
	var out []string
	for _, f := range r.files {
		p := f
		for hops := 0; hops < 16; hops++ {
			out = append(out, p)
			t, err := os.Readlink(p)
			if err != nil {
				break
			}
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(p), t)
			}
			p = filepath.Clean(t)
		}
	}
	return out
}

// dirs are the directories to watch: those of every path on the way to each file.
func (r *Resolvers) dirs() map[string]bool {
	out := map[string]bool{}
	for _, p := range r.chain() {
		out[filepath.Dir(p)] = true
	}
	return out
}

// relevant reports whether an event's path is one of the files or a link on the way to one.
func (r *Resolvers) relevant(name string) bool {
	name = filepath.Clean(name)
	return slices.Contains(r.chain(), name)
}
