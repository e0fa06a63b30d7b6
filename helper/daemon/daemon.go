// Package daemon runs tattled's main loop: it keeps the kernel's verdicts equal to the rules in force
// (recompiling when a rule group changes, a timed rule expires or an executable is replaced) and consumes the
// kernel's events.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/exepath"
	"github.com/tattlefw/tattle/helper/history"
	"github.com/tattlefw/tattle/helper/hold"
	"github.com/tattlefw/tattle/helper/lists"
	"github.com/tattlefw/tattle/helper/metrics"
	"github.com/tattlefw/tattle/helper/records"
	"github.com/tattlefw/tattle/helper/resolvers"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/helper/scripts"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// RecheckInterval bounds how long a replaced executable (new inode) keeps its old identity's verdicts.
const RecheckInterval = time.Minute

// Daemon ties the enforcer and the rule store together.
type Daemon struct {
	enf      *enforce.Enforcer
	store    *store.Store
	log      *slog.Logger
	resolver *exepath.Resolver
	scripts  *scripts.Tracker
	contents *exepath.Contents // executables' checksums and dpkg's
	content  contentState

	// mu is held across compiling+installing and across deciding+installing a learned verdict, so a verdict
	// learned from old rules can never land after the new rules were installed (which drop learned entries).
	mu      sync.Mutex
	current ruleset.Result

	applied chan struct{} // signalled after each Apply, so the expiry timer follows new rules

	hold  holding // holding undecided connections; inactive until StartHolding
	learn learning
	names names // names learned from DNS; guarded by mu

	lists    *lists.Set     // named lists for list rules; nil when none are defined. Set before Run.
	listCfgs []lists.Config // their definitions
	// resolvers is the built-in list "list:resolvers" (the configured DNS resolvers); nil: that list is empty.
	// Set before Run.
	resolvers *resolvers.Resolvers

	importedDir, stateDir string // where imports keep the lists they make (ConfigureImportedLists)

	// onRulesChanged announces rule changes the helper made itself (answers, until-quit endings).
	onRulesChanged func()

	// packaged finds Flatpak apps' and snaps' executables for their rules; nil: such rules match nothing.
	packaged ruleset.Packaged

	history       *history.DB // the connection history; nil when there is none. Set before Run.
	trafficSample time.Duration

	records *records.Writer  // journald records of decisions; nil: none. Set before Run.
	metrics *metrics.Metrics // nil: no metrics. Set before StartHolding.
}

// UsePackaged sets how Flatpak and snap rules find their apps' executables, and the directories those live
// under (an attempt from an unknown file there makes the rules compile again). Call before Run.
func (d *Daemon) UsePackaged(p ruleset.Packaged, roots []string) {
	d.packaged = p
	d.content.mu.Lock()
	d.content.packagedRoots = roots
	d.content.mu.Unlock()
}

// OnRulesChanged sets what announces rule changes the helper makes itself. Call before Run.
func (d *Daemon) OnRulesChanged(f func()) { d.onRulesChanged = f }

// New returns a daemon for an open enforcer and store.
func New(enf *enforce.Enforcer, st *store.Store, log *slog.Logger) *Daemon {
	return &Daemon{enf: enf, store: st, log: log, resolver: exepath.New("/proc", exepath.DefaultCacheSize),
		scripts: scripts.New(enf, scripts.Options{Log: log}), contents: exepath.NewContents(""),
		content: contentState{notify: make(chan struct{}, 1), packagedLimit: rate.NewLimiter(rate.Every(packagedRefresh), packagedBurst)},
		applied: make(chan struct{}, 1), learn: learning{wake: make(chan struct{}, 1)}}
}

