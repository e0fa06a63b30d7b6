package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func hdr(name string, typ uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
}

// answer builds a response the way a server sends it (miekg packs with name compression).
func answer(t testing.TB, qname string, qtype uint16, rrs ...mdns.RR) []byte {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(qname, qtype)
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Compress = true
	m.Answer = rrs
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cnameChain() []mdns.RR {
	return []mdns.RR{
		&mdns.CNAME{Hdr: hdr("WWW.Example.test.", mdns.TypeCNAME, 300), Target: "web.example.test."},
		&mdns.CNAME{Hdr: hdr("web.example.test.", mdns.TypeCNAME, 30), Target: "edge.cdn.test."},
		&mdns.A{Hdr: hdr("edge.cdn.test.", mdns.TypeA, 120), A: net.IPv4(192, 0, 2, 10)},
		&mdns.A{Hdr: hdr("edge.cdn.test.", mdns.TypeA, 20), A: net.IPv4(192, 0, 2, 11)},
		// Not on the chain: an answer cannot make us believe evil.test is at this address.
		&mdns.A{Hdr: hdr("evil.test.", mdns.TypeA, 300), A: net.IPv4(198, 51, 100, 1)},
	}
}

func TestParseCNAMEChain(t *testing.T) {
	a, err := Parse(answer(t, "www.example.test.", mdns.TypeA, cnameChain()...), false)
	if err != nil {
		t.Fatal(err)
	}
	if a.Question != "www.example.test" || a.Qtype != mdns.TypeA || a.Rcode != 0 || a.Truncated || a.Incomplete {
		t.Fatalf("answer header %+v", a)
	}
	chain := []string{"web.example.test", "edge.cdn.test"}
	want := []Record{
		{Query: "www.example.test", Canonical: chain, Addr: netip.MustParseAddr("192.0.2.10"), TTL: 30 * time.Second},
		{Query: "www.example.test", Canonical: chain, Addr: netip.MustParseAddr("192.0.2.11"), TTL: 20 * time.Second},
	}
	if !recordsEqual(a.Records, want) {
		t.Fatalf("records\n %+v\nwant\n %+v", a.Records, want)
	}
}

func recordsEqual(a, b []Record) bool {
	return slices.EqualFunc(a, b, func(x, y Record) bool {
		return x.Query == y.Query && slices.Equal(x.Canonical, y.Canonical) && x.Addr == y.Addr && x.TTL == y.TTL
	})
}

func TestParseAAAAAndMapped(t *testing.T) {
	msg := answer(t, "v6.example.test.", mdns.TypeAAAA,
		&mdns.AAAA{Hdr: hdr("v6.example.test.", mdns.TypeAAAA, 60), AAAA: net.ParseIP("2001:db8::5")},
		&mdns.AAAA{Hdr: hdr("v6.example.test.", mdns.TypeAAAA, 60), AAAA: net.ParseIP("::ffff:192.0.2.99")})
	a, err := Parse(msg, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Query: "v6.example.test", Addr: netip.MustParseAddr("2001:db8::5"), TTL: time.Minute},
		{Query: "v6.example.test", Addr: netip.MustParseAddr("192.0.2.99"), TTL: time.Minute},
	}
	if !recordsEqual(a.Records, want) {
		t.Fatalf("records %+v, want %+v", a.Records, want)
	}
}

func TestParseRcodeAndTC(t *testing.T) {
	q := new(mdns.Msg)
	q.SetQuestion("gone.example.test.", mdns.TypeA)
	m := new(mdns.Msg)
	m.SetRcode(q, mdns.RcodeNameError)
	b, _ := m.Pack()
	a, err := Parse(b, false)
	if err != nil || a.Rcode != mdns.RcodeNameError || len(a.Records) != 0 {
		t.Fatalf("NXDOMAIN: %+v, %v", a, err)
	}
	m = new(mdns.Msg)
	m.SetReply(q)
	m.Truncated = true
	b, _ = m.Pack()
	if a, err = Parse(b, false); err != nil || !a.Truncated {
		t.Fatalf("TC answer: %+v, %v", a, err)
	}
}

