// Package flows keeps the monitor's picture of connections: the helper's flows grouped by application, merged
// incrementally from snapshots and FlowsChanged batches, with per-application activity history for the
// sparkline and the filter the monitor view applies. It has no GTK in it, so it is tested on its own; the
// view turns each Change into row updates.
package flows

import (
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/tattlefw/tattle/shared/api"
)

// HistoryLen is how many samples (one per Tick) an application's activity history keeps.
const HistoryLen = 60

// AppKey identifies an application: one executable identity of one user.
type AppKey struct {
	Exe      string
	Dev, Ino uint64
	UID      uint32
}

// DestKey identifies one application's flow to one destination.
type DestKey struct {
	App      AppKey
	Dest     string // address:port
	Protocol string
}

// App is one application's totals.
type App struct {
	Key       AppKey
	Attempts  uint64
	Allowed   uint64
	Denied    uint64
	Undecided uint64
	LastSeen  int64
	Dests     int
	History   []uint64 // attempts per Tick, oldest first, HistoryLen long
	pending   uint64   // attempts since the last Tick
	Traffic
}

// Traffic is payload bytes sent and received: totals, and the rate over the last Tick (bytes in that second).
type Traffic struct {
	TxBytes, RxBytes uint64
	TxRate, RxRate   uint64
	txPending        uint64 // bytes since the last Tick
	rxPending        uint64
}

func (t *Traffic) add(tx, rx uint64) {
	t.TxBytes += tx
	t.RxBytes += rx
	t.txPending += tx
	t.rxPending += rx
}

// tick closes a rate sample and reports whether the rates changed.
func (t *Traffic) tick() bool {
	changed := t.TxRate != t.txPending || t.RxRate != t.rxPending
	t.TxRate, t.RxRate = t.txPending, t.rxPending
	t.txPending, t.rxPending = 0, 0
	return changed
}

// Dest is one flow.
type Dest struct {
	Key  DestKey
	Addr string // the address alone
	Port uint16
	Host string // host name the application looked up, when known (from the helper, or a question), else ""
	Flow api.Flow
	Traffic
}

// Change says what one Apply or Tick changed; the view updates exactly these rows.
type Change struct {
	NewApps, ChangedApps   []*App
	NewDests, ChangedDests []*Dest
}

// Gone is what Forget took out of the live view.
type Gone struct {
	Apps  []*App
	Dests []*Dest
}

// Model holds every flow the monitor has seen. It is not safe for concurrent use: the GTK main loop owns it.
type Model struct {
	apps  map[AppKey]*App
	dests map[DestKey]*Dest
	hosts map[DestKey]string // host names learned from questions, by flow
}

// New returns an empty model.
func New() *Model {
	return &Model{apps: map[AppKey]*App{}, dests: map[DestKey]*Dest{}, hosts: map[DestKey]string{}}
}

// Len is the number of flows.
func (m *Model) Len() int { return len(m.dests) }

// App returns an application's totals.
func (m *Model) App(k AppKey) *App { return m.apps[k] }

// Dest returns one flow.
func (m *Model) Dest(k DestKey) *Dest { return m.dests[k] }

// KeyOf is the key of a flow.
func KeyOf(f api.Flow) DestKey {
	return DestKey{App: AppKey{Exe: f.Exe, Dev: f.Dev, Ino: f.Ino, UID: f.UID}, Dest: f.Dest, Protocol: f.Protocol}
}

// Apply merges flows (a snapshot or a batch of changed flows) into the model. A flow's counters only grow in
// the kernel; a flow seen again with fewer attempts (the helper restarted, the map was cleared) replaces the
// old one and its growth counts from zero.
func (m *Model) Apply(flows []api.Flow) Change {
	var ch Change
	changedApp := map[AppKey]bool{}
	for _, f := range flows {
		k := KeyOf(f)
		a := m.apps[k.App]
		if a == nil {
			a = &App{Key: k.App, History: make([]uint64, HistoryLen)}
			m.apps[k.App] = a
			ch.NewApps = append(ch.NewApps, a)
			changedApp[k.App] = true
		}
		d := m.dests[k]
		var before api.Flow
		if d == nil {
			addr, port := splitDest(f.Dest)
			d = &Dest{Key: k, Addr: addr, Port: port, Host: m.hosts[k]}
			m.dests[k] = d
			a.Dests++
			ch.NewDests = append(ch.NewDests, d)
		} else {
			if d.Flow == f {
				continue
			}
			before = d.Flow
			if f.Attempts < before.Attempts || f.TxBytes < before.TxBytes || f.RxBytes < before.RxBytes {
				before = api.Flow{}
			}
			ch.ChangedDests = append(ch.ChangedDests, d)
		}
		d.Flow = f
		if f.Host != "" {
			d.Host = f.Host // the helper learned it from the application's own DNS answer
		}
		a.Attempts += f.Attempts - before.Attempts
		a.Allowed += f.Allowed - before.Allowed
		a.Denied += f.Denied - before.Denied
		a.Undecided += f.Undecided - before.Undecided
		a.pending += f.Attempts - before.Attempts
		tx, rx := f.TxBytes-before.TxBytes, f.RxBytes-before.RxBytes
		d.add(tx, rx)
		a.add(tx, rx)
		a.LastSeen = max(a.LastSeen, f.LastSeen)
		if !changedApp[k.App] {
			changedApp[k.App] = true
			ch.ChangedApps = append(ch.ChangedApps, a)
		}
	}
	return ch
}

