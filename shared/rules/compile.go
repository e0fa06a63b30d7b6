package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// AppKind says how a rule names the application it covers.
type AppKind int

const (
	AppAny     AppKind = iota // every application
	AppPath                   // an executable, by absolute path
	AppFlatpak                // every process of a Flatpak app, by app id
	AppSnap                   // every process of a snap, by snap name
	AppImage                  // every process started from an AppImage file, by the file's path
)

func (k AppKind) String() string {
	switch k {
	case AppAny:
		return "any"
	case AppPath:
		return "path"
	case AppFlatpak:
		return "flatpak"
	case AppSnap:
		return "snap"
	case AppImage:
		return "appimage"
	}
	return fmt.Sprintf("AppKind(%d)", int(k))
}

// RemoteKind says how a rule names the destinations it covers. The Remote field spells them:
//
//	"any"                      RemoteAny       every destination
//	"192.0.2.1", "2001:db8::1" RemoteIP        one address (also "192.0.2.1/32" and "2001:db8::1/128")
//	"10.0.0.0/8"               RemoteCIDR      a network; host bits must be zero
//	"host:example.com"         RemoteHost      exactly that name
//	"domain:example.com"       RemoteDomain    that name and every name under it (www.example.com, a.b.example.com),
//	                                           but not notexample.com
//	"wildcard:*.cdn.example.*" RemoteWildcard  a pattern over whole labels: each "*" stands for ONE OR MORE labels,
//	                                           every other label must equal the name's label at that place. So
//	                                           "*.example.com" matches www.example.com and a.b.example.com but not
//	                                           example.com; "cdn.example.*" matches cdn.example.com and
//	                                           cdn.example.co.uk. "*" inside a label ("img*.example.com") is refused.
//	"list:ads"                 RemoteList      whatever the named list holds (names or addresses); see ListLookup
//
// Names match case-insensitively and without regard to a trailing dot. Name rules match a connection by the
// names its address was learned for (DNS attribution); a connection with no known name matches none of them.
type RemoteKind int

const (
	RemoteAny RemoteKind = iota
	RemoteIP
	RemoteCIDR
	RemoteHost
	RemoteDomain
	RemoteWildcard
	RemoteList
)

func (k RemoteKind) String() string {
	switch k {
	case RemoteAny:
		return "any"
	case RemoteIP:
		return "ip"
	case RemoteCIDR:
		return "cidr"
	case RemoteHost:
		return "host"
	case RemoteDomain:
		return "domain"
	case RemoteWildcard:
		return "wildcard"
	case RemoteList:
		return "list"
	}
	return fmt.Sprintf("RemoteKind(%d)", int(k))
}

// Compiled is a validated rule in the form that is evaluated. Build it with Compile.
type Compiled struct {
	Rule       Rule         // the source
	AppKind    AppKind      //
	AppValue   string       // path, flatpak id, snap name or AppImage path; "" for any
	RemoteKind RemoteKind   //
	Prefix     netip.Prefix // RemoteIP and RemoteCIDR; IPv4 stays IPv4 (never IPv4-mapped)
	Name       string       // RemoteHost, RemoteDomain, RemoteWildcard (lower case, no trailing dot), RemoteList
	PortLo     uint16       // inclusive range; 0,0 is any port
	PortHi     uint16       //
	Proto      string       // "any", "tcp" or "udp"
}

// Compile validates r and returns its compiled form. The error is a *FieldError.
func Compile(r Rule) (Compiled, error) {
	if err := r.Validate(); err != nil {
		return Compiled{}, err
	}
	if r.Direction == "" {
		r.Direction = DirectionOutgoing
	}
	c := Compiled{Rule: r, Proto: r.Protocol}
	c.AppKind, c.AppValue, _ = parseApplication(r.Application)
	spec, _ := parseRemote(r.Remote)
	c.RemoteKind, c.Prefix, c.Name = spec.kind, spec.prefix, spec.name
	c.PortLo, c.PortHi, _ = parsePort(r.Port)
	return c, nil
}

// Flow is one connection attempt as userspace sees it.
type Flow struct {
	AppPath   string     // executable path
	Via       string     // the script an interpreter runs (absolute path); "" for none
	Flatpak   string     // Flatpak app id, or ""
	Snap      string     // snap name, or ""
	AppImage  string     // path of the AppImage file, or ""
	UID       uint32     //
	Addr      netip.Addr // destination; an IPv4-mapped address is treated as the IPv4 address
	Hostnames []string   // names this address was learned for (may be empty)
	Port      uint16     //
	Proto     string     // "tcp" or "udp"
}

// ListLookup answers whether the named list contains a host name or an address. Matches calls it once per
// name in Flow.Hostnames (with the flow's address), or once with host "" when the flow has no names, so a list
// of addresses and a list of names both work. A nil ListLookup means lists are not loaded: list rules match
// nothing.
type ListLookup func(list, host string, addr netip.Addr) bool

