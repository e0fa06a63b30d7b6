package enforce

import (
	"fmt"
	"math/bits"

	"github.com/tattlefw/tattle/shared/identity"
)

// Marks is the SO_MARK layout of undecided sockets (bpf/mark.h explains the parts). Netfilter matches Held to
// queue a socket's new packets to the helper, and Strict to drop rather than pass them while no helper reads
// the queue; the helper reads Token to tell which application sent a queued packet. Deny is never set by the
// kernel programs: the helper puts it on a held packet it refuses, and a netfilter rule rejects that packet.
type Marks struct {
	Held   uint32
	Strict uint32
	Deny   uint32
	Token  uint32 // contiguous bits
}

// DefaultMarks keeps Tattle's bits in 0x7fff0000, clear of the low bits VPNs and routing daemons use.
var DefaultMarks = Marks{Held: 0x10000000, Strict: 0x40000000, Deny: 0x20000000, Token: 0x0fff0000}

// All is every bit Tattle owns.
func (m Marks) All() uint32 { return m.Held | m.Strict | m.Deny | m.Token }

// Validate checks that the parts are non-empty (Held, Deny, Token; Strict may be empty) and disjoint, that
// Held, Strict and Deny are single bits, and that Token is contiguous.
func (m Marks) Validate() error {
	for _, b := range []struct {
		name string
		v    uint32
		need bool
	}{{"held", m.Held, true}, {"strict", m.Strict, false}, {"deny", m.Deny, true}} {
		if (b.need || b.v != 0) && bits.OnesCount32(b.v) != 1 {
			return fmt.Errorf("mark layout: the %s mark must be one bit, not %#x", b.name, b.v)
		}
	}
	if m.Token == 0 || bits.OnesCount32((m.Token>>m.tokenShift())+1) != 1 {
		return fmt.Errorf("mark layout: the token mask %#x must be contiguous bits", m.Token)
	}
	if bits.OnesCount32(m.Held)+bits.OnesCount32(m.Strict)+bits.OnesCount32(m.Deny)+bits.OnesCount32(m.Token) !=
		bits.OnesCount32(m.All()) {
		return fmt.Errorf("mark layout: held %#x, strict %#x, deny %#x and token %#x overlap", m.Held, m.Strict, m.Deny, m.Token)
	}
	return nil
}

func (m Marks) tokenShift() uint32 { return uint32(bits.TrailingZeros32(m.Token)) }

// TokenOf returns the token bits the kernel puts on undecided sockets of app run by uid (bpf/mark.h
// identity_token).
func (m Marks) TokenOf(app identity.Executable, uid uint32) uint32 {
	h := app.Ino * 0x9E3779B97F4A7C15
	h ^= (uint64(app.KernelDev())<<32 | uint64(uid)) * 0xC2B2AE3D27D4EB4F
	h *= 0x165667B19E3779F9
	return (uint32(h>>32) << m.tokenShift()) & m.Token
}

// TokenIn returns the token bits of a packet or socket mark.
func (m Marks) TokenIn(mark uint32) uint32 { return mark & m.Token }
