package hold

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// These tests drive the holder through its public methods with every effect (the queue's verdicts, the
// agent, the rules) a fake in hold.Env, and check the order the holder promises: a packet that arrives before
// its event waits as an orphan and joins the question its attempt opens; an orphan whose event never comes is
// resolved by the sweep; an attempt is decided once more before anyone is asked; the question's finish gives
// every held packet the verdict, and late packets of the flow the same one.

// fakeQueue records the verdicts on packets, in order.
type fakeQueue struct {
	mu       sync.Mutex
	verdicts map[uint32]string
	changed  chan struct{}
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{verdicts: map[uint32]string{}, changed: make(chan struct{}, 100)}
}

func (q *fakeQueue) set(id uint32, v string) error {
	q.mu.Lock()
	q.verdicts[id] = v
	q.mu.Unlock()
	select {
	case q.changed <- struct{}{}:
	default:
	}
	return nil
}

func (q *fakeQueue) Accept(id uint32) error { return q.set(id, "accept") }
func (q *fakeQueue) Refuse(id uint32, mark uint32) error {
	if mark&enforce.DefaultMarks.Deny == 0 {
		return q.set(id, "refuse without the deny mark")
	}
	return q.set(id, "refuse")
}
func (q *fakeQueue) Drop(id uint32) error { return q.set(id, "drop") }

func (q *fakeQueue) verdict(id uint32) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.verdicts[id]
}

// waitVerdict waits until packet id has a verdict and returns it ("" after the timeout).
func (q *fakeQueue) waitVerdict(t *testing.T, id uint32) string {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		if v := q.verdict(id); v != "" {
			return v
		}
		select {
		case <-q.changed:
		case <-deadline:
			return ""
		}
	}
}

// fakeAgent answers questions as a test says, and records them.
type fakeAgent struct {
	mu     sync.Mutex
	asked  []api.Question
	askedc chan api.Question
	answer func(ctx context.Context, q api.Question) (api.Answer, error)
}

func (a *fakeAgent) ask(ctx context.Context, q api.Question) (api.Answer, error) {
	a.mu.Lock()
	a.asked = append(a.asked, q)
	a.mu.Unlock()
	a.askedc <- q
	return a.answer(ctx, q)
}

func (a *fakeAgent) questions() []api.Question {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]api.Question(nil), a.asked...)
}

type rig struct {
	h       *Holder
	queue   *fakeQueue
	agent   *fakeAgent
	mu      sync.Mutex
	mode    string
	commits []api.Answer
	learned []enforce.Verdict
	resolve func(p netfilter.Packet, k PacketKey) (Attempt, enforce.Verdict, bool)
	decide  func(a Attempt) (enforce.Verdict, bool)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{queue: newFakeQueue(), mode: api.ModeAlert,
		agent: &fakeAgent{askedc: make(chan api.Question, 100), answer: func(ctx context.Context, q api.Question) (api.Answer, error) {
			<-ctx.Done()
			return api.Answer{}, ctx.Err()
		}},
		resolve: func(netfilter.Packet, PacketKey) (Attempt, enforce.Verdict, bool) {
			return Attempt{}, enforce.Undecided, false
		},
		decide: func(Attempt) (enforce.Verdict, bool) { return enforce.Undecided, false },
	}
	r.h = New(Env{
		Queue: r.queue,
		Marks: enforce.DefaultMarks,
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Settings: func() api.Settings {
			r.mu.Lock()
			defer r.mu.Unlock()
			return api.Settings{Mode: r.mode, DefaultAction: api.DefaultDeny, QuestionTimeout: 5}
		},
		Ask: r.agent.ask,
		Commit: func(a Attempt, ans api.Answer) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.commits = append(r.commits, ans)
			return nil
		},
		Learn: func(k Key, v enforce.Verdict) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.learned = append(r.learned, v)
			return nil
		},
		Resolve: func(p netfilter.Packet, k PacketKey) (Attempt, enforce.Verdict, bool) {
			r.mu.Lock()
			f := r.resolve
			r.mu.Unlock()
			return f(p, k)
		},
		UserName: func(uid uint32) string { return "user" },
		Decide: func(a Attempt) (enforce.Verdict, bool) {
			r.mu.Lock()
			f := r.decide
			r.mu.Unlock()
			return f(a)
		},
		Names: func(a Attempt) (string, string) { return "", "" },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run stores its context before it sweeps; give it that moment so questions belong to it.
	time.Sleep(10 * time.Millisecond)
	return r
}

