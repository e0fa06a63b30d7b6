package enforce

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// Verdict is what the kernel does with an attempt.
type Verdict uint8

const (
	Undecided Verdict = 0 // let through, mark, and tell the helper
	Allow     Verdict = 1
	Deny      Verdict = 2
	// Ask, in rule maps only, ends the kernel's lookup as undecided: the helper decides, because a rule it
	// evaluates (a hostname, say) applies there and would be overridden by less specific kernel verdicts.
	Ask Verdict = 3
)

func (v Verdict) installable() bool { return v == Allow || v == Deny || v == Ask }

func (v Verdict) String() string {
	return enumString(v, "verdict", []string{Undecided: "undecided", Allow: "allow", Deny: "deny", Ask: "ask"})
}

// enumString is the name of v, names[v], or kind(N) for a value names has none for: the String of the small
// numbered types the kernel programs share (verdicts, protocols, event kinds, hooks), which logs show.
func enumString[T ~uint8](v T, kind string, names []string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, uint8(v))
}

// Protocol is an IP protocol number the kernel programs decide on.
type Protocol uint8

const (
	AnyProtocol Protocol = 0
	TCP         Protocol = 6
	UDP         Protocol = 17
)

func (p Protocol) String() string {
	return enumString(p, "proto", []string{AnyProtocol: "any", TCP: "tcp", UDP: "udp"})
}

// Scope says whose attempts a verdict applies to: one executable or any (identity.Any), as run by one uid or
// by any (identity.AnyUID).
type Scope struct {
	App identity.Executable
	UID uint32
}

// Precedence when several verdicts could apply (most specific first, first hit decides):
//  1. scope: (app, uid), (app, any uid), (any app, uid), (any app, any uid)
//  2. within a scope: destination verdicts, longest address prefix first; on equal prefixes an exact port beats
//     any port; then the scope's default verdict
// Verdicts installed for one key replace each other; resolving ties between rules (deny beats allow) is the
// rule compiler's job before it installs them.

type scopeKey = bpf.CgroupScopeKey

func scopeKeyOf(s Scope) scopeKey {
	return scopeKey{Ino: s.App.Ino, Dev: s.App.KernelDev(), Uid: s.UID}
}

// SetDefault installs the verdict for everything a scope does that no destination verdict of the same scope
// covers (for example "deny application A").
func (e *Enforcer) SetDefault(s Scope, v Verdict, ruleID uint32) error {
	if !v.installable() {
		return fmt.Errorf("default verdict for %v: must be allow, deny or ask, not %v", s.App, v)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := scopeKeyOf(s)
	var cur bpf.CgroupScopeRule
	if err := e.maps.ScopeRules.Lookup(&k, &cur); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read scope %v: %w", s, err)
	}
	cur.Verdict = uint8(v)
	cur.RuleId = ruleID
	cur.HasDest = boolByte(e.destCount[k] > 0)
	if v == Deny && k.Ino != 0 {
		cur.HasDeny = 1 // kept until Replace recomputes it: holding strictly is the safe side
	}
	if err := e.maps.ScopeRules.Put(&k, &cur); err != nil {
		return fmt.Errorf("install default verdict for %v: %w", s, err)
	}
	return e.bumpGeneration()
}

// ClearDefault removes a scope's default verdict; its destination verdicts stay.
func (e *Enforcer) ClearDefault(s Scope) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := scopeKeyOf(s)
	if err := e.syncScope(k, true); err != nil {
		return err
	}
	return e.bumpGeneration()
}

// Destination is a verdict for one scope's attempts to an address prefix, port and protocol.
type Destination struct {
	Scope  Scope
	Prefix netip.Prefix // IPv4 is kept IPv4-mapped: 0.0.0.0/0 is any IPv4 address, ::/0 any address at all
	Port   uint16       // 0: any port
	Proto  Protocol     // AnyProtocol installs the verdict for TCP and UDP
}

func (d Destination) String() string {
	return fmt.Sprintf("%v uid=%d %s port %d %s", d.Scope.App, d.Scope.UID, d.Prefix, d.Port, d.Proto)
}

