// Package hold keeps the connections the kernel left undecided waiting while their owner decides.
//
// Two things arrive for every undecided attempt, in either order: the kernel's event (who: executable, user,
// pid, destination) and, through netfilter's queue, the attempt's packets (a SYN and its retransmissions, or
// datagrams). The holder ties them together by the identity token in the packet's mark, the socket's uid and
// the destination. Attempts of one application, run by one user, to one host share one question whatever the
// port (its alert lists the ports), so a program trying many ports costs one question; each question waits
// on its own, so one open question never stalls another. An answer (or the default, when nobody answers in
// time) releases the question's packets: accepted, the same connection completes; refused, they come back
// from the refuse chain as a TCP reset and the application fails at once.
package hold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// Limits that keep a flood of undecided attempts from exhausting the helper. Beyond them the default applies
// at once (questions) or packets are dropped (TCP retries them).
const (
	MaxQuestions           = 4096
	MaxQuestionsPerUser    = 512
	MaxPacketsPerQuestion  = 4096 // a flood of ports of one host is one question
	MaxOrphans             = 4096
	orphanWait             = 500 * time.Millisecond // how long a packet waits for its kernel event (which lags under load)
	settledMemory          = 10 * time.Second       // late packets of a settled question get its verdict
	maxSettled             = 16384
	sweepInterval          = 50 * time.Millisecond
	preAskPause            = 20 * time.Millisecond // lets DNS answers being learned catch up before asking
	defaultQuestionTimeout = 30 * time.Second
	gatherQuiet            = 150 * time.Millisecond // a question is asked once no new port joined it for this long
	gatherMax              = 3 * time.Second        // … or after this, whatever keeps coming
)

// ErrNobodyToAsk is what Env.Ask returns (wrapped) when no agent can be asked about a question.
var ErrNobodyToAsk = errors.New("nobody to ask")

// NobodyToAsk is how the helper names the verdict of a system process's question that no administrator
// could be asked about (the monitor shows it as the flow's rule).
const NobodyToAsk = "allowed: nobody to ask"

// Key names one flow: one application, run by one user, to one destination.
type Key struct {
	App   identity.Executable
	UID   uint32
	Dest  netip.AddrPort // IPv4 as plain IPv4
	Proto enforce.Protocol
}

// hostKey names the attempts that share one question: one application, run by one user, to one host.
type hostKey struct {
	App   identity.Executable
	Via   string // the script an interpreter runs: each script is its own application
	UID   uint32
	Addr  netip.Addr
	Proto enforce.Protocol
}

func hostKeyOf(a Attempt) hostKey {
	return hostKey{App: a.App, Via: a.Via, UID: a.UID, Addr: a.Dest.Addr(), Proto: a.Proto}
}

// Attempt is one undecided attempt as the kernel reported it.
type Attempt struct {
	Key
	// System is set by the holder for a system process (root, a service account, nobody): its question goes
	// to an administrator and its answer makes a system rule.
	System bool
	// Ports, set by the holder on the attempt a question commits, are every port the question covered.
	Ports   []uint16
	PID     uint32
	Exe     string
	Via     string // the script the interpreter Exe runs; "" for none (see api.Question.Via)
	Changed bool   // a rule was made for this program's earlier content (see api.Question.Changed)
	Comm    string
	Host    string // the host name the application looked up, when known
	Reverse string // else the address's reverse name, when known (display only)
	Time    time.Time
}

// PacketVerdicts takes the holder's verdicts on queued packets (netfilter.Queue).
type PacketVerdicts interface {
	Accept(id uint32) error
	Refuse(id uint32, mark uint32) error
	Drop(id uint32) error
}