var (
	app  = identity.Executable{Dev: 0x800001, Ino: 4242}
	dest = netip.MustParseAddrPort("192.0.2.7:443")
)

func attempt() Attempt {
	return Attempt{Key: Key{App: app, UID: 1000, Dest: dest, Proto: enforce.Protocol(unix.IPPROTO_TCP)},
		PID: 77, Exe: "/usr/bin/curl", Comm: "curl", Time: time.Now()}
}

// packet is a SYN of the attempt's flow from source port sport, queued at t.
func packet(id uint32, sport uint16, at time.Time) netfilter.Packet {
	m := enforce.DefaultMarks
	return netfilter.Packet{ID: id, Mark: m.Held | m.TokenOf(app, 1000), UID: 1000, HasUID: true, Time: at,
		Headers: netfilter.Headers{Proto: unix.IPPROTO_TCP, Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), sport), Dst: dest}}
}

// committed is what the holder asked to commit so far.
func (r *rig) committed() []api.Answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Answer(nil), r.commits...)
}

// with changes the rig's fakes while the holder may be calling them.
func (r *rig) with(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

// answerFrom answers with what the test sends, or gives up like an agent when the question is withdrawn.
func answerFrom(answers <-chan api.Answer) func(ctx context.Context, q api.Question) (api.Answer, error) {
	return func(ctx context.Context, q api.Question) (api.Answer, error) {
		select {
		case a := <-answers:
			return a, nil
		case <-ctx.Done():
			return api.Answer{}, ctx.Err()
		}
	}
}

func (r *rig) waitAsked(t *testing.T) api.Question {
	t.Helper()
	select {
	case q := <-r.agent.askedc:
		return q
	case <-time.After(3 * time.Second):
		t.Fatal("the agent was never asked")
		return api.Question{}
	}
}

// TestPacketBeforeEventJoinsItsQuestion: the packet comes first and waits; the event opens the question,
// which takes the waiting packet; the answer (allow once) accepts it and makes no rule.
func TestPacketBeforeEventJoinsItsQuestion(t *testing.T) {
	r := newRig(t)
	answered := make(chan api.Answer, 1)
	r.agent.answer = answerFrom(answered)
	r.h.Packet(packet(1, 40000, time.Now()))
	r.h.Attempt(attempt())
	q := r.waitAsked(t)
	if q.Exe != "/usr/bin/curl" || q.Addr != "192.0.2.7" || q.Port != 443 || q.Protocol != "tcp" || q.UID != 1000 {
		t.Fatalf("question %+v does not describe the attempt", q)
	}
	if v := r.queue.verdict(1); v != "" {
		t.Fatalf("packet got %q before anyone answered", v)
	}
	answered <- api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationOnce}
	if v := r.queue.waitVerdict(t, 1); v != "accept" {
		t.Fatalf("the held packet got %q after Allow once, want accept", v)
	}
	if c := r.committed(); len(c) != 0 {
		t.Fatalf("allow once made rules: %+v", c)
	}
}

