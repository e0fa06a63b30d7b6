package enforce

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tattlefw/tattle/bpf"
)

// Ruling is an installed verdict and the rule it came from.
type Ruling struct {
	Verdict Verdict
	RuleID  uint32
}

// Verdicts is the complete kernel rule state, as the rule compiler wants it.
type Verdicts struct {
	Defaults     map[Scope]Ruling
	Destinations map[Destination]Ruling
}

// Replace makes the kernel's verdicts exactly v: entries are added and changed first, stale ones removed
// after, and cached flow verdicts are invalidated once at the end. Attempts during the update see either the
// old or the new verdict of each entry, never an empty rule set.
func (e *Enforcer) Replace(v Verdicts) error {
	wantDest := map[bpf.CgroupDestKey]bpf.CgroupDestRule{}
	destScopes := map[scopeKey]int{}
	denyScopes := map[scopeKey]bool{}
	for d, r := range v.Destinations {
		if !r.Verdict.installable() {
			return fmt.Errorf("destination %v: verdict must be allow, deny or ask, not %v", d, r.Verdict)
		}
		keys, bits, err := d.keys()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, dup := wantDest[k]; dup {
				return fmt.Errorf("destination %v: given twice (protocol any overlaps tcp or udp)", d)
			}
			wantDest[k] = bpf.CgroupDestRule{RuleId: r.RuleID, Verdict: uint8(r.Verdict), AddrPrefix: bits}
			destScopes[scopeKeyOf(d.Scope)]++
			if r.Verdict == Deny {
				denyScopes[scopeKeyOf(d.Scope)] = true
			}
		}
	}
	wantScope := map[scopeKey]bpf.CgroupScopeRule{}
	for s, r := range v.Defaults {
		if !r.Verdict.installable() {
			return fmt.Errorf("default for %v: verdict must be allow, deny or ask, not %v", s.App, r.Verdict)
		}
		wantScope[scopeKeyOf(s)] = bpf.CgroupScopeRule{RuleId: r.RuleID, Verdict: uint8(r.Verdict)}
		if r.Verdict == Deny {
			denyScopes[scopeKeyOf(s)] = true
		}
	}
	for k, n := range destScopes {
		sr := wantScope[k]
		sr.HasDest = boolByte(n > 0)
		wantScope[k] = sr
	}
	// The kernel holds an application's undecided packets strictly (dropped while no helper runs) once any of
	// its verdicts denies something.
	for k := range denyScopes {
		if sr, ok := wantScope[k]; ok && k.Ino != 0 {
			sr.HasDeny = 1
			wantScope[k] = sr
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	// Destinations before scopes: a scope's has_dest flag must never point at rules not yet there.
	changed, err := putChanged(e.maps.DestRules, wantDest)
	if err != nil {
		return fmt.Errorf("install destination verdict: %w", err)
	}
	n, err := putChanged(e.maps.ScopeRules, wantScope)
	if err != nil {
		return fmt.Errorf("install scope verdict: %w", err)
	}
	changed += n
	if n, err = deleteExcept(e.maps.ScopeRules, func(k *scopeKey) bool { _, ok := wantScope[*k]; return ok }); err != nil {
		return err
	}
	changed += n
	if n, err = deleteExcept(e.maps.DestRules, func(k *bpf.CgroupDestKey) bool { _, ok := wantDest[*k]; return ok }); err != nil {
		return err
	}
	changed += n
	e.destCount = destScopes
	if changed == 0 {
		// Nothing moved (a periodic recheck, say): cached flow verdicts, learned ones included, stay valid.
		return nil
	}
	return e.bumpGeneration()
}

// putChanged writes the entries of want that m does not already hold with the same value, and counts them.
func putChanged[K, V comparable](m *ebpf.Map, want map[K]V) (int, error) {
	n := 0
	for k, v := range want {
		var cur V
		if err := m.Lookup(&k, &cur); err == nil && cur == v {
			continue
		}
		if err := m.Put(&k, &v); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// deleteExcept removes every entry of m whose key keep rejects, and counts them.
func deleteExcept[K any](m *ebpf.Map, keep func(*K) bool) (int, error) {
	var (
		k     K
		stale []K
	)
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&k, &val) {
		if !keep(&k) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("list installed verdicts: %w", err)
	}
	for i := range stale {
		if err := m.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("remove stale verdict: %w", err)
		}
	}
	return len(stale), nil
}