// Env is what the holder needs from the rest of the helper.
type Env struct {
	Queue PacketVerdicts
	Marks enforce.Marks
	Log   *slog.Logger
	// Settings returns the helper's current settings (mode, default, timeout).
	Settings func() api.Settings
	// Ask asks the agent of the question's user; it returns when the user answered, or with an error when
	// there is no agent, it left, or ctx ended.
	Ask func(ctx context.Context, q api.Question) (api.Answer, error)
	// Commit makes the rule an answer asks for (any duration but once) and returns the verdict it gives.
	Commit func(a Attempt, ans api.Answer) error
	// Learn caches a verdict for one flow in the kernel, so its next attempts stay there (silent modes).
	Learn func(k Key, v enforce.Verdict) error
	// Propose is called, in learning mode, for each attempt it allowed (after its packets were released), so
	// the helper can propose a rule for it. Optional.
	Propose func(a Attempt)
	// LearnNobodyToAsk caches the system default's verdict for a flow of a system process that no
	// administrator could be asked about, marked as such (NobodyToAsk). Optional.
	LearnNobodyToAsk func(k Key, v enforce.Verdict) error
	// IsSystem says whether uid is a system account (sysusers). nil: none is.
	IsSystem func(uid uint32) bool
	// Resolve finds, for a packet whose event never came (the helper restarted while it was held, say), the
	// attempt it belongs to and what the rules say now (enforce.Undecided: ask). ok is false when no
	// application can be found for it.
	Resolve func(p netfilter.Packet, k PacketKey) (a Attempt, v enforce.Verdict, ok bool)
	// UserName names a uid for questions.
	UserName func(uid uint32) string
	// Decide decides an attempt by the rules as for its kernel event (ok false: no rule decides). The holder
	// calls it once more just before asking, when a name the attempt depends on may have been learned since.
	Decide func(a Attempt) (v enforce.Verdict, ok bool)
	// Names returns the host name (or else the reverse name) known now for an attempt's destination.
	Names func(a Attempt) (host, reverse string)
	// Changed is called (without locks held) when the number of open questions changed.
	Changed func(pending int)
}

// PacketKey is what a queued packet tells about its sender.
type PacketKey struct {
	Token uint32
	UID   uint32
	Dest  netip.AddrPort
	Proto enforce.Protocol
}

type question struct {
	api      api.Question
	attempt  Attempt
	pks      []PacketKey // one per port, in the order seen
	ports    map[uint16]bool
	lastPort time.Time // when a new port last joined
	packets  []netfilter.Packet
	deadline time.Time
	cancel   context.CancelFunc // ends the agent's Ask when a rule settles the question first
	ruled    enforce.Verdict    // the verdict of that rule (Undecided while none); guarded by Holder.mu
}

// closed is when a question covering a flow was settled, and its verdict.
type closed struct {
	at time.Time
	v  enforce.Verdict
}

type orphan struct {
	p  netfilter.Packet
	pk PacketKey
}

type settled struct {
	verdict enforce.Verdict
	until   time.Time
}

// settledKey names what a remembered verdict covers: a whole flow (Src zero: a rule decided it, so every
// attempt gets the same), or one socket's packets (a verdict for this connection only: once, or the default).
type settledKey struct {
	PacketKey
	Src netip.AddrPort
}

// remembering says how far a question's verdict reaches beyond its own packets.
type remembering int

const (
	rememberNothing remembering = iota // the helper is stopping
	rememberSockets                    // only the held sockets' late packets (once, the default)
	rememberFlow                       // every attempt of the flow (a rule decides it from now on anyway)
)

// Holder keeps the questions and their packets.
type Holder struct {
	env Env

	mu        sync.Mutex
	nextID    uint64
	questions map[hostKey]*question
	byPacket  map[PacketKey][]*question
	orphans   []orphan
	settled   map[settledKey]settled
	closedAt  map[PacketKey]closed // the last question covering the flow, once settled (kept settledMemory)
	perUser   map[uint32]int

	ctx context.Context
	wg  sync.WaitGroup
}

// New returns a holder; Run starts it.
func New(env Env) *Holder {
	if env.Log == nil {
		env.Log = slog.Default()
	}
	return &Holder{env: env, questions: map[hostKey]*question{}, byPacket: map[PacketKey][]*question{},
		settled: map[settledKey]settled{}, closedAt: map[PacketKey]closed{}, perUser: map[uint32]int{}, ctx: context.Background()}
}

