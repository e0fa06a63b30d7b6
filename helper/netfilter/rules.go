// Package netfilter installs the netfilter rules that hold undecided connections, and reads the packets they
// queue.
//
// One nftables table (inet tattle) has two chains on the output hook:
//
//	hold   (priority mangle): new packets of sockets the kernel programs marked undecided go to the helper's
//	       queue. Strictly held ones (applications with a deny rule) are dropped while no helper reads the
//	       queue; the rest are passed or dropped as the fail policy says.
//	refuse (priority filter): a held packet the helper refused comes back with the deny mark and is answered
//	       with a TCP reset (or ICMP port unreachable), so the application fails at once instead of timing out.
//	       A held UDP datagram that got through (accepted, or passed while no helper ran) puts its address pair
//	       in a set, so the rest of that socket's datagrams pass the hold chain without being queued again.
//
// No rule uses connection tracking: a ct expression anywhere in the table turns conntrack on for every packet
// of the namespace, which is most of what the table used to cost bulk traffic. "New" is decided without it: a
// TCP packet is new when it is a SYN (the first one and its retransmissions), a UDP datagram until one of its
// socket's address pair was let through (the set's entries expire after udpPassTimeout without traffic, like
// conntrack's UDP timeout). Packets without Tattle's held bit leave each chain after its first rule.
//
// The table stays when the helper exits (that is what makes the fail policy work while it is not running) and
// is removed by `tattled -uninstall`. Where the kernel lacks the native queue expression (CONFIG_NFT_QUEUE off,
// as on these test machines' host kernel) the xtables NFQUEUE target is used through nft_compat instead.
package netfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// Method is how packets reach the queue.
type Method string

const (
	MethodNative  Method = "nftables queue"
	MethodXtables Method = "xtables NFQUEUE"
)

// DefaultTable and DefaultQueue name Tattle's table and queue.
const (
	DefaultTable        = "tattle"
	DefaultQueue uint16 = 7451
)

// Rules describe the table to install.
type Rules struct {
	Table  string // DefaultTable when empty
	Queue  uint16 // DefaultQueue when zero
	Held   uint32 // mark bit of undecided sockets
	Strict uint32 // mark bit of undecided sockets of applications with a deny rule (0: none)
	Deny   uint32 // mark bit the helper puts on packets it refuses
	// PassWhenAbsent passes held packets (not strict ones) while no helper reads the queue; otherwise they are
	// dropped.
	PassWhenAbsent bool
}

func (r *Rules) fill() {
	if r.Table == "" {
		r.Table = DefaultTable
	}
	if r.Queue == 0 {
		r.Queue = DefaultQueue
	}
}

// Install replaces Tattle's table with one built from r, in one transaction: packets see the old rules or the
// new ones, never none. It prefers the native queue expression and reports which method it used.
func Install(r Rules) (Method, error) {
	r.fill()
	if r.Held == 0 || r.Deny == 0 {
		return "", errors.New("netfilter rules: the held and deny marks must be set")
	}
	var errs []error
	for _, m := range []Method{MethodNative, MethodXtables} {
		// Without nft_socket the first datagram of an unconnected UDP socket slips through unheld (see
		// copySocketMark); everything else still works, so that is the last resort.
		for _, copyMark := range []bool{true, false} {
			err := install(r, m, copyMark)
			if err == nil {
				if !copyMark {
					return m, fmt.Errorf("%w (%v)", ErrNoSocketMark, errs[len(errs)-1])
				}
				return m, nil
			}
			errs = append(errs, err)
		}
	}
	return "", fmt.Errorf("install netfilter rules (%w); the kernel needs nf_tables with nft_queue, or nft_compat "+
		"with xt_NFQUEUE", errors.Join(errs...))
}

// ErrNoSocketMark comes with a working Method when the kernel lacks the socket expression (nft_socket): the
// rules are in place, but the first datagram an unconnected UDP socket sends to an undecided destination is not
// held.
var ErrNoSocketMark = errors.New("netfilter rules installed without the socket mark copy (nft_socket missing)")

// Uninstall removes Tattle's table. A table that is not there is not an error.
func Uninstall(table string) error {
	if table == "" {
		table = DefaultTable
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	if _, err := c.ListTableOfFamily(table, nftables.TableFamilyINet); err != nil {
		return nil
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", table, err)
	}
	return nil
}

// Installed reports whether Tattle's table exists.
func Installed(table string) (bool, error) {
	if table == "" {
		table = DefaultTable
	}
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("open nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == table {
			return true, nil
		}
	}
	return false, nil
}