// Apply compiles the rules in force and installs the result in the kernel.
func (d *Daemon) Apply() error {
	// Held from the snapshot to the install, so two changes applied at once cannot leave the older installed.
	d.mu.Lock()
	defer d.mu.Unlock()
	var rs = d.store.Entries()
	resting, list := d.checkContents(rs)
	res, err := ruleset.CompileOptions(list, time.Now(), ruleset.Options{
		Stat: identity.ReadMounts("/proc/self/mountinfo").Stat, Resting: resting, Packaged: d.packaged,
		ListAddrs: d.listAddrs})
	if err != nil {
		return fmt.Errorf("compile rules: %w", err)
	}
	// Addresses learned for name rules go in with the compiled entries, recomputed for the new rules.
	learnedNow := d.learnedVerdicts(res, time.Now())
	want := res.Kernel
	if len(learnedNow) > 0 {
		want = enforce.Verdicts{Defaults: res.Kernel.Defaults, Destinations: make(map[enforce.Destination]enforce.Ruling, len(res.Kernel.Destinations)+len(learnedNow))}
		for k, v := range res.Kernel.Destinations {
			want.Destinations[k] = v
		}
		for k, l := range learnedNow {
			want.Destinations[k] = l.ruling
		}
	}
	if err := d.enf.Replace(want); err != nil {
		return fmt.Errorf("install rules in the kernel: %w", err)
	}
	d.current = res
	if d.names.installed != nil {
		d.names.installed = learnedNow
	}
	if d.hold.holder != nil {
		// Open questions the new rules decide are settled now (in the holder's goroutine: deciding takes d.mu).
		d.hold.holder.Recheck(d.decideAttempt)
	}
	select {
	case d.applied <- struct{}{}:
	default:
	}
	kernel, user := 0, 0
	for _, p := range res.Placements {
		switch p.Where {
		case ruleset.InKernel:
			kernel++
		case ruleset.InUserspace:
			user++
			d.log.Debug("rule evaluated in userspace", "rule", p.RuleID, "reason", p.Reason)
		}
	}
	d.log.Info("rules applied", "rules", len(rs), "in_kernel", kernel, "in_userspace", user,
		"kernel_entries", len(res.Kernel.Defaults)+len(res.Kernel.Destinations))
	return nil
}

// ExePath names an executable identity for display (from events seen, or from a live process); an AppImage
// as "appimage:PATH" (AppImageName).
func (d *Daemon) ExePath(tgid uint32, app identity.Executable) string {
	if app.IsAppImage() {
		return d.AppImageName(tgid, app)
	}
	return d.resolver.Path(tgid, app)
}

// AppImageName names an AppImage identity as rules do, "appimage:PATH": the path of a rule that names this
// very file, else where the kernel saw it exec'd; "" when the helper cannot tell (an answer then makes no rule).
func (d *Daemon) AppImageName(tgid uint32, app identity.Executable) string {
	d.mu.Lock()
	p := d.current.AppImages[app]
	d.mu.Unlock()
	if p == "" {
		p = d.scripts.AppImagePath(tgid, app)
	}
	if p == "" {
		return ""
	}
	return identity.AppImagePrefix + p
}

