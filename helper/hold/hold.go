// Package hold keeps the connections the kernel left undecided waiting while their owner decides.
//
// Two things arrive for every undecided attempt, in either order: the kernel's event (who: executable, user,
// pid, destination) and, through netfilter's queue, the attempt's packets (a SYN and its retransmissions, or
// datagrams). The holder ties them together by the identity token in the packet's mark, the socket's uid and
// the destination. Attempts of one application to one destination share one question; each question waits
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
	MaxPacketsPerQuestion  = 64
	MaxOrphans             = 4096
	orphanWait             = 150 * time.Millisecond // how long a packet waits for its kernel event
	settledMemory          = 10 * time.Second       // late packets of a settled question get its verdict
	maxSettled             = 16384
	sweepInterval          = 50 * time.Millisecond
	preAskPause            = 20 * time.Millisecond // lets DNS answers being learned catch up before asking
	defaultQuestionTimeout = 30 * time.Second
)

// Key names the attempts that share one question: one application, run by one user, to one destination.
type Key struct {
	App   identity.Executable
	UID   uint32
	Dest  netip.AddrPort // IPv4 as plain IPv4
	Proto enforce.Protocol
}

// Attempt is one undecided attempt as the kernel reported it.
type Attempt struct {
	Key
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
	pk       PacketKey
	packets  []netfilter.Packet
	deadline time.Time
	cancel   context.CancelFunc // ends the agent's Ask when a rule settles the question first
	ruled    enforce.Verdict    // the verdict of that rule (Undecided while none); guarded by Holder.mu
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
	questions map[Key]*question
	byPacket  map[PacketKey][]*question
	orphans   []orphan
	settled   map[settledKey]settled
	perUser   map[uint32]int

	ctx context.Context
	wg  sync.WaitGroup
}

// New returns a holder; Run starts it.
func New(env Env) *Holder {
	if env.Log == nil {
		env.Log = slog.Default()
	}
	return &Holder{env: env, questions: map[Key]*question{}, byPacket: map[PacketKey][]*question{},
		settled: map[settledKey]settled{}, perUser: map[uint32]int{}, ctx: context.Background()}
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

	h.mu.Lock()
	if q, ok := h.questions[a.Key]; ok {
		q.api.Attempts++
		q.api.PID = a.PID
		q.packets = append(q.packets, h.takeOrphans(q.pk)...)
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
	q := &question{attempt: a, pk: h.packetKeyOf(a.Key), deadline: now.Add(timeout)}
	q.api = api.Question{ID: h.nextID, Exe: a.Exe, Via: a.Via, Changed: a.Changed, Dev: a.App.Dev, Ino: a.App.Ino, PID: a.PID, UID: a.UID,
		User: h.userName(a.UID), Comm: a.Comm, Host: a.Host, Reverse: a.Reverse, Addr: a.Dest.Addr().String(), Port: a.Dest.Port(),
		Protocol: a.Proto.String(), Created: now.UnixMilli(), Deadline: q.deadline.UnixMilli(),
		Default: st.DefaultAction, Attempts: 1}
	helperCtx := h.ctx
	ctx, cancel := context.WithDeadline(helperCtx, q.deadline)
	q.cancel = cancel
	h.questions[a.Key] = q
	h.byPacket[q.pk] = append(h.byPacket[q.pk], q)
	h.perUser[a.UID]++
	q.packets = append(q.packets, h.takeOrphans(q.pk)...)
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
		v, ok := decide(q.attempt)
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

// ask runs one question; ctx ends at its deadline, when the helper stops (helperCtx), or when a rule settles it.
func (h *Holder) ask(ctx, helperCtx context.Context, q *question, st api.Settings) {
	// An attempt can reach the helper a moment before the DNS answer it depends on is learned: decide once
	// more after a short pause, before bothering anyone, and name the destination with what is known then.
	if h.env.Decide != nil {
		select {
		case <-time.After(preAskPause):
		case <-ctx.Done():
		}
		if v, ok := h.env.Decide(q.attempt); ok && helperCtx.Err() == nil {
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
		if host != "" {
			q.api.Reverse = ""
		}
	}
	snapshot := q.api
	h.mu.Unlock()
	ans, err := h.env.Ask(ctx, snapshot)
	h.mu.Lock()
	ruled := q.ruled
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
		if ans.Duration != rules.DurationOnce {
			if cerr := h.env.Commit(q.attempt, ans); cerr != nil {
				h.env.Log.Error("the answer's rule could not be made; applying the answer once", "error", cerr)
			} else {
				reach = rememberFlow
			}
		}
	}
	h.env.Log.Info("question settled", "id", q.api.ID, "verdict", v, "how", how, "exe", q.attempt.Exe,
		"uid", q.attempt.UID, "dest", q.attempt.Dest, "proto", q.attempt.Proto)
	h.finish(q, v, reach)
}

// finish closes a question and gives its packets the verdict (Undecided: drop).
func (h *Holder) finish(q *question, v enforce.Verdict, reach remembering) {
	h.mu.Lock()
	delete(h.questions, q.attempt.Key)
	qs := h.byPacket[q.pk]
	for i := range qs {
		if qs[i] == q {
			qs = append(qs[:i:i], qs[i+1:]...)
			break
		}
	}
	if len(qs) == 0 {
		delete(h.byPacket, q.pk)
	} else {
		h.byPacket[q.pk] = qs
	}
	if h.perUser[q.attempt.UID]--; h.perUser[q.attempt.UID] <= 0 {
		delete(h.perUser, q.attempt.UID)
	}
	packets := append(q.packets, h.takeOrphans(q.pk)...)
	q.packets = nil
	switch reach {
	case rememberFlow:
		h.remember(settledKey{PacketKey: q.pk}, v)
	case rememberSockets:
		for _, p := range packets {
			h.remember(settledKey{q.pk, p.Headers.Src}, v)
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

func defaultVerdict(st api.Settings) enforce.Verdict {
	if st.DefaultAction == api.DefaultAllow {
		return enforce.Allow
	}
	return enforce.Deny
}
