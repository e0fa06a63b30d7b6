package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tattlefw/tattle/helper/hold"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// learning is the daemon's part in learning mode: the proposals seen (deduplicated, bounded) and the wake-up
// of the timer that ends the mode.
type learning struct {
	mu     sync.Mutex
	seen   *proposals // nil until the first proposal of a run (seeded from the store then)
	wake   chan struct{}
	onMode func(mode string) // announces the mode's end (the Mode property)
}

// proposalKey is what makes two proposals the same: one application (and script), owner, host, port, protocol.
type proposalKey struct {
	App, Via, Owner, Remote, Port, Protocol string
}

func keyOf(r rules.Rule) proposalKey {
	owner := "system"
	if r.Owner != nil {
		owner = fmt.Sprint(*r.Owner)
	}
	return proposalKey{App: r.Application, Via: r.Via, Owner: owner, Remote: r.Remote, Port: r.Port, Protocol: r.Protocol}
}

// proposals deduplicates learned rules and bounds their number.
type proposals struct {
	seen  map[proposalKey]bool
	limit int
	full  bool // the bound was reached (logged once)
}

func newProposals(limit int, existing []rules.Rule) *proposals {
	p := &proposals{seen: map[proposalKey]bool{}, limit: limit}
	for _, r := range existing {
		p.seen[keyOf(r)] = true
	}
	return p
}

// admit reports whether r is a new proposal within the bound (and counts it), and whether the bound has just
// been reached (to be logged once).
func (p *proposals) admit(r rules.Rule) (ok, justFull bool) {
	k := keyOf(r)
	if p.seen[k] {
		return false, false
	}
	if len(p.seen) >= p.limit {
		justFull = !p.full
		p.full = true
		return false, justFull
	}
	p.seen[k] = true
	return true, false
}

// forget drops a key whose proposal could not be stored, so a later attempt tries again.
func (p *proposals) forget(r rules.Rule) { delete(p.seen, keyOf(r)) }

// OnModeChanged sets what announces a mode change the helper makes itself (learning's end). Call before Run.
func (d *Daemon) OnModeChanged(f func(mode string)) { d.learn.onMode = f }

// Learn starts learning mode until until; the daemon returns to alert then by itself (also after a restart).
func (d *Daemon) Learn(until time.Time) error {
	if err := d.store.Learn(until); err != nil {
		return fmt.Errorf("save learning mode: %w", err)
	}
	d.learn.mu.Lock()
	d.learn.seen = nil // reseed from the store: proposals discarded since are proposed again
	d.learn.mu.Unlock()
	select {
	case d.learn.wake <- struct{}{}:
	default:
	}
	d.log.Info("learning mode started", "until", until.UTC().Format(time.RFC3339))
	return nil
}

// learnedRules returns the stored learned proposals.
func (d *Daemon) learnedRules() []rules.Rule {
	var out []rules.Rule
	for _, e := range d.store.Entries() {
		if e.Rule.Learned && !e.Source.ReadOnly {
			out = append(out, e.Rule)
		}
	}
	return out
}

// propose stores a disabled rule for an attempt learning mode allowed: exactly what was seen (the
// executable and script, the user, the host name or else the address, the port and protocol).
func (d *Daemon) propose(a hold.Attempt) {
	named := filepath.IsAbs(a.Exe) || (a.App.IsAppImage() && strings.HasPrefix(a.Exe, identity.AppImagePrefix))
	if a.App.IsUnidentified() || a.Via == api.ViaUnidentified || !named {
		return // no rule can name it
	}
	if a.Host == "" {
		a.Host, _ = d.NamesFor(a.App, a.UID, a.Dest)
	}
	a.Ports = nil
	now := time.Now().UTC().Truncate(time.Second)
	r := hold.RuleFor(a, api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever}, now)
	r.Enabled, r.Unapproved, r.Learned = false, true, true
	r.Note = "learned " + now.Format(time.RFC3339)
	r.SHA256 = d.sha256For(a)
	d.learn.mu.Lock()
	defer d.learn.mu.Unlock()
	if d.learn.seen == nil {
		d.learn.seen = newProposals(api.MaxLearned, d.learnedRules())
	}
	ok, full := d.learn.seen.admit(r)
	if full {
		d.log.Warn("learning mode: too many proposals; further connections are allowed but not proposed", "limit", api.MaxLearned)
	}
	if !ok {
		return
	}
	base := idBase(a)
	stamp := time.Now().UnixNano() / 1e3
	for r.ID = fmt.Sprintf("learned-%s-%d", base, stamp); d.store.HasID(r.ID); stamp++ {
		r.ID = fmt.Sprintf("learned-%s-%d", base, stamp+1)
	}
	if err := d.store.Add([]rules.Rule{r}); err != nil {
		d.learn.seen.forget(r)
		d.log.Warn("learning mode: proposal not stored", "exe", a.Exe, "dest", a.Dest, "error", err)
		return
	}
	d.log.Info("learning mode: rule proposed", "rule", r.ID, "exe", a.Exe, "via", a.Via, "uid", a.UID,
		"remote", r.Remote, "port", r.Port, "protocol", r.Protocol)
	if d.onRulesChanged != nil {
		d.onRulesChanged()
	}
}

// watchLearning ends learning mode at its end time and returns to alert: the flows it allowed are dropped
// from the kernel (Apply), so what was not approved is asked about again.
func (d *Daemon) watchLearning(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		if until := d.store.LearnUntil(); !until.IsZero() {
			if wait = time.Until(until); wait <= 0 {
				d.endLearning()
				continue
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.learn.wake:
		case <-timer.C:
		}
	}
}

func (d *Daemon) endLearning() {
	if err := d.store.SetMode(api.ModeAlert); err != nil {
		d.log.Error("learning mode could not end; retrying", "error", err)
		time.Sleep(time.Second)
		return
	}
	d.log.Info("learning mode ended: back to alert", "proposals", len(d.learnedRules()))
	d.reapply()
	if d.learn.onMode != nil {
		d.learn.onMode(api.ModeAlert)
	}
}
