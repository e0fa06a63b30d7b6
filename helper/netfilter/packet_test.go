package netfilter

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func ipv4TCP(src, dst string, sport, dport uint16) []byte {
	b := make([]byte, 40)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], 40)
	b[9] = 6
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	return b
}

func ipv6UDP(src, dst string, sport, dport uint16, hopByHop bool) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	next := byte(17)
	if hopByHop {
		b[6] = 0
		b = append(b, 17, 0, 0, 0, 0, 0, 0, 0) // hop-by-hop, 8 bytes, next = UDP
	} else {
		b[6] = next
	}
	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	return append(b, u...)
}

func TestParseHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		pkt  []byte
		want Headers
	}{
		{"ipv4 tcp", ipv4TCP("10.0.0.1", "192.0.2.7", 40000, 443), Headers{Proto: 6,
			Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("192.0.2.7:443")}},
		{"ipv6 udp", ipv6UDP("2001:db8::1", "2001:db8::53", 5353, 53, false), Headers{Proto: 17,
			Src: netip.MustParseAddrPort("[2001:db8::1]:5353"), Dst: netip.MustParseAddrPort("[2001:db8::53]:53")}},
		{"ipv6 udp after hop-by-hop", ipv6UDP("::1", "::1", 1, 2, true), Headers{Proto: 17,
			Src: netip.MustParseAddrPort("[::1]:1"), Dst: netip.MustParseAddrPort("[::1]:2")}},
	} {
		got, err := ParseHeaders(c.pkt)
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	frag := ipv4TCP("10.0.0.1", "10.0.0.2", 1, 2)
	binary.BigEndian.PutUint16(frag[6:], 5) // a later fragment: no transport header
	for name, pkt := range map[string][]byte{
		"empty": nil, "short v4": ipv4TCP("1.2.3.4", "5.6.7.8", 1, 2)[:19], "fragment": frag,
		"short v6": ipv6UDP("::1", "::1", 1, 2, false)[:39], "no ports": ipv4TCP("1.2.3.4", "5.6.7.8", 1, 2)[:22],
		"not ip": {0x50, 1, 2, 3},
	} {
		if _, err := ParseHeaders(pkt); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// FuzzParseHeaders feeds arbitrary packets: the parser must never panic or read past the data, and what it
// returns must be TCP or UDP.
func FuzzParseHeaders(f *testing.F) {
	f.Add(ipv4TCP("10.0.0.1", "192.0.2.7", 40000, 443))
	f.Add(ipv6UDP("2001:db8::1", "2001:db8::53", 5353, 53, true))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, err := ParseHeaders(pkt)
		if err == nil && h.Proto != 6 && h.Proto != 17 {
			t.Fatalf("parsed protocol %d", h.Proto)
		}
	})
}
