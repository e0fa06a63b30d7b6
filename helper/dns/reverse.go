package dns

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Reverse is a name an address's owner published for it (a PTR record). It is shown, marked as a reverse
// name, when the application looked no name up; rules never match it, since whoever controls the address
// chooses it.
type Reverse struct {
	Addr netip.Addr
	Name string
	TTL  time.Duration
}

// ParseReverse returns the PTR answers of a response to a reverse lookup (in-addr.arpa or ip6.arpa), or nil.
func ParseReverse(msg []byte, cut bool) []Reverse {
	m := new(mdns.Msg)
	if err := m.Unpack(msg); err != nil {
		if !cut {
			return nil
		}
		var perr error
		if m, perr = unpackPrefix(msg); perr != nil {
			return nil
		}
	}
	if !m.Response || m.Rcode != mdns.RcodeSuccess || len(m.Question) != 1 || m.Question[0].Qtype != mdns.TypePTR {
		return nil
	}
	q := Normalize(m.Question[0].Name)
	addr, ok := ArpaAddr(q)
	if !ok {
		return nil
	}
	var out []Reverse
	for _, rr := range m.Answer {
		p, ok := rr.(*mdns.PTR)
		if !ok || p.Hdr.Class != mdns.ClassINET || Normalize(p.Hdr.Name) != q {
			continue
		}
		if name := Normalize(p.Ptr); name != "" {
			out = append(out, Reverse{Addr: addr, Name: name, TTL: time.Duration(p.Hdr.Ttl) * time.Second})
		}
	}
	return out
}

// ArpaAddr turns a reverse-lookup name (4.3.2.1.in-addr.arpa, or 32 nibbles under ip6.arpa) into its address.
func ArpaAddr(name string) (netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa"):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa"), ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			v, err := strconv.ParseUint(l, 10, 8)
			if err != nil || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(name, ".ip6.arpa"):
		nibbles := strings.Split(strings.TrimSuffix(name, ".ip6.arpa"), ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, n := range nibbles {
			if len(n) != 1 {
				return netip.Addr{}, false
			}
			v, err := strconv.ParseUint(n, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b).Unmap(), true
	}
	return netip.Addr{}, false
}
