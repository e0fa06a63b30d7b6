package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/hold"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/helper/sysusers"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// loginDefs says where system accounts end (UID_MIN).
const loginDefs = "/etc/login.defs"

// nobodyToAskRuleID marks flow verdicts of system processes that no administrator could be asked about.
const nobodyToAskRuleID = learnedRuleID - 1

// Asker reaches the users' agents (the D-Bus service).
type Asker interface {
	Ask(ctx context.Context, q api.Question) (api.Answer, error)
	PendingChanged(n int)
}

// holding is the daemon's part in holding undecided connections.
type holding struct {
	holder *hold.Holder
	queue  *netfilter.Queue
	rules  netfilter.Rules

	mu     sync.Mutex
	method netfilter.Method
	off    string // why holding is off, when it is
}

// HoldOptions configure StartHolding.
type HoldOptions struct {
	Table string // netfilter.DefaultTable when empty
	Queue uint16 // netfilter.DefaultQueue when zero
	Asker Asker
}

// StartHolding installs the netfilter rules (with the saved fail policy) and binds the queue, so undecided
// connections wait for an answer. Call before Run; Run then serves the queue until its context ends. Without
// it (or when it fails) undecided connections pass unasked, as the Holding status says.
func (d *Daemon) StartHolding(ctx context.Context, o HoldOptions) error {
	marks := d.enf.Marks()
	st := d.store.Settings()
	d.hold.rules = netfilter.Rules{Table: o.Table, Queue: o.Queue, Held: marks.Held, Strict: marks.Strict,
		Deny: marks.Deny, PassWhenAbsent: st.FailPolicy == api.FailPass}
	method, err := netfilter.Install(d.hold.rules)
	if errors.Is(err, netfilter.ErrNoSocketMark) {
		d.log.Warn("the first datagram of an unconnected UDP socket to an undecided destination is not held", "error", err)
	} else if err != nil {
		d.setHoldingOff(err.Error())
		return err
	}
	q, err := netfilter.OpenQueue(o.Queue)
	if err != nil {
		d.setHoldingOff(err.Error())
		return err
	}
	d.hold.holder = hold.New(hold.Env{
		Queue:    q,
		Marks:    marks,
		Log:      d.log,
		Settings: d.store.Settings,
		Ask: func(ctx context.Context, q api.Question) (api.Answer, error) {
			if d.metrics != nil {
				d.metrics.QuestionAsked()
			}
			return o.Asker.Ask(ctx, q)
		},
		Commit: d.commitAnswer,
		Learn: func(k hold.Key, v enforce.Verdict) error {
			return d.enf.LearnFlow(k.App, k.UID, k.Dest, k.Proto, v, learnedRuleID)
		},
		Propose: d.propose,
		LearnNobodyToAsk: func(k hold.Key, v enforce.Verdict) error {
			return d.enf.LearnFlow(k.App, k.UID, k.Dest, k.Proto, v, nobodyToAskRuleID)
		},
		IsSystem: sysusers.FromLoginDefs(loginDefs).IsSystem,
		Resolve:  d.resolvePacket,
		UserName: userName,
		Decide:   d.decideAttempt,
		Names: func(a hold.Attempt) (string, string) {
			return d.NamesFor(a.App, a.UID, a.Dest)
		},
		Changed: o.Asker.PendingChanged,
	})
	if err := q.Start(ctx, d.log, d.hold.holder.Packet); err != nil {
		q.Close()
		d.hold.holder = nil
		d.setHoldingOff(err.Error())
		return err
	}
	d.hold.queue = q
	d.hold.mu.Lock()
	d.hold.method, d.hold.off = method, ""
	d.hold.mu.Unlock()
	d.log.Info("holding undecided connections", "method", method, "queue", d.hold.rules.Queue, "fail_policy", st.FailPolicy)
	return nil
}

func (d *Daemon) setHoldingOff(why string) {
	d.hold.mu.Lock()
	defer d.hold.mu.Unlock()
	d.hold.off = why
}

// Holding says how held connections reach the helper, or why they do not.
func (d *Daemon) Holding() string {
	d.hold.mu.Lock()
	defer d.hold.mu.Unlock()
	switch {
	case d.hold.off != "":
		return "off: " + d.hold.off
	case d.hold.method == "":
		return "off: not started"
	}
	return string(d.hold.method)
}

// SettingsChanged applies saved settings that live outside the helper's process (the fail policy, in netfilter).
func (d *Daemon) SettingsChanged() error {
	if d.hold.holder == nil {
		return nil
	}
	r := d.hold.rules
	r.PassWhenAbsent = d.store.Settings().FailPolicy == api.FailPass
	if r == d.hold.rules {
		return nil
	}
	if _, err := netfilter.Install(r); err != nil && !errors.Is(err, netfilter.ErrNoSocketMark) {
		return err
	}
	d.hold.rules = r
	return nil
}

// Pending lists open questions (uid's, or all).
func (d *Daemon) Pending(uid uint32, all bool) []api.Question {
	if d.hold.holder == nil {
		return []api.Question{}
	}
	return d.hold.holder.Pending(uid, all)
}

// PendingCount is the number of open questions.
func (d *Daemon) PendingCount() int {
	if d.hold.holder == nil {
		return 0
	}
	return d.hold.holder.Count()
}

// idBase is the program's part of the id of a rule made for an attempt: the file name of its script, or else
// of its executable, as a slug.
func idBase(a hold.Attempt) string {
	name := a.Exe
	if a.Via != "" {
		name = a.Via
	}
	if base := rules.Slug(filepath.Base(name), 40); base != "" {
		return base
	}
	return "app"
}