// TestAttemptsOfOneFlowShareOneQuestion: a second attempt and a packet of another socket join the open
// question; one answer (allow forever) accepts every packet, makes one rule, and late packets of the flow get
// the verdict without a new question (not the default, deny, that a packet nobody knows would get).
func TestAttemptsOfOneFlowShareOneQuestion(t *testing.T) {
	r := newRig(t)
	answered := make(chan api.Answer, 1)
	r.agent.answer = answerFrom(answered)
	r.h.Attempt(attempt())
	r.h.Packet(packet(1, 40000, time.Now()))
	r.waitAsked(t)
	r.h.Attempt(attempt())
	r.h.Packet(packet(2, 40001, time.Now()))
	if p := r.h.Pending(1000, false); len(p) != 1 || p[0].Attempts != 2 {
		t.Fatalf("pending %+v, want one question with 2 attempts", p)
	}
	// Packets of an open question wait for its answer, however long the person takes (not for the sweep).
	time.Sleep(3 * orphanWait)
	for _, id := range []uint32{1, 2} {
		if v := r.queue.verdict(id); v != "" {
			t.Fatalf("packet %d got %q while its question was open", id, v)
		}
	}
	answered <- api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationForever}
	for _, id := range []uint32{1, 2} {
		if v := r.queue.waitVerdict(t, id); v != "accept" {
			t.Fatalf("packet %d got %q after Allow, want accept", id, v)
		}
	}
	r.h.Packet(packet(3, 40002, time.Now()))
	if v := r.queue.waitVerdict(t, 3); v != "accept" {
		t.Fatalf("a late packet of the allowed flow got %q, want accept", v)
	}
	if n := len(r.agent.questions()); n != 1 {
		t.Fatalf("the agent was asked %d times, want once", n)
	}
	if c := r.committed(); len(c) != 1 || c[0].Duration != rules.DurationForever {
		t.Fatalf("commits %+v, want the one forever rule", c)
	}
}

// TestOrphanIsResolvedBySweep: a packet whose event never comes is looked up by the sweep after it waited;
// what the rules say (allow) is its verdict, and remembered for the flow.
func TestOrphanIsResolvedBySweep(t *testing.T) {
	r := newRig(t)
	resolved := make(chan time.Duration, 10)
	r.with(func() {
		r.resolve = func(p netfilter.Packet, k PacketKey) (Attempt, enforce.Verdict, bool) {
			resolved <- time.Since(p.Time)
			return attempt(), enforce.Allow, true
		}
	})
	r.h.Packet(packet(1, 40000, time.Now()))
	if v := r.queue.waitVerdict(t, 1); v != "accept" {
		t.Fatalf("orphan got %q, want accept from the rules", v)
	}
	if waited := <-resolved; waited < orphanWait {
		t.Fatalf("the orphan was resolved after %v, before it had waited %v for its event", waited, orphanWait)
	}
	r.h.Packet(packet(2, 40001, time.Now()))
	if v := r.queue.waitVerdict(t, 2); v != "accept" {
		t.Fatalf("a later packet of the resolved flow got %q, want accept", v)
	}
	if len(resolved) != 0 {
		t.Fatalf("the flow was resolved again instead of remembered")
	}
}

// TestOrphanOfUnknownApplicationGetsDefault: the sweep finds no application: the default (deny) applies.
func TestOrphanOfUnknownApplicationGetsDefault(t *testing.T) {
	r := newRig(t)
	r.h.Packet(packet(1, 40000, time.Now()))
	if v := r.queue.waitVerdict(t, 1); v != "refuse" {
		t.Fatalf("orphan of an unknown application got %q, want refuse (default deny)", v)
	}
}

// TestUndecidedOrphanIsAsked: the sweep finds the application but no rule decides: its owner is asked and the
// packet waits for the answer.
func TestUndecidedOrphanIsAsked(t *testing.T) {
	r := newRig(t)
	answered := make(chan api.Answer, 1)
	r.agent.answer = answerFrom(answered)
	r.with(func() {
		r.resolve = func(p netfilter.Packet, k PacketKey) (Attempt, enforce.Verdict, bool) {
			return attempt(), enforce.Undecided, true
		}
	})
	r.h.Packet(packet(1, 40000, time.Now()))
	r.waitAsked(t)
	if v := r.queue.verdict(1); v != "" {
		t.Fatalf("packet got %q while its question was open", v)
	}
	answered <- api.Answer{Action: rules.ActionAllow, Scope: api.ScopeHost, Duration: rules.DurationOnce}
	if v := r.queue.waitVerdict(t, 1); v != "accept" {
		t.Fatalf("packet got %q after Allow, want accept", v)
	}
}

