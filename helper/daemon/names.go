package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tattlefw/tattle/helper/dns"
	"github.com/tattlefw/tattle/helper/dnscapture"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/resolvedmon"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// appKey names who looked a name up: an executable run by a user. The zero value stands for "unknown".
type appKey struct {
	App identity.Executable
	UID uint32
}

// learned is an address a name rule's verdict is installed for, until its last supporting answer expires.
type learned struct {
	ruling  enforce.Ruling
	expires time.Time
}

// names is what the helper learned from DNS, and the kernel entries it made of it. Guarded by Daemon.mu.
type names struct {
	capture *dnscapture.Capture
	// read and done count answers taken from the capture and answers learned: equal when nothing is in
	// between (atomics: catchUpNames reads them without d.mu).
	read, done atomic.Uint64
	cache      *dns.Cache[appKey]
	// installed are the learned destination entries in the kernel now.
	installed map[enforce.Destination]learned
	source    string // how names are learned, or why not
	resolved  string // systemd-resolved's monitor socket, when it is there
	// reverse holds reverse names (PTR answers seen on the wire) until their TTL + grace; hosts those of
	// /etc/hosts. Both are for display only.
	reverse map[netip.Addr]reverseName
	hosts   map[netip.Addr]string
	grace   time.Duration
}

type reverseName struct {
	name    string
	expires time.Time
}

// maxReverse bounds the reverse names kept.
const maxReverse = 20000

// StartNames opens the DNS capture so the helper learns which names applications looked up. Call before Run.
// Without it (or when it fails) name rules match nothing and the helper shows addresses only.
// grace is added to every answer's TTL (0: dns.DefaultGrace).
func (d *Daemon) StartNames(ctx context.Context, cgroupRoot string, grace time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names.cache = dns.NewCache[appKey](dns.CacheConfig{Grace: grace})
	d.names.installed = map[enforce.Destination]learned{}
	d.names.reverse = map[netip.Addr]reverseName{}
	d.names.hosts = dns.ReadHostsFile("/etc/hosts")
	if grace <= 0 {
		grace = dns.DefaultGrace
	}
	d.names.grace = grace
	var captureErr error
	if cgroupRoot == "" {
		cgroupRoot, captureErr = enforce.CgroupV2Root("/proc/self/mountinfo")
	}
	if captureErr == nil {
		d.names.capture, captureErr = dnscapture.Open(ctx, cgroupRoot)
	}
	// Programs resolving through systemd-resolved's NSS module send no port-53 packets of their own; its
	// monitor tells what they looked up.
	src := dns.CheckSources(captureErr, resolvedmon.SocketPath)
	if src.Resolved {
		d.names.resolved = src.Socket
	}
	d.names.source = src.Message()
	if !src.Any() {
		d.names.source = "off: " + src.Message()
		return errors.New(src.Message())
	}
	d.log.Info("learning host names", "sources", src.Message())
	return nil
}

// followResolved learns what systemd-resolved resolves, for as long as ctx lasts. Its results do not say which
// program asked, so they count for every program.
func (d *Daemon) followResolved(ctx context.Context) {
	err := resolvedmon.Run(ctx, d.names.resolved, time.Second, func(r resolvedmon.Result) {
		now := time.Now()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, rec := range r.Records() {
			d.names.cache.Add(appKey{}, rec, now)
			d.installNamesFor(rec.Addr, now)
		}
	}, func(err error) {
		if err != nil {
			d.log.Warn("systemd-resolved's monitor", "error", err)
		}
	})
	if err != nil && ctx.Err() == nil {
		d.log.Error("systemd-resolved refused the monitor subscription; names resolved through it are not learned", "error", err)
	}
}

// NameSource says how the helper learns names, or why it does not.
func (d *Daemon) NameSource() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names.source == "" {
		return "off: not started"
	}
	return d.names.source
}

// readAnswers consumes captured DNS answers until the capture is closed.
func (d *Daemon) readAnswers() {
	for {
		p, err := d.names.capture.Read()
		if errors.Is(err, dnscapture.ErrClosed) {
			return
		}
		if err != nil {
			d.log.Warn("read a captured DNS answer", "error", err)
			continue
		}
		d.names.read.Add(1)
		d.learnAnswer(p)
		d.names.done.Add(1)
	}
}