// Run sweeps waiting packets until ctx ends, then waits for the questions' goroutines, which end with it.
// Attempts and packets must only be handed in while Run runs.
func (h *Holder) Run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	h.mu.Unlock()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.wg.Wait()
			return
		case now := <-t.C:
			h.sweep(now)
		}
	}
}

// PacketKeyOf returns what the packet says about its sender.
func (h *Holder) PacketKeyOf(p netfilter.Packet) PacketKey {
	return PacketKey{Token: h.env.Marks.TokenIn(p.Mark), UID: p.UID,
		Dest:  netip.AddrPortFrom(p.Headers.Dst.Addr().Unmap(), p.Headers.Dst.Port()),
		Proto: enforce.Protocol(p.Headers.Proto)}
}

func (h *Holder) packetKeyOf(k Key) PacketKey {
	return PacketKey{Token: h.env.Marks.TokenOf(k.App, k.UID), UID: k.UID, Dest: k.Dest, Proto: k.Proto}
}

// Packet takes a queued packet: it joins its question, gets the verdict its question already had, or waits
// briefly for its event.
func (h *Holder) Packet(p netfilter.Packet) {
	pk := h.PacketKeyOf(p)
	h.env.Log.Debug("packet held", "id", p.ID, "token", fmt.Sprintf("%#x", pk.Token), "uid", pk.UID, "has_uid", p.HasUID,
		"dst", pk.Dest, "proto", pk.Proto)
	h.mu.Lock()
	if qs := h.byPacket[pk]; len(qs) > 0 {
		q := qs[0]
		if len(q.packets) >= MaxPacketsPerQuestion {
			h.mu.Unlock()
			h.release(p, enforce.Undecided) // dropped; the sender retries
			return
		}
		q.packets = append(q.packets, p)
		h.mu.Unlock()
		return
	}
	for _, k := range []settledKey{{pk, p.Headers.Src}, {PacketKey: pk}} {
		if s, ok := h.settled[k]; ok && time.Now().Before(s.until) {
			h.mu.Unlock()
			h.release(p, s.verdict)
			return
		}
	}
	if len(h.orphans) >= MaxOrphans {
		h.mu.Unlock()
		h.release(p, enforce.Undecided)
		return
	}
	h.orphans = append(h.orphans, orphan{p: p, pk: pk})
	h.mu.Unlock()
}

// Decided tells the holder that a rule decided a flow (in userspace, after its event): packets already
// queued for it get that verdict.
func (h *Holder) Decided(k Key, v enforce.Verdict) {
	pk := h.packetKeyOf(k)
	h.mu.Lock()
	h.remember(settledKey{PacketKey: pk}, v)
	waiting := h.takeOrphans(pk)
	h.mu.Unlock()
	for _, p := range waiting {
		h.release(p, v)
	}
}