func install(r Rules, m Method, copyMark bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Name: r.Table, Family: nftables.TableFamilyINet}
	// Adding then deleting an empty table makes "delete" safe when it does not exist yet; the whole batch is one
	// transaction.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	hold := c.AddChain(&nftables.Chain{Name: "hold", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
	refuse := c.AddChain(&nftables.Chain{Name: "refuse", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})

	// Sets of the UDP address pairs (source address, port, destination address, port) already let through.
	passed4 := &nftables.Set{Table: t, Name: "udp_passed4", HasTimeout: true, Dynamic: true, Timeout: udpPassTimeout,
		Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService,
			nftables.TypeIPAddr, nftables.TypeInetService), Size: udpPassMax}
	passed6 := &nftables.Set{Table: t, Name: "udp_passed6", HasTimeout: true, Dynamic: true, Timeout: udpPassTimeout,
		Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService,
			nftables.TypeIP6Addr, nftables.TypeInetService), Size: udpPassMax}
	for _, set := range []*nftables.Set{passed4, passed6} {
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("add set %s: %w", set.Name, err)
		}
	}

	if copyMark {
		c.AddRule(&nftables.Rule{Table: t, Chain: hold, Exprs: copySocketMark(r.Held)})
	}
	// Everything not held (nearly all traffic) stops here.
	c.AddRule(&nftables.Rule{Table: t, Chain: hold, Exprs: concat(markLacks(r.Held), accept())})
	for _, p := range []struct {
		set   *nftables.Set
		proto nftables.TableFamily
	}{{passed4, nftables.TableFamilyIPv4}, {passed6, nftables.TableFamilyIPv6}} {
		c.AddRule(&nftables.Rule{Table: t, Chain: hold, Exprs: concat(l4proto(unix.IPPROTO_UDP), nfproto(p.proto),
			udpPair(p.proto), []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: p.set.Name, SetID: p.set.ID}},
			udpPair(p.proto), []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: p.set.Name, SetID: p.set.ID,
				Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)}}, accept())})
	}
	for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		if r.Strict != 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: hold,
				Exprs: concat(markHas(r.Strict), isNew(proto), queue(m, r.Queue, false))})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: hold,
			Exprs: concat(markHas(r.Held), isNew(proto), queue(m, r.Queue, r.PassWhenAbsent))})
	}

	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markLacks(r.Held|r.Deny), accept())})
	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markHas(r.Deny), l4proto(unix.IPPROTO_TCP),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})})
	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markHas(r.Deny),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})})
	for _, p := range []struct {
		set   *nftables.Set
		proto nftables.TableFamily
	}{{passed4, nftables.TableFamilyIPv4}, {passed6, nftables.TableFamilyIPv6}} {
		c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markHas(r.Held), l4proto(unix.IPPROTO_UDP),
			nfproto(p.proto), udpPair(p.proto), []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: p.set.Name,
				SetID: p.set.ID, Operation: uint32(unix.NFT_DYNSET_OP_ADD)}})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table inet %s: %w", r.Table, err)
	}
	return nil
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// markHas matches packets whose mark has bit set (the application's own bits are ignored).
func markHas(bit uint32) []expr.Any {
	b := binary.NativeEndian.AppendUint32(nil, bit)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// copySocketMark gives a UDP packet its socket's mark when the socket is held but the packet is not. The
// cgroup sendmsg hook marks an unconnected socket during the very sendmsg whose datagram it decides, after the
// kernel took the packet's mark from the socket, so without this the first datagram would leave unmarked.
func copySocketMark(held uint32) []expr.Any {
	b := binary.NativeEndian.AppendUint32(nil, held)
	zero := make([]byte, 4)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: zero},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: zero},
		&expr.Socket{Key: expr.SocketKeyMark, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: zero},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
		&expr.Socket{Key: expr.SocketKeyMark, Register: 1},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// How long a UDP address pair that was let through stays known without traffic (conntrack's UDP stream
// timeout), and how many pairs are kept.
const (
	udpPassTimeout = 120 * time.Second
	udpPassMax     = 65536
)

// markLacks matches packets whose mark has none of bits.
func markLacks(bits uint32) []expr.Any {
	zero := make([]byte, 4)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: zero},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: zero},
	}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// isNew matches the packets of proto that open a conversation without conntrack's help: a TCP SYN without
// ACK (a connection's first packet and its retransmissions); any UDP datagram (the ones of an address pair
// already let through were accepted by an earlier rule).
func isNew(proto byte) []expr.Any {
	if proto == unix.IPPROTO_UDP {
		return l4proto(proto)
	}
	const syn, ack = 0x02, 0x10
	return concat(l4proto(proto), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
	})
}

func nfproto(f nftables.TableFamily) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(f)}},
	}
}

// udpPair loads a UDP datagram's (source address, source port, destination address, destination port) into
// consecutive 32-bit registers from register 1 on, the layout of a concatenated set key.
func udpPair(f nftables.TableFamily) []expr.Any {
	saddr, daddr, alen := uint32(12), uint32(16), uint32(4)
	if f == nftables.TableFamilyIPv6 {
		saddr, daddr, alen = 8, 24, 16
	}
	// 32-bit registers are numbered from 8 (NFT_REG32_00, which overlaps the 16-byte register 1).
	const reg32 = 8
	sport := reg32 + alen/4
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddr, Len: alen},
		&expr.Payload{DestRegister: sport, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: sport + 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: alen},
		&expr.Payload{DestRegister: sport + 1 + alen/4, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// xtNFQueueV3 is struct xt_NFQ_info_v3 (queuenum, queues_total, flags), padded to XT_ALIGN.
func xtNFQueueV3(num uint16, bypass bool) xt.InfoAny {
	const flagBypass = 0x01
	info := make([]byte, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], flagBypass)
	}
	u := xt.Unknown(info)
	return &u
}

func queue(m Method, num uint16, bypass bool) []expr.Any {
	if m == MethodXtables {
		return []expr.Any{&expr.Target{Name: "NFQUEUE", Rev: 3, Info: xtNFQueueV3(num, bypass)}}
	}
	q := &expr.Queue{Num: num, Total: 1}
	if bypass {
		q.Flag = expr.QueueFlagBypass
	}
	return []expr.Any{q}
}