// commitAnswer stores the rule an answer asks for and installs it.
func (d *Daemon) commitAnswer(a hold.Attempt, ans api.Answer) error {
	if a.App.IsUnidentified() || a.Via == api.ViaUnidentified {
		// No rule can name a script nobody could identify: the answer decided this connection only.
		d.log.Info("answer about an unidentified script: no rule made", "exe", a.Exe, "pid", a.PID)
		return nil
	}
	if a.App.IsAppImage() && !strings.HasPrefix(a.Exe, identity.AppImagePrefix) {
		d.log.Info("answer about an AppImage whose file is not known: no rule made", "exe", a.Exe, "pid", a.PID)
		return nil
	}
	now := time.Now().UTC().Truncate(time.Second)
	r := hold.RuleFor(a, ans, now)
	r.SHA256 = d.sha256For(a)
	base := idBase(a)
	var err error
	for n := 0; n < 5; n++ {
		r.ID = fmt.Sprintf("answer-%s-%d", base, now.UnixNano()/1e6+int64(n))
		if err = d.store.Add([]rules.Rule{r}); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("store the answer's rule: %w", err)
	}
	d.log.Info("rule made from an answer", "rule", r.ID, "action", r.Action, "remote", r.Remote, "port", r.Port,
		"protocol", r.Protocol, "duration", r.Duration, "uid", a.UID, "exe", a.Exe, "via", a.Via)
	if err := d.Apply(); err != nil {
		return err
	}
	if d.onRulesChanged != nil {
		d.onRulesChanged()
	}
	return nil
}

// resolvePacket finds the application behind a held packet whose event the helper never saw (it restarted
// while the packet was held, or the event was lost): the kernel's flow table knows every undecided flow, and
// the packet's token, uid and destination pick it out. It then decides the flow by the rules as for an event.
func (d *Daemon) resolvePacket(p netfilter.Packet, pk hold.PacketKey) (hold.Attempt, enforce.Verdict, bool) {
	flows, err := d.enf.Flows()
	if err != nil {
		d.log.Warn("read flows for a held packet", "error", err)
		return hold.Attempt{}, enforce.Undecided, false
	}
	marks := d.enf.Marks()
	var best *enforce.Flow
	for i := range flows {
		f := &flows[i]
		dest := netip.AddrPortFrom(f.Dest.Addr().Unmap(), f.Dest.Port())
		if f.UID != pk.UID || dest != pk.Dest || f.Proto != pk.Proto || marks.TokenOf(f.App, f.UID) != pk.Token {
			continue
		}
		if best == nil || f.LastSeen.After(best.LastSeen) {
			best = f
		}
	}
	if best == nil {
		return hold.Attempt{}, enforce.Undecided, false
	}
	exe := d.ExePath(best.LastTGID, best.App)
	a := hold.Attempt{Key: hold.Key{App: best.App, UID: best.UID, Dest: pk.Dest, Proto: pk.Proto},
		PID: best.LastTGID, Exe: exe, Via: d.ViaFor(best.App), Comm: comm(best.LastTGID), Time: p.Time}
	v, _ := d.decideInUserspace(enforce.Event{App: a.App, UID: a.UID, Dest: a.Dest, Proto: a.Proto, Exe: exe, Via: a.Via})
	return a, v, true
}

// decideAttempt decides a held attempt by the rules in force, as for its kernel event.
func (d *Daemon) decideAttempt(a hold.Attempt) (enforce.Verdict, bool) {
	return d.decideInUserspace(enforce.Event{App: a.App, UID: a.UID, Dest: a.Dest, Proto: a.Proto, Exe: a.Exe, Via: a.Via})
}

func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b)
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// untilQuitInterval is how often the helper looks for rules whose application has quit.
const untilQuitInterval = time.Second

// watchUntilQuit removes until-quit rules once no process runs their application any more.
func (d *Daemon) watchUntilQuit(ctx context.Context) {
	onTicks(ctx, untilQuitInterval, func(time.Time) {
		var ids []string
		var apps map[identity.Executable]bool
		for _, e := range d.store.Entries() {
			r := e.Rule
			if r.Duration != rules.DurationUntilQuit {
				continue
			}
			if apps == nil {
				apps = runningExecutables("/proc", d.enf.ViaOf)
			}
			id, err := identity.Stat(contentPath(r.Application))
			if err == nil && strings.HasPrefix(r.Application, identity.AppImagePrefix) {
				id = identity.AppImageOf(id)
			}
			if err != nil || !apps[id] {
				ids = append(ids, r.ID)
			}
		}
		if len(ids) == 0 {
			return
		}
		if err := d.store.Remove(ids); err != nil {
			d.log.Warn("remove rules of applications that quit", "rules", ids, "error", err)
			return
		}
		d.log.Info("application quit: its until-quit rules end", "rules", ids)
		d.reapply()
		if d.onRulesChanged != nil {
			d.onRulesChanged()
		}
	})
}

// runningExecutables returns the identities of every running process's executable.
// runningExecutables lists the identities of the running processes: their executables and, where the kernel
// knows one (viaOf), the identity it gives them (an AppImage's).
func runningExecutables(proc string, viaOf func(tgid uint32) (enforce.Via, bool)) map[identity.Executable]bool {
	out := map[identity.Executable]bool{}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if id, err := identity.Stat(filepath.Join(proc, e.Name(), "exe")); err == nil {
			out[id] = true
		}
		if v, ok := viaOf(uint32(pid)); ok && v.State == enforce.ViaResolved && v.App.IsAppImage() {
			out[v.App] = true
		}
	}
	return out
}