// ViaFor names the script of a script identity for display: "" for any other identity, api.ViaUnidentified
// for a script that is not identified.
func (d *Daemon) ViaFor(app identity.Executable) string {
	if app.IsUnidentified() {
		return api.ViaUnidentified
	}
	if !app.IsScript() {
		return ""
	}
	if r, ok := d.scripts.Names(app); ok {
		return r.Script
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.current.Vias[app]; v != "" {
		return v
	}
	return api.ViaUnidentified
}

// scriptWait bounds how long an attempt of a process whose script is being identified waits for it.
const scriptWait = 500 * time.Millisecond

// identifyScript completes an event of an interpreter's process: the script identity when the kernel had
// none yet, and the script's path.
func (d *Daemon) identifyScript(ev *enforce.Event) {
	if ev.App.IsUnidentified() {
		r := d.scripts.Resolve(ev.TGID, scriptWait)
		ev.App = r.App
		if ev.Exe == "" {
			ev.Exe = r.Interpreter
		}
	}
	ev.Via = d.ViaFor(ev.App)
}

// RuleName returns the rule ID behind a kernel rule number ("" if none; "learned" for per-flow verdicts the
// helper cached after deciding in userspace).
func (d *Daemon) RuleName(kernelID uint32) string {
	switch kernelID {
	case learnedRuleID:
		return "learned"
	case nobodyToAskRuleID:
		return hold.NobodyToAsk
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current.KernelIDs[kernelID]
}

// Current returns the last compilation.
func (d *Daemon) Current() ruleset.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// Run keeps the rules applied (call Apply once first) and consumes events until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	events, err := d.enf.Events(d.resolver)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	if d.names.capture != nil {
		wg.Go(d.readAnswers)
	}
	if d.names.resolved != "" {
		wg.Go(func() { d.followResolved(ctx) })
	}
	if d.names.cache != nil {
		wg.Go(func() { d.expireNames(ctx) })
	}
	if d.lists != nil {
		wg.Go(func() { d.refreshLists(ctx) })
	}
	if d.resolvers != nil {
		wg.Go(func() { d.resolvers.Run(ctx, d.reapply) }) // a changed resolver recompiles the rules on the list
	}
	if d.hold.holder != nil {
		wg.Go(func() { d.hold.holder.Run(ctx) })
		wg.Go(func() { d.watchUntilQuit(ctx) })
	}
	if d.history != nil {
		wg.Go(func() { d.sampleTraffic(ctx) })
	}
	wg.Go(func() { d.watchContents(ctx) })
	wg.Go(func() { d.watchLearning(ctx) })
	wg.Go(func() {
		if err := d.scripts.Run(ctx); err != nil {
			d.log.Error("scripts are not identified: interpreters' processes stay unidentified", "error", err)
		}
	})
	wg.Go(func() { d.logEvents(events) })
	wg.Go(func() {
		if err := d.store.WatchAdmin(ctx, d.reapply); err != nil {
			d.log.Error("rule groups are not watched; changes need a restart", "error", err)
		}
	})
	wg.Go(func() { d.recheck(ctx) })
	<-ctx.Done()
	events.Close()
	if d.names.capture != nil {
		d.names.capture.Close()
	}
	if d.hold.queue != nil {
		d.hold.queue.Close()
	}
	wg.Wait()
	return nil
}

func (d *Daemon) reapply() {
	if err := d.Apply(); err != nil {
		d.log.Error("rules changed but could not be applied; the previous kernel rules stay", "error", err)
	}
}

// onTicks calls f with each tick's time, every interval, until ctx ends: the loop of the helper's periodic
// jobs (list refreshes, name expiry, until-quit rules, traffic samples), written once.
func onTicks(ctx context.Context, interval time.Duration, f func(now time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f(now)
		}
	}
}

// recheck recompiles when the next timed rule expires, and at least every RecheckInterval, when replaced
// executables (new inodes) get their rules again.
func (d *Daemon) recheck(ctx context.Context) {
	timer := time.NewTimer(d.untilNextCheck(time.Now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			d.reapply()
		case <-d.applied:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d.untilNextCheck(time.Now()))
	}
}

// untilNextCheck is the time to the earliest expiry of an active until-time rule, capped at RecheckInterval.
func (d *Daemon) untilNextCheck(now time.Time) time.Duration {
	wait := RecheckInterval
	for _, c := range d.Current().Active {
		if c.Rule.Duration == rules.DurationUntilTime {
			if left := c.Rule.Until.Sub(now); left < wait {
				wait = max(left, 10*time.Millisecond)
			}
		}
	}
	return wait
}

func (d *Daemon) logEvents(events *enforce.EventReader) {
	for {
		ev, err := events.Read()
		if errors.Is(err, enforce.ErrClosed) {
			return
		}
		if err != nil {
			d.log.Warn("read event", "error", err)
			continue
		}
		if ev.Kind == enforce.EventUndecided {
			d.identifyScript(&ev)
		} else {
			ev.Via = d.ViaFor(ev.App)
		}
		if ev.App.IsAppImage() {
			// The kernel's path is the file on the AppImage's mount (new at every launch): named by its file.
			// (Unknown, the path stays for display; an answer then makes no rule.)
			if name := d.AppImageName(ev.TGID, ev.App); name != "" {
				ev.Exe = name
			}
		}
		d.log.Debug("connection attempt", "kind", ev.Kind, "verdict", ev.Verdict, "exe", ev.Exe, "via", ev.Via,
			"pid", ev.TGID, "uid", ev.UID, "comm", ev.Comm, "dest", ev.Dest, "proto", ev.Proto, "hook", ev.Hook)
		if ev.Kind != enforce.EventUndecided {
			if d.history != nil || d.records != nil {
				// The name it looked up, for the record (the kernel already decided: only the record waits).
				d.catchUpNames()
			}
			d.recordDecision(ev, ev.Verdict, "")
			continue
		}
		if d.staleIdentity(ev) {
			d.reapply() // a replaced executable: its rules decide by its new content
		}
		key := hold.Key{App: ev.App, UID: ev.UID, Dest: ev.Dest, Proto: ev.Proto}
		// An attempt made right after its lookup must be decided with that name.
		d.catchUpNames()
		v, rule, decided := d.decideInUserspaceBy(ev)
		d.recordDecision(ev, v, rule)
		if d.hold.holder == nil {
			continue
		}
		if decided {
			d.hold.holder.Decided(key, v)
			continue
		}
		a := hold.Attempt{Key: key, PID: ev.TGID, Exe: ev.Exe, Via: ev.Via, Changed: d.changedExe(ev.Exe), Comm: ev.Comm, Time: ev.Time}
		a.Host, a.Reverse = d.NamesFor(ev.App, ev.UID, ev.Dest)
		d.hold.holder.Attempt(a)
	}
}