func (d Destination) keys() ([]bpf.CgroupDestKey, uint8, error) {
	if !d.Prefix.IsValid() {
		return nil, 0, fmt.Errorf("destination %v: invalid prefix", d)
	}
	if d.Prefix.Addr().Is4In6() && d.Prefix.Bits() < 96 {
		return nil, 0, fmt.Errorf("destination %v: an IPv4-mapped prefix must be at least /96", d)
	}
	p := d.Prefix.Masked()
	addr := p.Addr()
	bits := p.Bits()
	if addr.Is4() {
		addr = netip.AddrFrom16(addr.As16())
		bits += 96
	}
	protos := []Protocol{d.Proto}
	switch d.Proto {
	case AnyProtocol:
		protos = []Protocol{TCP, UDP}
	case TCP, UDP:
	default:
		return nil, 0, fmt.Errorf("destination %v: protocol must be tcp, udp or any", d)
	}
	sk := scopeKeyOf(d.Scope)
	keys := make([]bpf.CgroupDestKey, 0, len(protos))
	for _, proto := range protos {
		keys = append(keys, bpf.CgroupDestKey{
			Prefixlen: 160 + uint32(bits),
			Dev:       sk.Dev,
			Ino:       sk.Ino,
			Uid:       sk.Uid,
			Proto:     uint8(proto),
			Port:      d.Port,
			Addr:      addr.As16(),
		})
	}
	return keys, uint8(bits), nil
}

// putDestination writes a destination's entries and keeps its scope's count and has_dest flag right. Callers
// hold e.mu.
func (e *Enforcer) putDestination(d Destination, keys []bpf.CgroupDestKey, bits uint8, v Verdict, ruleID uint32) error {
	for i := range keys {
		var old bpf.CgroupDestRule
		existed := true
		if err := e.maps.DestRules.Lookup(&keys[i], &old); errors.Is(err, ebpf.ErrKeyNotExist) {
			existed = false
		} else if err != nil {
			return fmt.Errorf("read destination verdict %v: %w", d, err)
		}
		val := bpf.CgroupDestRule{RuleId: ruleID, Verdict: uint8(v), AddrPrefix: bits}
		if err := e.maps.DestRules.Put(&keys[i], &val); err != nil {
			return fmt.Errorf("install destination verdict %v: %w", d, err)
		}
		if !existed {
			sk := scopeKeyOf(d.Scope)
			e.destCount[sk]++
			if err := e.syncScope(sk, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeDestination deletes a destination's entries (absent ones are fine) and keeps its scope right. Callers
// hold e.mu.
func (e *Enforcer) removeDestination(d Destination) error {
	keys, _, err := d.keys()
	if err != nil {
		return err
	}
	for i := range keys {
		err := e.maps.DestRules.Delete(&keys[i])
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove destination verdict %v: %w", d, err)
		}
		sk := scopeKeyOf(d.Scope)
		if e.destCount[sk]--; e.destCount[sk] <= 0 {
			delete(e.destCount, sk)
		}
		if err := e.syncScope(sk, false); err != nil {
			return err
		}
	}
	return nil
}

// SetDestination installs a destination verdict, replacing one for the same destination.
func (e *Enforcer) SetDestination(d Destination, v Verdict, ruleID uint32) error {
	keys, bits, err := d.keys()
	if err != nil {
		return err
	}
	if !v.installable() {
		return fmt.Errorf("destination %v: verdict must be allow, deny or ask, not %v", d, v)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.putDestination(d, keys, bits, v, ruleID); err != nil {
		return err
	}
	if sk := scopeKeyOf(d.Scope); v == Deny && sk.Ino != 0 {
		var cur bpf.CgroupScopeRule
		if err := e.maps.ScopeRules.Lookup(&sk, &cur); err != nil {
			return fmt.Errorf("read scope: %w", err)
		}
		cur.HasDeny = 1 // kept until Replace recomputes it: holding strictly is the safe side
		if err := e.maps.ScopeRules.Put(&sk, &cur); err != nil {
			return fmt.Errorf("update scope: %w", err)
		}
	}
	return e.bumpGeneration()
}

// ClearDestination removes a destination verdict. Removing one that is not installed is not an error.
func (e *Enforcer) ClearDestination(d Destination) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.removeDestination(d); err != nil {
		return err
	}
	return e.bumpGeneration()
}

// syncScope makes the scope entry agree with destCount, and drops its default verdict when clearDefault is set.
// A scope with neither a default nor destination verdicts is removed, so the kernel skips it. Callers hold e.mu.
func (e *Enforcer) syncScope(k scopeKey, clearDefault bool) error {
	var cur bpf.CgroupScopeRule
	if err := e.maps.ScopeRules.Lookup(&k, &cur); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read scope: %w", err)
	}
	if clearDefault {
		cur.Verdict = 0
		cur.RuleId = 0
	}
	cur.HasDest = boolByte(e.destCount[k] > 0)
	if cur.Verdict == 0 && cur.HasDest == 0 {
		if err := e.maps.ScopeRules.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove scope: %w", err)
		}
		return nil
	}
	if err := e.maps.ScopeRules.Put(&k, &cur); err != nil {
		return fmt.Errorf("update scope: %w", err)
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// loadDestCounts rebuilds the per-scope destination counts from the (possibly pinned) trie.
func (e *Enforcer) loadDestCounts() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.destCount = map[scopeKey]int{}
	var k bpf.CgroupDestKey
	var v bpf.CgroupDestRule
	it := e.maps.DestRules.Iterate()
	for it.Next(&k, &v) {
		e.destCount[scopeKey{Ino: k.Ino, Dev: k.Dev, Uid: k.Uid}]++
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read destination verdicts: %w", err)
	}
	return nil
}

// bumpGeneration invalidates every verdict the kernel cached in its flow table, so the next attempt of each
// flow is evaluated against the new rules. Callers hold e.mu.
func (e *Enforcer) bumpGeneration() error {
	var cfg bpf.CgroupConfig
	if err := e.maps.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read kernel config: %w", err)
	}
	cfg.Generation++
	if err := e.maps.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("write kernel config: %w", err)
	}
	return nil
}