// Attempt takes an undecided attempt that no rule decides: it joins the open question for its flow, or opens
// one (or, in a silent mode, is decided at once).
func (h *Holder) Attempt(a Attempt) {
	st := h.settings()
	switch st.Mode {
	case api.ModeLearn:
		// Allowed at once and cached in the kernel like silent-allow, so learning stays fast; the rule it
		// proposes is reviewed later.
		if err := h.env.Learn(a.Key, enforce.Allow); err != nil {
			h.env.Log.Warn("cache a learning verdict", "error", err)
		}
		h.Decided(a.Key, enforce.Allow)
		if h.env.Propose != nil {
			a.System = h.isSystem(a.UID)
			h.env.Propose(a)
		}
		return
	case api.ModeSilentAllow, api.ModeSilentDeny:
		v := enforce.Allow
		if st.Mode == api.ModeSilentDeny {
			v = enforce.Deny
		}
		if err := h.env.Learn(a.Key, v); err != nil {
			h.env.Log.Warn("cache a silent verdict", "error", err)
		}
		h.env.Log.Info("decided silently", "mode", st.Mode, "exe", a.Exe, "pid", a.PID, "uid", a.UID,
			"dest", a.Dest, "proto", a.Proto)
		h.Decided(a.Key, v)
		return
	}

	a.System = h.isSystem(a.UID)
	hk := hostKeyOf(a)
	h.mu.Lock()
	// The kernel's events lag under a flood: an attempt made before a question covering its flow was settled
	// was part of that question (its packets got that verdict), not a new one.
	if c, ok := h.closedAt[h.packetKeyOf(a.Key)]; ok && !a.Time.IsZero() && a.Time.Before(c.at) {
		h.mu.Unlock()
		h.env.Log.Debug("late event of a settled question", "exe", a.Exe, "dest", a.Dest)
		return
	}
	if q, ok := h.questions[hk]; ok {
		q.api.Attempts++
		q.api.PID = a.PID
		pk := h.packetKeyOf(a.Key)
		h.addPortLocked(q, pk)
		q.packets = append(q.packets, h.takeOrphans(pk)...)
		h.mu.Unlock()
		return
	}
	if len(h.questions) >= MaxQuestions || h.perUser[a.UID] >= MaxQuestionsPerUser {
		h.mu.Unlock()
		h.env.Log.Warn("too many open questions: the default applies at once", "uid", a.UID, "exe", a.Exe,
			"dest", a.Dest)
		h.Decided(a.Key, defaultVerdict(st))
		return
	}
	timeout := time.Duration(st.QuestionTimeout) * time.Second
	if timeout <= 0 {
		timeout = defaultQuestionTimeout
	}
	h.nextID++
	now := time.Now()
	q := &question{attempt: a, deadline: now.Add(timeout), ports: map[uint16]bool{}}
	q.api = api.Question{ID: h.nextID, Exe: a.Exe, Via: a.Via, Changed: a.Changed, Dev: a.App.Dev, Ino: a.App.Ino, PID: a.PID, UID: a.UID,
		User: h.userName(a.UID), Comm: a.Comm, Host: a.Host, Reverse: a.Reverse, Addr: a.Dest.Addr().String(), Port: a.Dest.Port(),
		Protocol: a.Proto.String(), Created: now.UnixMilli(), Deadline: q.deadline.UnixMilli(),
		Default: st.DefaultAction, Attempts: 1, Domain: rules.RegistrableDomain(a.Host), System: a.System}
	if a.App.IsAppImage() && strings.HasPrefix(a.Exe, identity.AppImagePrefix) {
		q.api.Package = a.Exe // an AppImage is named as its rules name it, "appimage:PATH"
	}
	helperCtx := h.ctx
	// The question's own timeout runs from when its agent is asked (the agent's queue may hold it back a while,
	// see helper/askqueue); this context ends when the helper stops or a rule settles it.
	ctx, cancel := context.WithCancel(helperCtx)
	q.cancel = cancel
	h.questions[hk] = q
	pk := h.packetKeyOf(a.Key)
	h.addPortLocked(q, pk)
	h.perUser[a.UID]++
	q.packets = append(q.packets, h.takeOrphans(pk)...)
	n := len(h.questions)
	h.wg.Add(1)
	h.mu.Unlock()
	h.changed(n)
	go func() {
		defer h.wg.Done()
		defer cancel()
		h.ask(ctx, helperCtx, q, st)
	}()
}

// Recheck settles open questions that the rules now decide (a rule was added, maybe by another answer):
// decide evaluates an attempt as for a kernel event. Their agents' questions are withdrawn.
func (h *Holder) Recheck(decide func(Attempt) (enforce.Verdict, bool)) {
	h.mu.Lock()
	if len(h.questions) == 0 || h.ctx.Err() != nil {
		h.mu.Unlock()
		return
	}
	open := make([]*question, 0, len(h.questions))
	for _, q := range h.questions {
		open = append(open, q)
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		h.recheck(open, decide)
	}()
}