func TestParseRejects(t *testing.T) {
	query := new(mdns.Msg)
	query.SetQuestion("example.test.", mdns.TypeA)
	qb, _ := query.Pack()
	good := answer(t, "www.example.test.", mdns.TypeA, cnameChain()...)
	chaos := new(mdns.Msg)
	chaos.SetReply(query)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	cb, _ := chaos.Pack()
	for name, msg := range map[string][]byte{
		"empty":         nil,
		"short header":  good[:5],
		"a query":       qb,
		"cut, not said": good[:len(good)-3],
		"class CHAOS":   cb,
		"garbage":       []byte(strings.Repeat("\xff", 64)),
	} {
		if a, err := Parse(msg, false); err == nil {
			t.Errorf("%s: parsed as %+v", name, a)
		}
	}
}

// TestParseCut: a capture cut short keeps the records that arrived whole.
func TestParseCut(t *testing.T) {
	var rrs []mdns.RR
	for i := range 50 {
		rrs = append(rrs, &mdns.A{Hdr: hdr("many.example.test.", mdns.TypeA, 60), A: net.IPv4(10, 0, 0, byte(i+1))})
	}
	msg := answer(t, "many.example.test.", mdns.TypeA, rrs...)
	cut := msg[:len(msg)/2]
	if _, err := Parse(cut, false); err == nil {
		t.Fatal("a cut message parsed strictly without error")
	}
	a, err := Parse(cut, true)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Incomplete || len(a.Records) < 20 || len(a.Records) >= 50 {
		t.Fatalf("cut answer: incomplete=%v with %d records, want some but not all 50", a.Incomplete, len(a.Records))
	}
	for i, r := range a.Records {
		if r.Addr != netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}) {
			t.Fatalf("record %d is %v", i, r.Addr)
		}
	}
	if _, err := Parse(msg[:14], true); err == nil {
		t.Fatal("a message cut inside its question parsed")
	}
}

func TestParseCNAMELoop(t *testing.T) {
	msg := answer(t, "a.test.", mdns.TypeA,
		&mdns.CNAME{Hdr: hdr("a.test.", mdns.TypeCNAME, 60), Target: "b.test."},
		&mdns.CNAME{Hdr: hdr("b.test.", mdns.TypeCNAME, 60), Target: "a.test."},
		&mdns.A{Hdr: hdr("b.test.", mdns.TypeA, 60), A: net.IPv4(192, 0, 2, 1)})
	a, err := Parse(msg, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Records) != 1 || a.Records[0].Addr != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("records %+v", a.Records)
	}
}

// FuzzParse feeds arbitrary bytes, cut or not: Parse must never panic, and every record it returns must be a
// valid address for a normalized name.
func FuzzParse(f *testing.F) {
	f.Add(answer(f, "www.example.test.", mdns.TypeA, cnameChain()...), false)
	f.Add(answer(f, "v6.example.test.", mdns.TypeAAAA,
		&mdns.AAAA{Hdr: hdr("v6.example.test.", mdns.TypeAAAA, 60), AAAA: net.ParseIP("2001:db8::5")}), false)
	big := answer(f, "big.example.test.", mdns.TypeA, slices.Repeat([]mdns.RR{&mdns.A{Hdr: hdr("big.example.test.", mdns.TypeA, 9), A: net.IPv4(10, 1, 2, 3)}}, 40)...)
	f.Add(big, false)
	f.Add(big[:300], true)
	f.Fuzz(func(t *testing.T, msg []byte, cut bool) {
		for _, r := range ParseReverse(msg, cut) {
			if !r.Addr.IsValid() || r.Name == "" {
				t.Fatalf("bad reverse record %+v", r)
			}
		}
		a, err := Parse(msg, cut)
		if err != nil {
			return
		}
		for _, r := range a.Records {
			if !r.Addr.IsValid() || r.Addr.Is4In6() || r.Query != a.Question || r.TTL < 0 {
				t.Fatalf("bad record %+v in %+v", r, a)
			}
		}
	})
}