func (e *Enforcer) setMarks(m Marks) error {
	if err := m.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var cfg bpf.CgroupConfig
	if err := e.maps.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read kernel config: %w", err)
	}
	cfg.Mark, cfg.StrictMark, cfg.TokenMask, cfg.TokenShift = m.Held, m.Strict, m.Token, m.tokenShift()
	cfg.Generation++
	if err := e.maps.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("write kernel config: %w", err)
	}
	e.marks = m
	return nil
}

// Marks returns the SO_MARK layout of undecided sockets.
func (e *Enforcer) Marks() Marks { return e.marks }

// ClearAll removes every verdict: all attempts become undecided.
func (e *Enforcer) ClearAll() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range []*ebpf.Map{e.maps.DestRules, e.maps.ScopeRules} {
		var keys [][]byte
		k := make([]byte, m.KeySize())
		it := m.Iterate()
		v := make([]byte, m.ValueSize())
		for it.Next(&k, &v) {
			keys = append(keys, append([]byte(nil), k...))
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("list verdicts: %w", err)
		}
		for _, key := range keys {
			if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove verdict: %w", err)
			}
		}
	}
	e.destCount = map[scopeKey]int{}
	return e.bumpGeneration()
}

// DNSSocket returns who owns the socket with this cookie, if it sent a DNS query (to port 53) recently.
func (e *Enforcer) DNSSocket(cookie uint64) (app identity.Executable, uid, tgid uint32, ok bool) {
	var ds bpf.CgroupDnsSock
	if err := e.maps.DNSSocks.Lookup(&cookie, &ds); err != nil {
		return identity.Executable{}, 0, 0, false
	}
	return identity.FromKernel(ds.Dev, ds.Ino), ds.Uid, ds.Tgid, true
}

// SetLearnedDestination installs a destination verdict learned from DNS (a name rule's address) without
// invalidating cached flow verdicts: a new, more specific entry only decides what was undecided or asked before
// (the helper checks that no other entry of the scope covers the address). Removing one must invalidate them:
// ClearLearnedDestinations does.
func (e *Enforcer) SetLearnedDestination(d Destination, v Verdict, ruleID uint32) error {
	keys, bits, err := d.keys()
	if err != nil {
		return err
	}
	if v != Allow && v != Deny {
		return fmt.Errorf("learned destination %v: verdict must be allow or deny, not %v", d, v)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.putDestination(d, keys, bits, v, ruleID)
}

// ClearLearnedDestinations removes learned destination verdicts and invalidates cached flow verdicts once.
func (e *Enforcer) ClearLearnedDestinations(ds []Destination) error {
	if len(ds) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range ds {
		if err := e.removeDestination(d); err != nil {
			return err
		}
	}
	return e.bumpGeneration()
}

// HasDestination reports whether a destination entry is installed (for tests and diagnostics).
func (e *Enforcer) HasDestination(d Destination) (Verdict, bool, error) {
	keys, _, err := d.keys()
	if err != nil {
		return 0, false, err
	}
	var r bpf.CgroupDestRule
	if err := e.maps.DestRules.Lookup(&keys[0], &r); errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	return Verdict(r.Verdict), true, nil
}

// DefaultOf returns the default verdict installed for a scope, if any (for tests and diagnostics).
func (e *Enforcer) DefaultOf(s Scope) (Verdict, bool, error) {
	k := scopeKeyOf(s)
	var cur bpf.CgroupScopeRule
	if err := e.maps.ScopeRules.Lookup(&k, &cur); errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	return Verdict(cur.Verdict), cur.Verdict != 0, nil
}