func (h *Holder) recheck(open []*question, decide func(Attempt) (enforce.Verdict, bool)) {
	for _, q := range open {
		v, ok := h.decideAll(q, decide)
		if !ok {
			continue
		}
		h.mu.Lock()
		if q.ruled == enforce.Undecided {
			q.ruled = v
		}
		h.mu.Unlock()
		q.cancel()
	}
}

// decideAll decides a question by the rules for every port it covers: it is settled only when the rules give
// all of them one verdict (a rule for one port of several leaves the question open for the others).
func (h *Holder) decideAll(q *question, decide func(Attempt) (enforce.Verdict, bool)) (enforce.Verdict, bool) {
	h.mu.Lock()
	a := q.attempt
	pks := append([]PacketKey(nil), q.pks...)
	h.mu.Unlock()
	verdict := enforce.Undecided
	for _, pk := range pks {
		one := a
		one.Dest = pk.Dest
		v, ok := decide(one)
		if !ok || (verdict != enforce.Undecided && v != verdict) {
			return enforce.Undecided, false
		}
		verdict = v
	}
	return verdict, verdict != enforce.Undecided
}

// addPortLocked adds a port (its packet key) to a question. Callers hold h.mu.
func (h *Holder) addPortLocked(q *question, pk PacketKey) {
	if q.ports[pk.Dest.Port()] {
		return
	}
	q.ports[pk.Dest.Port()] = true
	q.pks = append(q.pks, pk)
	q.lastPort = time.Now()
	h.byPacket[pk] = append(h.byPacket[pk], q)
	q.api.PortCount = uint32(len(q.pks))
	if len(q.api.Ports) < api.MaxQuestionPorts {
		q.api.Ports = append(q.api.Ports, pk.Dest.Port())
	}
}

// Pending lists the open questions, those of uid only unless all is set.
func (h *Holder) Pending(uid uint32, all bool) []api.Question {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []api.Question{}
	for _, q := range h.questions {
		if all || q.api.UID == uid {
			out = append(out, q.api)
		}
	}
	return out
}

// Count returns the number of open questions.
func (h *Holder) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.questions)
}

