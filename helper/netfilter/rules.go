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
//
// The table stays when the helper exits (that is what makes the fail policy work while it is not running) and
// is removed by `tattled -uninstall`. Where the kernel lacks the native queue expression (CONFIG_NFT_QUEUE off,
// as on these test machines' host kernel) the xtables NFQUEUE target is used through nft_compat instead.
package netfilter

import (
	"encoding/binary"
	"errors"
	"fmt"

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

	if copyMark {
		c.AddRule(&nftables.Rule{Table: t, Chain: hold, Exprs: copySocketMark(r.Held)})
	}
	if r.Strict != 0 {
		c.AddRule(&nftables.Rule{Table: t, Chain: hold,
			Exprs: concat(markHas(r.Strict), ctNew(), queue(m, r.Queue, false))})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: hold,
		Exprs: concat(markHas(r.Held), ctNew(), queue(m, r.Queue, r.PassWhenAbsent))})

	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markHas(r.Deny), l4proto(unix.IPPROTO_TCP),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})})
	c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: concat(markHas(r.Deny),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})})
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

// ctNew matches packets of connections conntrack has not seen answered: a connection's SYN and its
// retransmissions, a UDP flow's datagrams until a reply comes.
func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
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
