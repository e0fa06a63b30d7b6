package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

func TestArpaAddr(t *testing.T) {
	for name, want := range map[string]string{
		"7.0.201.10.in-addr.arpa.": "10.201.0.7",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": "2001:db8::1",
	} {
		got, ok := ArpaAddr(name)
		if !ok || got != netip.MustParseAddr(want) {
			t.Errorf("%s: %v %v, want %s", name, got, ok, want)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa", "256.1.1.1.in-addr.arpa", "01.1.1.1.in-addr.arpa", "x.ip6.arpa", "example.com"} {
		if _, ok := ArpaAddr(bad); ok {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestParseReverse(t *testing.T) {
	q := new(mdns.Msg)
	q.SetQuestion("7.0.201.10.in-addr.arpa.", mdns.TypePTR)
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Answer = []mdns.RR{
		&mdns.PTR{Hdr: mdns.RR_Header{Name: "7.0.201.10.in-addr.arpa.", Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: 60}, Ptr: "Host7.Example.TEST."},
		&mdns.PTR{Hdr: mdns.RR_Header{Name: "8.0.201.10.in-addr.arpa.", Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: 60}, Ptr: "planted.example."},
	}
	raw, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	got := ParseReverse(raw, false)
	if len(got) != 1 || got[0].Addr != netip.MustParseAddr("10.201.0.7") || got[0].Name != "host7.example.test" {
		t.Errorf("reverse: %+v (a record for another address must not be taken)", got)
	}
	if ParseReverse(raw[:10], false) != nil || ParseReverse([]byte("garbage"), true) != nil {
		t.Error("garbage parsed")
	}
}