// ask runs one question; ctx ends when the helper stops (helperCtx) or a rule settles it.
func (h *Holder) ask(ctx, helperCtx context.Context, q *question, st api.Settings) {
	// An attempt can reach the helper a moment before the DNS answer it depends on is learned, and a program
	// trying many ports of one host sends them within moments: wait until the ports stop coming (briefly),
	// decide once more, and only then bother anyone, naming the destination with what is known then.
	h.gather(ctx, q)
	if h.env.Decide != nil {
		if v, ok := h.decideAll(q, h.env.Decide); ok && helperCtx.Err() == nil {
			h.env.Log.Info("question settled", "id", q.api.ID, "verdict", v, "how", "decided by the rules once names caught up",
				"exe", q.attempt.Exe, "uid", q.attempt.UID, "dest", q.attempt.Dest, "proto", q.attempt.Proto)
			h.finish(q, v, rememberFlow)
			return
		}
	}
	h.mu.Lock()
	if h.env.Names != nil && q.api.Host == "" {
		h.mu.Unlock()
		host, rev := h.env.Names(q.attempt)
		h.mu.Lock()
		q.api.Host, q.api.Reverse = host, rev
		q.attempt.Host = host
		q.api.Domain = rules.RegistrableDomain(host)
		if host != "" {
			q.api.Reverse = ""
		}
	}
	snapshot := q.api
	snapshot.Ports = append([]uint16(nil), q.api.Ports...)
	h.mu.Unlock()
	ans, err := h.env.Ask(ctx, snapshot)
	h.mu.Lock()
	ruled := q.ruled
	committed := q.attempt
	for _, pk := range q.pks {
		committed.Ports = append(committed.Ports, pk.Dest.Port())
	}
	h.mu.Unlock()
	v, how, reach := defaultVerdict(st), "", rememberSockets
	switch {
	case ruled != enforce.Undecided:
		v, how, reach = ruled, "settled by a rule made meanwhile", rememberFlow
	case helperCtx.Err() != nil:
		// The helper is stopping: the packets are dropped with the queue, and TCP brings them back to the
		// next helper, which asks again.
		h.finish(q, enforce.Undecided, rememberNothing)
		return
	case err != nil && q.attempt.System && errors.Is(err, ErrNobodyToAsk):
		// No administrator to ask: the system default, and the flow keeps it (marked) so that the
		// system's own traffic is not held again and again. (An administrator who was asked and did not
		// answer gets the ordinary default, as anyone.)
		v = verdictOf(systemDefault(st))
		how, reach = "system process, no administrator's agent: the system default ("+systemDefault(st)+")", rememberFlow
		if h.env.LearnNobodyToAsk != nil {
			h.mu.Lock()
			pks := append([]PacketKey(nil), q.pks...)
			h.mu.Unlock()
			for _, pk := range pks {
				k := q.attempt.Key
				k.Dest = pk.Dest
				if lerr := h.env.LearnNobodyToAsk(k, v); lerr != nil {
					h.env.Log.Warn("cache the system default", "error", lerr)
				}
			}
		}
	case err != nil:
		how = "no answer: " + err.Error()
	default:
		if verr := api.ValidateAnswer(ans, time.Now()); verr != nil {
			how = "invalid answer: " + verr.Error()
			break
		}
		v = enforce.Allow
		if ans.Action == rules.ActionDeny {
			v = enforce.Deny
		}
		how = "answered " + ans.Action + " " + ans.Scope + " " + ans.Duration
		if q.attempt.System {
			how += " (system process, by an administrator)"
		}
		if ans.Duration != rules.DurationOnce {
			if cerr := h.env.Commit(committed, ans); cerr != nil {
				h.env.Log.Error("the answer's rule could not be made; applying the answer once", "error", cerr)
			} else {
				reach = rememberFlow
			}
		}
	}
	h.env.Log.Info("question settled", "id", q.api.ID, "verdict", v, "how", how, "exe", q.attempt.Exe,
		"uid", q.attempt.UID, "system", q.attempt.System, "dest", q.attempt.Dest, "ports", len(committed.Ports),
		"proto", q.attempt.Proto)
	h.finish(q, v, reach)
}

// gather waits before a question is asked: at least preAskPause, then until no new port joined it for
// gatherQuiet, at most gatherMax in all.
func (h *Holder) gather(ctx context.Context, q *question) {
	start := time.Now()
	wait := preAskPause
	for {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		h.mu.Lock()
		quiet := time.Since(q.lastPort)
		h.mu.Unlock()
		if quiet >= gatherQuiet || time.Since(start) >= gatherMax {
			return
		}
		wait = gatherQuiet - quiet
	}
}

// finish closes a question and gives its packets the verdict (Undecided: drop).
func (h *Holder) finish(q *question, v enforce.Verdict, reach remembering) {
	h.mu.Lock()
	delete(h.questions, hostKeyOf(q.attempt))
	var packets []netfilter.Packet
	for _, pk := range q.pks {
		qs := h.byPacket[pk]
		for i := range qs {
			if qs[i] == q {
				qs = append(qs[:i:i], qs[i+1:]...)
				break
			}
		}
		if len(qs) == 0 {
			delete(h.byPacket, pk)
		} else {
			h.byPacket[pk] = qs
		}
	}
	if h.perUser[q.attempt.UID]--; h.perUser[q.attempt.UID] <= 0 {
		delete(h.perUser, q.attempt.UID)
	}
	packets = append(q.packets, h.takeOrphansOf(q.ports, q.pks)...)
	q.packets = nil
	if reach != rememberNothing {
		now := time.Now()
		for _, pk := range q.pks {
			h.closedAt[pk] = closed{at: now, v: v}
		}
	}
	switch reach {
	case rememberFlow:
		for _, pk := range q.pks {
			h.remember(settledKey{PacketKey: pk}, v)
		}
	case rememberSockets:
		for _, p := range packets {
			h.remember(settledKey{h.PacketKeyOf(p), p.Headers.Src}, v)
		}
	}
	n := len(h.questions)
	h.mu.Unlock()
	for _, p := range packets {
		h.release(p, v)
	}
	h.changed(n)
}

