package enforce

import (
	"net/netip"
	"testing"

	"github.com/tattlefw/tattle/shared/identity"
)

func TestDestinationKeys(t *testing.T) {
	app := identity.Executable{Dev: 0x801, Ino: 77}
	scope := Scope{App: app, UID: 1000}
	for _, c := range []struct {
		name       string
		d          Destination
		wantProtos []uint8
		wantBits   uint8
		wantAddr   string
	}{
		{"IPv4 host is stored IPv4-mapped", Destination{Scope: scope, Prefix: netip.MustParsePrefix("192.0.2.7/32"), Port: 443, Proto: TCP},
			[]uint8{6}, 128, "::ffff:192.0.2.7"},
		{"IPv4 prefix is masked", Destination{Scope: scope, Prefix: netip.MustParsePrefix("10.1.2.3/8"), Proto: UDP},
			[]uint8{17}, 104, "::ffff:10.0.0.0"},
		{"any protocol becomes TCP and UDP", Destination{Scope: scope, Prefix: netip.MustParsePrefix("2001:db8::/32")},
			[]uint8{6, 17}, 32, "2001:db8::"},
		{"any IPv6 address", Destination{Scope: scope, Prefix: netip.MustParsePrefix("::/0"), Port: 53, Proto: UDP},
			[]uint8{17}, 0, "::"},
	} {
		keys, bits, err := c.d.keys()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if bits != c.wantBits || len(keys) != len(c.wantProtos) {
			t.Errorf("%s: %d keys with %d address bits, want %d keys with %d", c.name, len(keys), bits, len(c.wantProtos), c.wantBits)
			continue
		}
		for i, k := range keys {
			if k.Proto != c.wantProtos[i] || k.Prefixlen != 160+uint32(c.wantBits) || k.Port != c.d.Port {
				t.Errorf("%s: key %d = proto %d prefixlen %d port %d", c.name, i, k.Proto, k.Prefixlen, k.Port)
			}
			if got := netip.AddrFrom16(k.Addr).String(); got != c.wantAddr {
				t.Errorf("%s: address %s, want %s", c.name, got, c.wantAddr)
			}
			if k.Ino != 77 || k.Dev != app.KernelDev() || k.Uid != 1000 {
				t.Errorf("%s: scope fields %+v", c.name, k)
			}
		}
	}
}

func TestDestinationKeysRefuseBadInput(t *testing.T) {
	for name, d := range map[string]Destination{
		"no prefix":                    {},
		"ICMP":                         {Prefix: netip.MustParsePrefix("192.0.2.0/24"), Proto: 1},
		"IPv4-mapped prefix below /96": {Prefix: netip.MustParsePrefix("::ffff:0:0/64")},
	} {
		if _, _, err := d.keys(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
