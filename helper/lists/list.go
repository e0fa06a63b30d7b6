// Package lists loads the named lists rules refer to ("list:NAME"): sets of domains, hosts and networks, from
// hosts files (0.0.0.0 ads.example) or plain lists (one domain, address or CIDR a line), read from a file or
// an http(s) URL, refreshed periodically, cached on disk and swapped in whole only when the new version is
// good.
package lists

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// Limits bound what one list may hold, so that a broken or hostile list cannot exhaust the helper's memory.
type Limits struct {
	MaxBytes   int64 // size of the list file; 0 means DefaultMaxBytes
	MaxEntries int   // names plus networks; 0 means DefaultMaxEntries
	// ExactNames makes a name entry cover only that name, not the names under it (OpenSnitch's domain lists,
	// Little Snitch's remote hosts).
	ExactNames bool
}

const (
	DefaultMaxBytes   = 64 << 20
	DefaultMaxEntries = 2_000_000
	maxLineLen        = 4096
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// List is an immutable set of domains and networks. A domain entry covers the name and every name under it;
// a network entry covers its addresses. The zero List is empty.
type List struct {
	names    map[string]struct{}
	prefixes map[int]map[netip.Addr]struct{} // prefix length (on the 128-bit form) -> masked addresses
	bits     []int                           // the prefix lengths present, longest first
	skipped  []string                        // the first few lines that were not entries, for the error report
	nSkipped int
	exact    bool // names match only themselves (Limits.ExactNames)
}

// Len is the number of entries (names and networks).
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	n := len(l.names)
	for _, m := range l.prefixes {
		n += len(m)
	}
	return n
}

// Skipped is how many lines were neither comments nor entries, with up to five examples ("line N: text").
func (l *List) Skipped() (int, []string) {
	if l == nil {
		return 0, nil
	}
	return l.nSkipped, l.skipped
}

// Contains reports whether name or a domain above it is in the list (case-insensitive, trailing dot
// ignored): a list holding example.com contains www.example.com but not notexample.com. A list parsed with
// ExactNames contains only the names it holds.
func (l *List) Contains(name string) bool {
	if l == nil || len(l.names) == 0 {
		return false
	}
	name = lower(strings.TrimSuffix(name, "."))
	if l.exact {
		_, ok := l.names[name]
		return ok
	}
	for name != "" {
		if _, ok := l.names[name]; ok {
			return true
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return false
		}
		name = name[i+1:]
	}
	return false
}

// ContainsAddr reports whether addr is inside one of the list's networks or addresses.
func (l *List) ContainsAddr(addr netip.Addr) bool {
	if l == nil || !addr.IsValid() {
		return false
	}
	a := netip.AddrFrom16(addr.Unmap().As16())
	for _, b := range l.bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if _, ok := l.prefixes[b][p.Addr()]; ok {
			return true
		}
	}
	return false
}

// hostsAliases are the names hosts files map to themselves; they are never list entries.
var hostsAliases = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// Parse reads a list. Each line is, after stripping a "#" comment:
//
//	0.0.0.0 ads.example.com tracker.example.com   hosts-file form: every name after the address
//	ads.example.com                               a domain (and its subdomains)
//	*.ads.example.com                             the same as ads.example.com
//	192.0.2.1, 2001:db8::1                        an address
//	198.51.100.0/24, 2001:db8::/32                a network
//
// Lines that are none of these are skipped and counted. A list is refused when it is bigger than the
// limits, or when more lines are unreadable than readable (a web page served instead of a list, say).
func Parse(data []byte, lim Limits) (*List, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, fmt.Errorf("list is %d bytes, more than the limit of %d", len(data), lim.MaxBytes)
	}
	l := &List{names: make(map[string]struct{}), prefixes: make(map[int]map[netip.Addr]struct{}), exact: lim.ExactNames}
	entries := 0
	add := func() error {
		if entries++; entries > lim.MaxEntries {
			return fmt.Errorf("list has more than %d entries", lim.MaxEntries)
		}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, maxLineLen), maxLineLen)
	lineNo := 0
	for {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("line %d: %w (lines may be at most %d bytes)", lineNo+1, err, maxLineLen)
			}
			break
		}
		lineNo++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		skip := func() {
			l.nSkipped++
			if len(l.skipped) < 5 {
				l.skipped = append(l.skipped, fmt.Sprintf("line %d: %.80q", lineNo, strings.TrimSpace(line)))
			}
		}
		if len(fields) >= 2 {
			if _, err := netip.ParseAddr(fields[0]); err != nil {
				skip()
				continue
			}
			for _, f := range fields[1:] {
				name, ok := domain(f)
				if !ok {
					skip()
					continue
				}
				if hostsAliases[name] {
					continue
				}
				if _, dup := l.names[name]; !dup {
					if err := add(); err != nil {
						return nil, err
					}
					l.names[name] = struct{}{}
				}
			}
			continue
		}
		f := fields[0]
		if p, ok := network(f); ok {
			b := p.Bits()
			m := l.prefixes[b]
			if m == nil {
				m = make(map[netip.Addr]struct{})
				l.prefixes[b] = m
			}
			if _, dup := m[p.Addr()]; !dup {
				if err := add(); err != nil {
					return nil, err
				}
				m[p.Addr()] = struct{}{}
			}
			continue
		}
		if lim.ExactNames && strings.HasPrefix(f, "*.") {
			skip() // a pattern has no meaning in a list of exact names
			continue
		}
		name, ok := domain(strings.TrimPrefix(f, "*."))
		if !ok {
			skip()
			continue
		}
		if _, dup := l.names[name]; !dup {
			if err := add(); err != nil {
				return nil, err
			}
			l.names[name] = struct{}{}
		}
	}
	for b := range l.prefixes {
		l.bits = append(l.bits, b)
	}
	// Any order is correct; longest first finds single addresses (the common entry) soonest.
	for i := 1; i < len(l.bits); i++ {
		for j := i; j > 0 && l.bits[j] > l.bits[j-1]; j-- {
			l.bits[j], l.bits[j-1] = l.bits[j-1], l.bits[j]
		}
	}
	if l.nSkipped > 0 && l.nSkipped > entries {
		return nil, fmt.Errorf("list has more unreadable lines (%d) than entries (%d); is it a list? first: %s",
			l.nSkipped, entries, strings.Join(l.skipped, "; "))
	}
	return l, nil
}

// network parses an address or a CIDR into a prefix on the 128-bit form (IPv4 as ::ffff:a.b.c.d/96+n).
func network(s string) (netip.Prefix, bool) {
	if !strings.ContainsAny(s, ":/") && strings.Trim(s, "0123456789.") != "" {
		return netip.Prefix{}, false // a name; the quick test saves two parse attempts per domain
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, false
	}
	bits := p.Bits()
	a := p.Addr()
	if a.Is4() {
		bits += 96
	}
	q, err := netip.AddrFrom16(a.As16()).Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return q, true
}

// domain validates a host or domain name (letters, digits, '-', '_', dots between labels) and returns it in
// lower case without a trailing dot.
func domain(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	labelLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if labelLen == 0 {
				return "", false
			}
			labelLen = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		if labelLen++; labelLen > 63 {
			return "", false
		}
	}
	if labelLen == 0 { // ends in an empty label ("name..")
		return "", false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "", false
	}
	return strings.Clone(lower(s)), true
}

// lower lower-cases ASCII, allocating only when something changes.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
