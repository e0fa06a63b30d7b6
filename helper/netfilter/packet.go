package netfilter

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Headers are the parts of a queued packet the helper decides on.
type Headers struct {
	Proto uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	Src   netip.AddrPort
	Dst   netip.AddrPort
}

var errNotTCPUDP = errors.New("not a TCP or UDP packet")

// ParseHeaders reads the IP and TCP/UDP headers of a packet as netfilter hands it over (starting at the IP
// header). It never reads past data.
func ParseHeaders(data []byte) (Headers, error) {
	if len(data) < 1 {
		return Headers{}, errors.New("empty packet")
	}
	var h Headers
	var l4 []byte
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return h, errors.New("truncated IPv4 header")
		}
		ihl := int(data[0]&0x0f) * 4
		if ihl < 20 || len(data) < ihl {
			return h, errors.New("bad IPv4 header length")
		}
		if binary.BigEndian.Uint16(data[6:8])&0x1fff != 0 {
			return h, errors.New("IPv4 fragment without transport header")
		}
		h.Proto = data[9]
		src := netip.AddrFrom4([4]byte(data[12:16]))
		dst := netip.AddrFrom4([4]byte(data[16:20]))
		l4 = data[ihl:]
		h.Src, h.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	case 6:
		if len(data) < 40 {
			return h, errors.New("truncated IPv6 header")
		}
		next := data[6]
		src := netip.AddrFrom16([16]byte(data[8:24]))
		dst := netip.AddrFrom16([16]byte(data[24:40]))
		rest := data[40:]
		// Skip the extension headers a locally sent packet may carry, a bounded number of them.
		for i := 0; i < 8 && (next == 0 || next == 43 || next == 60); i++ {
			if len(rest) < 8 {
				return h, errors.New("truncated IPv6 extension header")
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				return h, errors.New("truncated IPv6 extension header")
			}
			next, rest = rest[0], rest[n:]
		}
		h.Proto = next
		l4 = rest
		h.Src, h.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	default:
		return h, errors.New("not an IP packet")
	}
	if h.Proto != 6 && h.Proto != 17 {
		return h, errNotTCPUDP
	}
	if len(l4) < 4 {
		return h, errors.New("truncated transport header")
	}
	h.Src = netip.AddrPortFrom(h.Src.Addr(), binary.BigEndian.Uint16(l4[0:2]))
	h.Dst = netip.AddrPortFrom(h.Dst.Addr(), binary.BigEndian.Uint16(l4[2:4]))
	return h, nil
}