// decideInUserspace evaluates every active rule (including those the kernel cannot match) for an attempt the
// kernel left undecided. When a rule decides it, the verdict is cached in the kernel's flow table for exactly
// that flow (this executable and user, this address, port and protocol), so the flow's next attempts are
// decided in the kernel; any rule change drops it.
//
// A verdict is learned only when no rule of higher precedence could have applied with facts the helper does
// not have yet (the host name an address was looked up for, a packaged app's identity): otherwise the flow stays
// undecided, rather than a lower rule being cached over one that might have won.
func (d *Daemon) decideInUserspace(ev enforce.Event) (enforce.Verdict, bool) {
	v, _, ok := d.decideInUserspaceBy(ev)
	return v, ok
}

// decideInUserspaceBy is decideInUserspace that also names the deciding rule.
func (d *Daemon) decideInUserspaceBy(ev enforce.Event) (enforce.Verdict, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.current
	now := time.Now()
	proto := ev.Proto.String()
	flow := rules.Flow{AppPath: cur.PathFor(ev.App, ev.Exe), Via: cur.ViaFor(ev.App, ev.Via), UID: ev.UID, Addr: ev.Dest.Addr(), Port: ev.Dest.Port(), Proto: proto,
		Hostnames: d.hostnamesFor(appKey{App: ev.App, UID: ev.UID}, ev.Dest.Addr(), now)}
	// A packaged app by the identity of the file its process runs, never by what the process says it is.
	switch pn := cur.Packaged[ev.App]; pn.Kind {
	case rules.AppFlatpak:
		flow.Flatpak = pn.Value
	case rules.AppSnap:
		flow.Snap = pn.Value
	}
	// An AppImage by its identity too (the kernel's, of the file it was started from).
	flow.AppImage = cur.AppImages[ev.App]
	winner := rules.Decide(cur.Active, flow, d.lookupList(), now)
	if winner == nil {
		return enforce.Undecided, "", false
	}
	if blocker := ruleset.Unknowable(cur.Active, winner, flow, d.lookupList(), isResolvers, now); blocker != "" {
		d.log.Debug("left undecided: a rule of higher precedence needs facts not known yet", "rule", blocker,
			"exe", ev.Exe, "dest", ev.Dest, "proto", proto)
		return enforce.Undecided, "", false
	}
	verdict := enforce.Allow
	if winner.Rule.Action == rules.ActionDeny {
		verdict = enforce.Deny
	}
	if err := d.enf.LearnFlow(ev.App, ev.UID, ev.Dest, ev.Proto, verdict, learnedRuleID); err != nil {
		d.log.Warn("cache a verdict decided in userspace", "error", err)
	}
	d.log.Info("decided in userspace", "rule", winner.Rule.ID, "action", winner.Rule.Action, "exe", ev.Exe,
		"uid", ev.UID, "dest", ev.Dest, "proto", proto)
	return verdict, winner.Rule.ID, true
}

// isResolvers says whether a list is the built-in one of the machine's resolvers, which holds addresses only.
func isResolvers(list string) bool { return list == resolvers.ListName }

// learnedRuleID marks flow verdicts the helper cached after deciding in userspace.
const learnedRuleID = ^uint32(0)