// TestDecidedBeforeAsking: the rules decide the attempt on the check just before asking (a name was learned
// meanwhile): nobody is asked and the packets get the rule's verdict.
func TestDecidedBeforeAsking(t *testing.T) {
	r := newRig(t)
	r.with(func() { r.decide = func(Attempt) (enforce.Verdict, bool) { return enforce.Allow, true } })
	r.h.Packet(packet(1, 40000, time.Now()))
	r.h.Attempt(attempt())
	if v := r.queue.waitVerdict(t, 1); v != "accept" {
		t.Fatalf("packet got %q, want accept by the rule", v)
	}
	if q := r.agent.questions(); len(q) != 0 {
		t.Fatalf("the agent was asked %+v although a rule decided", q)
	}
}

// TestNoAnswerAppliesDefaultToThisConnectionOnly: the agent fails: the default applies to the held packets
// and makes no rule; the next connection (another socket) is asked again.
func TestNoAnswerAppliesDefaultToThisConnectionOnly(t *testing.T) {
	r := newRig(t)
	r.agent.answer = func(ctx context.Context, q api.Question) (api.Answer, error) {
		return api.Answer{}, errors.New("no agent")
	}
	r.h.Attempt(attempt())
	r.h.Packet(packet(1, 40000, time.Now()))
	if v := r.queue.waitVerdict(t, 1); v != "refuse" {
		t.Fatalf("packet got %q with nobody answering, want refuse (default deny)", v)
	}
	r.h.Attempt(attempt())
	r.waitAsked(t)
	r.waitAsked(t)
	if c := r.committed(); len(c) != 0 {
		t.Fatalf("the default made rules: %+v", c)
	}
}

// TestRecheckSettlesOpenQuestion: a rule made while a question is open settles it: the agent's Ask is
// withdrawn and the packets get the rule's verdict (allow; the default would deny).
func TestRecheckSettlesOpenQuestion(t *testing.T) {
	r := newRig(t)
	r.h.Attempt(attempt())
	r.h.Packet(packet(1, 40000, time.Now()))
	r.waitAsked(t)
	r.h.Recheck(func(Attempt) (enforce.Verdict, bool) { return enforce.Allow, true })
	if v := r.queue.waitVerdict(t, 1); v != "accept" {
		t.Fatalf("packet got %q after an allow rule settled its question, want accept", v)
	}
	if n := r.h.Count(); n != 0 {
		t.Fatalf("%d questions still open", n)
	}
}

// TestSilentModeDecidesAtOnce: silent-deny decides without asking, caches the verdict in the kernel (Learn)
// and refuses the packets that waited.
func TestSilentModeDecidesAtOnce(t *testing.T) {
	r := newRig(t)
	r.with(func() { r.mode = api.ModeSilentDeny })
	r.h.Packet(packet(1, 40000, time.Now()))
	r.h.Attempt(attempt())
	if v := r.queue.waitVerdict(t, 1); v != "refuse" {
		t.Fatalf("packet got %q in silent-deny, want refuse", v)
	}
	if q := r.agent.questions(); len(q) != 0 {
		t.Fatalf("silent mode asked %+v", q)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.learned) != 1 || r.learned[0] != enforce.Deny {
		t.Fatalf("learned %v, want one deny", r.learned)
	}
}

// TestInvalidAnswerAppliesDefault: an answer that does not validate is not obeyed.
func TestInvalidAnswerAppliesDefault(t *testing.T) {
	r := newRig(t)
	r.agent.answer = func(ctx context.Context, q api.Question) (api.Answer, error) {
		return api.Answer{Action: rules.ActionAllow, Scope: "everything", Duration: rules.DurationForever}, nil
	}
	r.h.Attempt(attempt())
	r.h.Packet(packet(1, 40000, time.Now()))
	if v := r.queue.waitVerdict(t, 1); v != "refuse" {
		t.Fatalf("packet got %q after an invalid allow, want refuse (default deny)", v)
	}
	if c := r.committed(); len(c) != 0 {
		t.Fatalf("an invalid answer made rules: %+v", c)
	}
}
