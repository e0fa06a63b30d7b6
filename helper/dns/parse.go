// Package dns learns which names an address belongs to: it parses DNS answers (captured in the kernel or
// reported by systemd-resolved) into name -> address records, keeps them in a bounded cache per application
// and globally with TTL expiry, and matches names against the host, domain and wildcard patterns of rules.
package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// MaxChain bounds how many CNAME links are followed from the question; resolvers stop at similar depths
// (glibc at 16), and it keeps a looping chain from running forever.
const MaxChain = 16

// Record is one name -> address mapping an answer establishes.
type Record struct {
	Query     string        // the name asked for: lower case, no trailing dot
	Canonical []string      // CNAME targets followed from Query, in order (the last owns Addr); empty without CNAMEs
	Addr      netip.Addr    // an A or AAAA address (IPv4 as IPv4, never IPv4-mapped)
	TTL       time.Duration // how long the mapping holds: the smallest TTL along the chain and the address record
}

// Answer is a parsed DNS response.
type Answer struct {
	Question   string // the name asked for: lower case, no trailing dot ("" for the root)
	Qtype      uint16 // A, AAAA, …
	Rcode      int    // 0 for NOERROR, 3 for NXDOMAIN, …
	Truncated  bool   // the TC bit: the server had more than fitted; the client retries over TCP
	Incomplete bool   // the message was cut short in capture; Records holds what the complete records gave
	Records    []Record
}

// Parse parses a DNS response. cut says the capture cut the message short (dnscapture.Packet.Truncated): then
// the records that arrived whole are used and Answer.Incomplete is set; otherwise any malformation is an
// error. Only address records reachable from the question through the CNAME chain count, so an answer cannot
// plant mappings for names nobody asked about. Parse never panics on any input.
func Parse(msg []byte, cut bool) (Answer, error) {
	m := new(mdns.Msg)
	err := m.Unpack(msg)
	switch {
	case err == nil:
	case cut:
		m, err = unpackPrefix(msg)
		if err != nil {
			return Answer{}, err
		}
	default:
		return Answer{}, fmt.Errorf("malformed DNS message: %w", err)
	}
	if !m.Response {
		return Answer{}, errors.New("DNS message is a query, not a response")
	}
	if m.Opcode != mdns.OpcodeQuery {
		return Answer{}, fmt.Errorf("DNS message has opcode %d, not QUERY", m.Opcode)
	}
	if len(m.Question) != 1 {
		return Answer{}, fmt.Errorf("DNS response has %d questions, want 1", len(m.Question))
	}
	q := m.Question[0]
	if q.Qclass != mdns.ClassINET {
		return Answer{}, fmt.Errorf("DNS response is for class %d, not IN", q.Qclass)
	}
	a := Answer{
		Question:   Normalize(q.Name),
		Qtype:      q.Qtype,
		Rcode:      m.Rcode,
		Truncated:  m.Truncated,
		Incomplete: cut,
	}
	if m.Rcode == mdns.RcodeSuccess {
		a.Records = Records(a.Question, m.Answer)
	}
	return a, nil
}

// Records follows the CNAME chain from query through rrs and returns the address records it reaches. Each
// record's TTL is the smallest along its chain, since the mapping ends when any link does.
func Records(query string, rrs []mdns.RR) []Record {
	query = Normalize(query)
	if query == "" {
		return nil // the root has no addresses; a record for "" would match no rule and mislead the display
	}
	var out []Record
	var chain []string
	name, ttl := query, uint32(1<<31-1)
	seen := map[string]bool{name: true}
	for range MaxChain + 1 {
		next := ""
		for _, rr := range rrs {
			h := rr.Header()
			if h.Class != mdns.ClassINET || Normalize(h.Name) != name {
				continue
			}
			var addr netip.Addr
			switch v := rr.(type) {
			case *mdns.A:
				addr, _ = netip.AddrFromSlice(v.A.To4())
			case *mdns.AAAA:
				addr, _ = netip.AddrFromSlice(v.AAAA.To16())
			case *mdns.CNAME:
				if next == "" {
					next = Normalize(v.Target)
					ttl = min(ttl, h.Ttl)
				}
				continue
			default:
				continue
			}
			if !addr.IsValid() {
				continue
			}
			out = append(out, Record{
				Query:     query,
				Canonical: chain,
				Addr:      addr.Unmap(),
				TTL:       time.Duration(min(ttl, h.Ttl)) * time.Second,
			})
		}
		if next == "" || seen[next] {
			break
		}
		seen[next] = true
		chain = append(chain[:len(chain):len(chain)], next) // a new array: records keep the chain so far
		name = next
	}
	return out
}

// unpackPrefix reads the header, the question and the answer records that arrived whole from a message the
// capture cut short.
func unpackPrefix(msg []byte) (*mdns.Msg, error) {
	if len(msg) < 12 {
		return nil, fmt.Errorf("DNS message of %d bytes is shorter than a header", len(msg))
	}
	m := new(mdns.Msg)
	// The header is the first 12 bytes; unpacking it alone gives the flags without the sections.
	if err := m.Unpack(msg[:12]); err != nil {
		return nil, fmt.Errorf("malformed DNS header: %w", err)
	}
	qd, an := binary.BigEndian.Uint16(msg[4:]), binary.BigEndian.Uint16(msg[6:])
	if qd != 1 {
		return nil, fmt.Errorf("DNS response has %d questions, want 1", qd)
	}
	name, off, err := mdns.UnpackDomainName(msg, 12)
	if err != nil || off+4 > len(msg) {
		return nil, fmt.Errorf("DNS question cut short or malformed: %v", err)
	}
	m.Question = []mdns.Question{{Name: name, Qtype: binary.BigEndian.Uint16(msg[off:]), Qclass: binary.BigEndian.Uint16(msg[off+2:])}}
	off += 4
	for range an {
		rr, next, err := mdns.UnpackRR(msg, off)
		if err != nil || next <= off {
			break // the cut: the rest did not arrive
		}
		m.Answer = append(m.Answer, rr)
		off = next
	}
	return m, nil
}

// Normalize lower-cases a DNS name (ASCII only, as DNS compares names) and drops the trailing dot.
func Normalize(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}