// remember keeps a settled verdict for late packets of the same flow. Callers hold h.mu.
func (h *Holder) remember(k settledKey, v enforce.Verdict) {
	if len(h.settled) >= maxSettled {
		now := time.Now()
		for k, s := range h.settled {
			if now.After(s.until) {
				delete(h.settled, k)
			}
		}
		if len(h.settled) >= maxSettled {
			return
		}
	}
	h.settled[k] = settled{verdict: v, until: time.Now().Add(settledMemory)}
}

// takeOrphans removes and returns the waiting packets of pk. Callers hold h.mu.
func (h *Holder) takeOrphans(pk PacketKey) []netfilter.Packet {
	var out []netfilter.Packet
	kept := h.orphans[:0]
	for _, o := range h.orphans {
		if o.pk == pk {
			out = append(out, o.p)
		} else {
			kept = append(kept, o)
		}
	}
	h.orphans = kept
	return out
}

// takeOrphansOf removes and returns the waiting packets of any of pks. Callers hold h.mu.
func (h *Holder) takeOrphansOf(_ map[uint16]bool, pks []PacketKey) []netfilter.Packet {
	want := make(map[PacketKey]bool, len(pks))
	for _, pk := range pks {
		want[pk] = true
	}
	var out []netfilter.Packet
	kept := h.orphans[:0]
	for _, o := range h.orphans {
		if want[o.pk] {
			out = append(out, o.p)
		} else {
			kept = append(kept, o)
		}
	}
	h.orphans = kept
	return out
}

// sweep deals with packets whose event has not come: the helper looks their flow up itself.
func (h *Holder) sweep(now time.Time) {
	h.mu.Lock()
	var due []orphan
	kept := h.orphans[:0]
	for _, o := range h.orphans {
		if now.Sub(o.p.Time) >= orphanWait {
			due = append(due, o)
		} else {
			kept = append(kept, o)
		}
	}
	h.orphans = kept
	for k, s := range h.settled {
		if now.After(s.until) {
			delete(h.settled, k)
		}
	}
	for k, c := range h.closedAt {
		if now.Sub(c.at) > settledMemory {
			delete(h.closedAt, k)
		}
	}
	h.mu.Unlock()
	if len(due) == 0 {
		return
	}
	// One lookup per flow, not per packet.
	byKey := map[PacketKey][]netfilter.Packet{}
	for _, o := range due {
		byKey[o.pk] = append(byKey[o.pk], o.p)
	}
	for pk, ps := range byKey {
		// The event may have come (or the question been settled) while this sweep worked through others:
		// what the holder knows now comes first; Resolve (a read of the kernel's flows) only for the rest.
		if ps = h.placeLate(pk, ps); len(ps) == 0 {
			continue
		}
		a, v, ok := h.env.Resolve(ps[0], pk)
		if !ok {
			v = defaultVerdict(h.settings())
			h.env.Log.Info("held packet of an unknown application: the default applies", "dest", pk.Dest,
				"uid", pk.UID, "verdict", v)
			for _, p := range ps {
				h.release(p, v)
			}
			continue
		}
		if v == enforce.Allow || v == enforce.Deny {
			h.mu.Lock()
			h.remember(settledKey{PacketKey: pk}, v)
			h.mu.Unlock()
			for _, p := range ps {
				h.release(p, v)
			}
			continue
		}
		// Undecided: ask (again, when the helper restarted while it was held).
		h.mu.Lock()
		h.orphans = append(h.orphans, func() []orphan {
			out := make([]orphan, len(ps))
			for i, p := range ps {
				out[i] = orphan{p: p, pk: pk}
			}
			return out
		}()...)
		h.mu.Unlock()
		h.Attempt(a)
		h.mu.Lock()
		left := h.takeOrphans(pk)
		h.mu.Unlock()
		// In a silent mode Attempt decided and released them already; anything left has no question.
		for _, p := range left {
			h.release(p, defaultVerdict(h.settings()))
		}
	}
}