// Matches reports whether the rule covers f at time now. Disabled rules and "until-time" rules whose time has
// come never match. A rule with an Owner matches only that user's processes.
func (c *Compiled) Matches(f Flow, lists ListLookup, now time.Time) bool {
	r := &c.Rule
	if !r.Enabled {
		return false
	}
	if r.Duration == DurationUntilTime && !now.Before(r.Until) {
		return false
	}
	if r.Owner != nil && *r.Owner != f.UID {
		return false
	}
	switch c.AppKind {
	case AppAny:
	case AppPath:
		if f.AppPath != c.AppValue || f.Via != r.Via {
			return false
		}
	case AppFlatpak:
		if f.Flatpak != c.AppValue {
			return false
		}
	case AppSnap:
		if f.Snap != c.AppValue {
			return false
		}
	case AppImage:
		if f.AppImage != c.AppValue {
			return false
		}
	default:
		return false
	}
	if c.Proto != Any && c.Proto != "" && c.Proto != f.Proto {
		return false
	}
	if c.PortHi != 0 && (f.Port < c.PortLo || f.Port > c.PortHi) {
		return false
	}
	return c.matchRemote(f, lists)
}

// MatchesName reports whether a host, domain or wildcard rule's remote covers name (the rule's other fields
// are not looked at). Rules of other remote kinds match no name.
func (c *Compiled) MatchesName(name string) bool {
	switch c.RemoteKind {
	case RemoteHost, RemoteDomain, RemoteWildcard:
		return c.matchRemote(Flow{Hostnames: []string{name}}, nil)
	}
	return false
}

func (c *Compiled) matchRemote(f Flow, lists ListLookup) bool {
	addr := f.Addr.Unmap().WithZone("")
	switch c.RemoteKind {
	case RemoteAny:
		return true
	case RemoteIP, RemoteCIDR:
		return c.Prefix.IsValid() && c.Prefix.Contains(addr)
	case RemoteHost:
		for _, h := range f.Hostnames {
			if asciiEqualFold(strings.TrimSuffix(h, "."), c.Name) {
				return true
			}
		}
	case RemoteDomain:
		for _, h := range f.Hostnames {
			if inDomain(strings.TrimSuffix(h, "."), c.Name) {
				return true
			}
		}
	case RemoteWildcard:
		for _, h := range f.Hostnames {
			if h = strings.TrimSuffix(h, "."); h != "" && wildcardMatch(c.Name, h) {
				return true
			}
		}
	case RemoteList:
		if lists == nil {
			return false
		}
		if len(f.Hostnames) == 0 {
			return lists(c.Name, "", addr)
		}
		for _, h := range f.Hostnames {
			if lists(c.Name, strings.ToLower(strings.TrimSuffix(h, ".")), addr) {
				return true
			}
		}
	}
	return false
}

// inDomain reports whether host is domain or a name under it. The label boundary check keeps
// "notexample.com" out of "example.com".
func inDomain(host, domain string) bool {
	if len(host) == len(domain) {
		return asciiEqualFold(host, domain)
	}
	return len(host) > len(domain) && host[len(host)-len(domain)-1] == '.' &&
		asciiEqualFold(host[len(host)-len(domain):], domain)
}

// asciiEqualFold compares names case-insensitively in ASCII only: strings.EqualFold would also fold
// look-alikes such as the Kelvin sign into "k", letting a crafted name pass for another.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// wildcardMatch matches host against a wildcard pattern label by label, where a "*" label stands for one or
// more labels. It is the classic linear glob algorithm (remember the last star, let it absorb one more label
// on a mismatch), working on byte offsets so that matching allocates nothing. Offsets past the end are
// len+1.
func wildcardMatch(pattern, host string) bool {
	pEnd, hEnd := len(pattern)+1, len(host)+1
	p, h := 0, 0
	starP, starH := -1, 0 // pattern offset after the last star; host offset after what it absorbed
	for h < hEnd {
		if p < pEnd {
			pl, pn := labelAt(pattern, p)
			hl, hn := labelAt(host, h)
			if pl == "*" {
				starP, starH = pn, hn // the star takes this one label, and may take more later
				p, h = pn, hn
				continue
			}
			if asciiEqualFold(pl, hl) {
				p, h = pn, hn
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, starH = labelAt(host, starH)
		p, h = starP, starH
	}
	return p >= pEnd
}

// labelAt returns the label starting at off and the offset of the next one.
func labelAt(s string, off int) (string, int) {
	if i := strings.IndexByte(s[off:], '.'); i >= 0 {
		return s[off : off+i], off + i + 1
	}
	return s[off:], len(s) + 1
}