// learnAnswer records an answer's mappings for the application whose socket received it, and installs the
// addresses of the name rules they match.
func (d *Daemon) learnAnswer(p dnscapture.Packet) {
	if revs := dns.ParseReverse(p.Payload, p.Truncated); len(revs) > 0 {
		d.learnReverse(revs)
		return
	}
	ans, err := dns.Parse(p.Payload, p.Truncated)
	if err != nil {
		d.log.Debug("unparsable DNS answer", "error", err, "server", p.Server)
		return
	}
	if len(ans.Records) == 0 {
		return
	}
	key := appKey{UID: p.UID}
	if app, uid, _, ok := d.enf.DNSSocket(p.SocketCookie); ok {
		key = appKey{App: app, UID: uid}
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names.cache.AddAnswer(key, ans, now)
	for _, rec := range ans.Records {
		d.log.Debug("name learned", "name", rec.Query, "canonical", rec.Canonical, "addr", rec.Addr, "ttl", rec.TTL,
			"exe", key.App, "uid", key.UID)
		d.installNamesFor(rec.Addr, now)
	}
}

// hostnamesFor returns the names an application learned for addr (else any application's), with the CNAME
// chains they led through: the name asked for first, for display.
func (d *Daemon) hostnamesFor(key appKey, addr netip.Addr, now time.Time) []string {
	if d.names.cache == nil {
		return nil
	}
	es := d.names.cache.Lookup(key, addr, now)
	if len(es) == 0 {
		es = d.names.cache.LookupAll(addr, now)
	}
	var out []string
	for _, e := range es {
		for _, n := range append([]string{e.Name}, e.Canonical...) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// wantedFor computes the learned entries for addr from the current rules: for every name the address is known
// by (any application's lookups, CNAME chains included), the highest-precedence name rule matching it claims
// the address in its scope, unless the kernel already has an entry there that covers the address (it comes
// from a rule of higher precedence) or a higher rule evaluated in userspace could match too.
func (d *Daemon) wantedFor(res ruleset.Result, addr netip.Addr, now time.Time) map[enforce.Destination]learned {
	out := map[enforce.Destination]learned{}
	es := d.names.cache.LookupAll(addr, now)
	if len(es) == 0 {
		return out
	}
	var hostnames []string
	expires := time.Time{}
	for _, e := range es {
		for _, n := range append([]string{e.Name}, e.Canonical...) {
			if !slices.Contains(hostnames, n) {
				hostnames = append(hostnames, n)
			}
		}
		if e.Expires.After(expires) {
			expires = e.Expires
		}
	}
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	prefix := netip.PrefixFrom(addr, bits)
	claimed := map[enforce.Scope]bool{}
	for _, nr := range res.Names {
		if nr.Blocked != "" || claimed[nr.Scope] {
			continue
		}
		if !d.nameRuleMatches(nr, hostnames) {
			continue
		}
		// The first (highest) matching rule of a scope decides it; lower ones there never apply.
		claimed[nr.Scope] = true
		for _, port := range nr.Ports {
			for _, proto := range nr.Protos {
				dst := enforce.Destination{Scope: nr.Scope, Prefix: prefix, Port: port, Proto: proto}
				if coveredByKernelRule(res.Kernel, dst) {
					continue
				}
				out[dst] = learned{ruling: enforce.Ruling{Verdict: nr.Verdict, RuleID: nr.KernelID}, expires: expires}
			}
		}
	}
	return out
}

// nameRuleMatches reports whether a name rule covers one of the names (a list rule: whether its list holds one).
func (d *Daemon) nameRuleMatches(nr ruleset.NameRule, hostnames []string) bool {
	for _, h := range hostnames {
		if d.nameMatches(nr, h) {
			return true
		}
	}
	return false
}

func (d *Daemon) nameMatches(nr ruleset.NameRule, name string) bool {
	if nr.Rule.RemoteKind == rules.RemoteList {
		return d.lists != nil && d.lists.Lookup(nr.Rule.Name, name, netip.Addr{})
	}
	return nr.Rule.MatchesName(name)
}

// coveredByKernelRule reports whether a compiled (non-ask) kernel entry of the same scope and protocol
// covers dst's address and port: that entry comes from a rule of higher precedence (lower ones overlapping a
// name rule are kept out of the kernel), so a more specific learned entry must not shadow it.
func coveredByKernelRule(v enforce.Verdicts, dst enforce.Destination) bool {
	for d, r := range v.Destinations {
		if r.Verdict == enforce.Ask || d.Scope != dst.Scope || d.Proto != dst.Proto {
			continue
		}
		if d.Port != 0 && dst.Port != 0 && d.Port != dst.Port {
			continue
		}
		p := d.Prefix
		a := dst.Prefix.Addr()
		if p.Addr().Is4In6() && a.Is4() {
			a = netip.AddrFrom16(a.As16())
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// installNamesFor brings the kernel's learned entries for addr up to date. Callers hold d.mu.
func (d *Daemon) installNamesFor(addr netip.Addr, now time.Time) {
	want := d.wantedFor(d.current, addr, now)
	for dst, l := range want {
		cur, ok := d.names.installed[dst]
		if ok && cur.ruling == l.ruling {
			d.names.installed[dst] = l // a longer expiry
			continue
		}
		if err := d.enf.SetLearnedDestination(dst, l.ruling.Verdict, l.ruling.RuleID); err != nil {
			d.log.Warn("install a learned address", "dest", dst, "error", err)
			continue
		}
		d.names.installed[dst] = l
	}
}

// learnedVerdicts recomputes every learned entry for new rules (Apply merges them into the kernel's verdicts).
// Callers hold d.mu.
func (d *Daemon) learnedVerdicts(res ruleset.Result, now time.Time) map[enforce.Destination]learned {
	all := map[enforce.Destination]learned{}
	if d.names.cache == nil || len(res.Names) == 0 {
		return all
	}
	seen := map[netip.Addr]bool{}
	for _, nr := range res.Names {
		for _, e := range d.names.cache.MatchFunc(func(name string) bool { return d.nameMatches(nr, name) }, now) {
			if seen[e.Addr] {
				continue
			}
			seen[e.Addr] = true
			for dst, l := range d.wantedFor(res, e.Addr, now) {
				all[dst] = l
			}
		}
	}
	return all
}

// expireNames drops names whose TTL (and grace) ended, and the kernel entries they supported.
func (d *Daemon) expireNames(ctx context.Context) {
	onTicks(ctx, time.Second, func(now time.Time) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.names.cache.Expire(now)
		var gone []enforce.Destination
		for dst, l := range d.names.installed {
			if !l.expires.After(now) {
				gone = append(gone, dst)
			}
		}
		if len(gone) == 0 {
			return
		}
		if err := d.enf.ClearLearnedDestinations(gone); err != nil {
			d.log.Warn("remove expired learned addresses", "error", err)
			return
		}
		for _, dst := range gone {
			delete(d.names.installed, dst)
		}
		d.log.Debug("learned addresses expired", "entries", len(gone))
	})
}

// learnReverse keeps reverse names seen in PTR answers.
func (d *Daemon) learnReverse(revs []dns.Reverse) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.names.reverse)+len(revs) > maxReverse {
		for a, r := range d.names.reverse {
			if !r.expires.After(now) || len(d.names.reverse) > maxReverse/2 {
				delete(d.names.reverse, a)
			}
		}
	}
	for _, r := range revs {
		d.names.reverse[r.Addr.Unmap()] = reverseName{name: r.Name, expires: now.Add(r.TTL + d.names.grace)}
	}
}

// ReverseFor returns a reverse name for addr (a PTR answer seen on the wire, else /etc/hosts), "" when none is
// known. For display only, marked as a reverse name.
func (d *Daemon) ReverseFor(addr netip.Addr) string {
	addr = addr.Unmap()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.names.reverse[addr]; ok && r.expires.After(time.Now()) {
		return r.name
	}
	return d.names.hosts[addr]
}

// HostFor returns the name an application looked up for addr (else any application's), "" when none is known.
func (d *Daemon) HostFor(app identity.Executable, uid uint32, addr netip.Addr) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names.cache == nil {
		return ""
	}
	if ns := d.names.cache.Names(appKey{App: app, UID: uid}, addr, time.Now()); len(ns) > 0 {
		return ns[0]
	}
	return ""
}

// catchUpNames waits briefly for captured answers not read yet, so an attempt made right after its lookup is
// decided with the name it looked up.
func (d *Daemon) catchUpNames() {
	if d.names.capture == nil {
		return
	}
	// An answer is in the ring before its application can read it, so everything the attempt could depend on
	// is either unread or being learned now.
	deadline := time.Now().Add(50 * time.Millisecond)
	for (d.names.capture.Unread() > 0 || d.names.read.Load() != d.names.done.Load()) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

// NamesFor names a destination for display: the host name the program looked up for its address, else the
// address's reverse name. A destination on the DNS port gets neither: it is the program's resolver, shown as
// a DNS server (api.DNSServerLabel), not as some host name that happened to resolve to the same address.
func (d *Daemon) NamesFor(app identity.Executable, uid uint32, dest netip.AddrPort) (host, reverse string) {
	if dest.Port() == api.DNSPort {
		return "", ""
	}
	if host = d.HostFor(app, uid, dest.Addr()); host != "" {
		return host, ""
	}
	return "", d.ReverseFor(dest.Addr())
}