// placeLate gives swept packets to the question their flow has now, or the verdict it was settled with; it
// returns the packets neither covers.
func (h *Holder) placeLate(pk PacketKey, ps []netfilter.Packet) []netfilter.Packet {
	h.mu.Lock()
	if qs := h.byPacket[pk]; len(qs) > 0 {
		qs[0].packets = append(qs[0].packets, ps...)
		h.mu.Unlock()
		return nil
	}
	type verdictOn struct {
		p netfilter.Packet
		v enforce.Verdict
	}
	var decided []verdictOn
	left := ps[:0]
	now := time.Now()
	for _, p := range ps {
		found := false
		for _, k := range []settledKey{{pk, p.Headers.Src}, {PacketKey: pk}} {
			if s, ok := h.settled[k]; ok && now.Before(s.until) {
				decided = append(decided, verdictOn{p, s.verdict})
				found = true
				break
			}
		}
		// A packet of the flow that waited its full time without an event, after a question covering the flow
		// was settled, is a late one of a socket of that question whose first packets the queue lost (a
		// new socket's event would have come by now): it gets that question's verdict.
		if c, ok := h.closedAt[pk]; !found && ok && now.Sub(c.at) < settledMemory {
			decided = append(decided, verdictOn{p, c.v})
			found = true
		}
		if !found {
			left = append(left, p)
		}
	}
	h.mu.Unlock()
	for _, d := range decided {
		h.release(d.p, d.v)
	}
	return left
}

// release gives a packet its verdict: Allow accepts, Deny refuses (reset), anything else drops.
func (h *Holder) release(p netfilter.Packet, v enforce.Verdict) {
	h.env.Log.Debug("held packet released", "id", p.ID, "verdict", v, "dst", p.Headers.Dst, "mark", fmt.Sprintf("%#x", p.Mark),
		"held_for", time.Since(p.Time))
	var err error
	switch v {
	case enforce.Allow:
		err = h.env.Queue.Accept(p.ID)
	case enforce.Deny:
		err = h.env.Queue.Refuse(p.ID, p.Mark|h.env.Marks.Deny)
	default:
		err = h.env.Queue.Drop(p.ID)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		h.env.Log.Debug("verdict on a held packet", "id", p.ID, "verdict", v, "error", err)
	}
}

func (h *Holder) settings() api.Settings {
	if h.env.Settings == nil {
		return api.Settings{Mode: api.ModeAlert, DefaultAction: api.DefaultDeny}
	}
	return h.env.Settings()
}

func (h *Holder) userName(uid uint32) string {
	if h.env.UserName != nil {
		return h.env.UserName(uid)
	}
	return fmt.Sprint(uid)
}

func (h *Holder) changed(n int) {
	if h.env.Changed != nil {
		h.env.Changed(n)
	}
}

func defaultVerdict(st api.Settings) enforce.Verdict { return verdictOf(st.DefaultAction) }

func verdictOf(action string) enforce.Verdict {
	if action == api.DefaultAllow {
		return enforce.Allow
	}
	return enforce.Deny
}

// systemDefault is the default for system processes' questions ("" in older settings: allow).
func systemDefault(st api.Settings) string {
	if st.SystemDefault == api.DefaultDeny {
		return api.DefaultDeny
	}
	return api.DefaultAllow
}

func (h *Holder) isSystem(uid uint32) bool {
	return h.env.IsSystem != nil && h.env.IsSystem(uid)
}