// LearnHost records the host name the application looked up for one flow (a question names it), and
// returns the flow when the model holds it. Names are kept per flow, not per address: many hosts share an
// address (CDNs, loopback), and only the question knows which one this application meant.
func (m *Model) LearnHost(k DestKey, host string) []*Dest {
	if host == "" || m.hosts[k] == host {
		return nil
	}
	if len(m.hosts) >= maxHosts {
		clear(m.hosts)
	}
	m.hosts[k] = host
	if d := m.dests[k]; d != nil {
		d.Host = host
		return []*Dest{d}
	}
	return nil
}

// maxHosts bounds the learned names (a flood of questions must not grow the app without bound).
const maxHosts = 100000

// Tick closes one sample (call it once a second): it returns the applications whose activity history
// changed, and the applications and flows whose transfer rate changed.
func (m *Model) Tick() (history []*App, rates Change) {
	for _, a := range m.apps {
		if a.Traffic.tick() {
			rates.ChangedApps = append(rates.ChangedApps, a)
		}
		if a.pending == 0 && a.History[len(a.History)-1] == 0 {
			// Shifting a run of zeros changes nothing visible unless older activity is still in view.
			if allZero(a.History) {
				continue
			}
		}
		copy(a.History, a.History[1:])
		a.History[len(a.History)-1] = a.pending
		a.pending = 0
		history = append(history, a)
	}
	for _, d := range m.dests {
		if d.Traffic.tick() {
			rates.ChangedDests = append(rates.ChangedDests, d)
		}
	}
	return history, rates
}

// Forget takes out of the live view every flow last seen before cutoff (Unix milliseconds) that moved no
// bytes in the last sample, and every application left with no flow; the history database keeps them. A
// forgotten flow seen again comes back as new, its counters from the helper's account.
func (m *Model) Forget(cutoff int64) Gone {
	var g Gone
	for k, d := range m.dests {
		if d.Flow.LastSeen >= cutoff || d.TxRate != 0 || d.RxRate != 0 || d.txPending != 0 || d.rxPending != 0 {
			continue
		}
		delete(m.dests, k)
		delete(m.hosts, k)
		g.Dests = append(g.Dests, d)
		a := m.apps[k.App]
		a.Dests--
		a.Attempts -= min(a.Attempts, d.Flow.Attempts)
		a.Allowed -= min(a.Allowed, d.Flow.Allowed)
		a.Denied -= min(a.Denied, d.Flow.Denied)
		a.Undecided -= min(a.Undecided, d.Flow.Undecided)
		a.TxBytes -= min(a.TxBytes, d.TxBytes)
		a.RxBytes -= min(a.RxBytes, d.RxBytes)
		if a.Dests == 0 {
			delete(m.apps, k.App)
			g.Apps = append(g.Apps, a)
		}
	}
	return g
}

func allZero(s []uint64) bool {
	for _, v := range s {
		if v != 0 {
			return false
		}
	}
	return true
}

func splitDest(dest string) (string, uint16) {
	if ap, err := netip.ParseAddrPort(dest); err == nil {
		return ap.Addr().String(), ap.Port()
	}
	return dest, 0
}

// Verdict classes the filter toggles choose from.
const (
	ClassAllowed = "allowed"
	ClassDenied  = "denied"
	ClassAsked   = "asked"
)

// Class is the filter class of a flow: denied when the kernel denies it, asked when it is undecided or
// waiting for an answer, else allowed.
func Class(f api.Flow) string {
	switch f.Verdict {
	case "deny":
		return ClassDenied
	case "ask", "undecided":
		return ClassAsked
	}
	return ClassAllowed
}

// Filter is what the monitor shows: flows of the enabled classes whose application, host, address or port
// contains Text (case-insensitive).
type Filter struct {
	Text                   string
	Allowed, Denied, Asked bool
	// Since and Until (Unix milliseconds; both zero: no limit) keep flows active in that span: first seen
	// before Until and last seen at or after Since (the traffic chart's selection).
	Since, Until int64
}

// ShowAll is the filter with nothing filtered out.
var ShowAll = Filter{Allowed: true, Denied: true, Asked: true}

// Matches reports whether the filter shows d.
func (f Filter) Matches(d *Dest) bool {
	switch Class(d.Flow) {
	case ClassAllowed:
		if !f.Allowed {
			return false
		}
	case ClassDenied:
		if !f.Denied {
			return false
		}
	case ClassAsked:
		if !f.Asked {
			return false
		}
	}
	if f.Until != 0 && (d.Flow.FirstSeen >= f.Until || d.Flow.LastSeen < f.Since) {
		return false
	}
	t := strings.ToLower(strings.TrimSpace(f.Text))
	if t == "" {
		return true
	}
	for _, s := range []string{d.Key.App.Exe, filepath.Base(d.Key.App.Exe), d.Host, d.Key.Dest, d.Key.Protocol} {
		if strings.Contains(strings.ToLower(s), t) {
			return true
		}
	}
	return false
}

// Sparkline draws history as bars into an RGBA image (w x h, 4 bytes a pixel, rows of stride w*4) in the
// given colour, scaled to the history's own peak; an idle history is an empty, transparent image.
func Sparkline(history []uint64, w, h int, rgb [3]byte) []byte {
	img := make([]byte, w*h*4)
	var peak uint64
	for _, v := range history {
		peak = max(peak, v)
	}
	if peak == 0 || len(history) == 0 {
		return img
	}
	for x := 0; x < w; x++ {
		v := history[x*len(history)/w]
		if v == 0 {
			continue
		}
		bar := int((v*uint64(h) + peak - 1) / peak)
		bar = max(bar, 1)
		for y := h - bar; y < h; y++ {
			o := (y*w + x) * 4
			img[o], img[o+1], img[o+2], img[o+3] = rgb[0], rgb[1], rgb[2], 255
		}
	}
	return img
}
