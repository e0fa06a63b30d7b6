package enforcement

import (
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/exepath"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// eventLog reads the kernel's events while the test runs, as the helper does, so paths are resolved while
// the processes are alive.
type eventLog struct {
	mu     sync.Mutex
	events []enforce.Event
	err    error
}

func recordEvents(t *testing.T, enf *enforce.Enforcer) *eventLog {
	t.Helper()
	rd, err := enf.Events(exepath.New("/proc", 64))
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := rd.Read()
			l.mu.Lock()
			if err != nil {
				if !errors.Is(err, enforce.ErrClosed) {
					l.err = err
				}
				l.mu.Unlock()
				return
			}
			l.events = append(l.events, ev)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		rd.Close()
		<-done
	})
	return l
}

// of returns app's events once want of them arrived and no more followed for a moment (duplicates must not
// follow), or what arrived within 10 s.
func (l *eventLog) of(t *testing.T, app identity.Executable, want int) []enforce.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []enforce.Event
	for time.Now().Before(deadline) {
		l.mu.Lock()
		got = got[:0]
		for _, ev := range l.events {
			if ev.App == app {
				got = append(got, ev)
			}
		}
		err := l.err
		l.mu.Unlock()
		if err != nil {
			t.Fatalf("read events: %v", err)
		}
		if len(got) >= want {
			time.Sleep(300 * time.Millisecond)
			l.mu.Lock()
			n := 0
			for _, ev := range l.events {
				if ev.App == app {
					n++
				}
			}
			l.mu.Unlock()
			if n == len(got) {
				break
			}
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	return append([]enforce.Event(nil), got...)
}

func TestUndecidedAttemptsAreMarkedWithOneEventEach(t *testing.T) {
	enf := openEnforcer(t, "undecided")
	x := newApps(t, enf)
	marks := enf.Marks()
	log := recordEvents(t, enf)

	// Nothing decides for C: every attempt goes through, marked, and is reported once.
	c := testrig.CopyApp(t, testrig.Build(t).Client, x.dir, "app-undecided")
	cID := ident(t, c)
	type attempt struct {
		proto, addr string
		opts        testrig.RunOpts
	}
	attempts := []attempt{
		{"tcp", x.srv.TCP4, testrig.RunOpts{}},
		{"tcp", x.srv.TCP6, testrig.RunOpts{}},
		{"udp", x.srv.UDP4, testrig.RunOpts{}},
		{"udp", x.srv.UDP6, testrig.RunOpts{}},
		{"tcp", x.srv.TCP4, testrig.RunOpts{UID: nobody}},
		{"tcp", x.srv.TCP4, testrig.RunOpts{Comm: "renamed"}},
		// The application's own mark: bits outside Tattle's mask stay; those inside are replaced while held.
		{"tcp", x.srv.TCP4, testrig.RunOpts{Mark: 0x0100002a}},
	}
	results := make([]testrig.Result, len(attempts))
	for i, a := range attempts {
		results[i] = testrig.RunApp(t, c, a.opts, a.proto, a.addr)
		expectAllowed(t, "undecided "+a.proto+" "+a.addr, results[i], a.proto == "udp")
		// Held, and the token of this application and user: netfilter queues the packets and the helper
		// tells whose they are. Not strict: the application has no deny rule.
		want := marks.Held | marks.TokenOf(cID, a.opts.UID) | a.opts.Mark&^marks.All()
		if results[i].Mark != want {
			t.Errorf("attempt %d: socket mark %#x, want %#x (held %#x, token %#x, own %#x)", i, results[i].Mark, want,
				marks.Held, marks.TokenOf(cID, a.opts.UID), a.opts.Mark)
		}
	}
	events := log.of(t, cID, len(attempts))
	if len(events) != len(attempts) {
		t.Fatalf("%d events for %d undecided attempts: %+v", len(events), len(attempts), events)
	}
	for i, ev := range events {
		a, r := attempts[i], results[i]
		dest := netip.MustParseAddrPort(a.addr)
		wantUID := a.opts.UID
		wantComm := filepath.Base(c)
		if a.opts.Comm != "" {
			wantComm = a.opts.Comm
		}
		wantHook := enforce.HookConnect
		if a.proto == "udp" {
			wantHook = enforce.HookSendmsg
		}
		switch {
		case ev.Kind != enforce.EventUndecided || ev.Verdict != enforce.Undecided:
			t.Errorf("event %d: kind %v verdict %v, want undecided", i, ev.Kind, ev.Verdict)
		case ev.TGID != uint32(r.PID):
			t.Errorf("event %d: pid %d, client was %d", i, ev.TGID, r.PID)
		case ev.UID != wantUID:
			t.Errorf("event %d: uid %d, want %d", i, ev.UID, wantUID)
		case ev.Exe != c || !ev.ExeFromKernel:
			t.Errorf("event %d: exe %q (read by the kernel: %v), want %q from the kernel", i, ev.Exe, ev.ExeFromKernel, c)
		case ev.Dest != dest:
			t.Errorf("event %d: destination %v, want %v", i, ev.Dest, dest)
		case ev.Proto.String() != a.proto:
			t.Errorf("event %d: protocol %v, want %s", i, ev.Proto, a.proto)
		case ev.Comm != wantComm:
			t.Errorf("event %d: comm %q, want %q", i, ev.Comm, wantComm)
		case ev.Hook != wantHook:
			t.Errorf("event %d: hook %v, want %v", i, ev.Hook, wantHook)
		case time.Since(ev.Time) > time.Minute || time.Until(ev.Time) > time.Second:
			t.Errorf("event %d: time %v is not now", i, ev.Time)
		}
	}

	// A decided socket loses the mark: the same UDP socket cannot be tested from outside, but a decided
	// application's sockets must never carry it.
	if err := enf.SetDefault(enforce.Scope{App: cID, UID: identity.AnyUID}, enforce.Allow, 40); err != nil {
		t.Fatal(err)
	}
	r := testrig.RunApp(t, c, testrig.RunOpts{}, "tcp", x.srv.TCP4)
	expectAllowed(t, "C after allow", r, false)
	if r.Mark&marks.All() != 0 {
		t.Errorf("allowed socket carries Tattle's mark bits %#x", r.Mark)
	}

	// An application a rule denies something is held strictly: its undecided packets never pass unasked,
	// even while no helper runs.
	d := testrig.CopyApp(t, testrig.Build(t).Client, x.dir, "app-strict")
	dID := ident(t, d)
	if err := enf.SetDestination(enforce.Destination{Scope: enforce.Scope{App: dID, UID: identity.AnyUID},
		Prefix: netip.MustParsePrefix("192.0.2.0/24"), Proto: enforce.TCP}, enforce.Deny, 41); err != nil {
		t.Fatal(err)
	}
	r = testrig.RunApp(t, d, testrig.RunOpts{}, "tcp", x.srv.TCP4)
	expectAllowed(t, "strict app, undecided destination", r, false)
	if want := marks.Held | marks.Strict | marks.TokenOf(dID, 0); r.Mark != want {
		t.Errorf("strictly held socket: mark %#x, want %#x", r.Mark, want)
	}
	st, err := enf.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsLost != 0 || st.MarkFailed != 0 {
		t.Errorf("kernel reported losses: %+v", st)
	}
}

func TestDecidedFlowsAreCountedNotStreamed(t *testing.T) {
	enf := openEnforcer(t, "counters")
	x := newApps(t, enf)
	log := recordEvents(t, enf)
	aID, bID := ident(t, x.a), ident(t, x.b)
	if err := enf.SetDefault(enforce.Scope{App: aID, UID: identity.AnyUID}, enforce.Deny, 50); err != nil {
		t.Fatal(err)
	}
	if err := enf.SetDefault(enforce.Scope{App: bID, UID: identity.AnyUID}, enforce.Allow, 51); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 5
	for i := 0; i < n; i++ {
		expectDenied(t, "A", testrig.RunApp(t, x.a, testrig.RunOpts{}, "tcp", x.srv.TCP4))
		expectAllowed(t, "B", testrig.RunApp(t, x.b, testrig.RunOpts{}, "tcp", x.srv.TCP4), false)
	}

	// One event per new flow, not per attempt.
	for _, app := range []struct {
		name    string
		id      identity.Executable
		path    string
		verdict enforce.Verdict
		rule    uint32
	}{{"A", aID, x.a, enforce.Deny, 50}, {"B", bID, x.b, enforce.Allow, 51}} {
		evs := log.of(t, app.id, 1)
		if len(evs) != 1 {
			t.Errorf("%s: %d events for %d attempts of one decided flow, want 1", app.name, len(evs), n)
			continue
		}
		ev := evs[0]
		if ev.Kind != enforce.EventNewFlow || ev.Verdict != app.verdict || ev.RuleID != app.rule || ev.Exe != app.path {
			t.Errorf("%s: event %+v, want new-flow %v by rule %d from %s", app.name, ev, app.verdict, app.rule, app.path)
		}
	}

	flows, err := enf.Flows()
	if err != nil {
		t.Fatal(err)
	}
	dest := netip.MustParseAddrPort(x.srv.TCP4)
	found := 0
	for _, f := range flows {
		if f.Dest != dest || f.Proto != enforce.TCP || f.UID != 0 {
			continue
		}
		switch f.App {
		case aID:
			found++
			if f.Attempts != n || f.Denied != n || f.Allowed != 0 || f.Verdict != enforce.Deny || f.RuleID != 50 {
				t.Errorf("A's flow counters: %+v, want %d attempts all denied by rule 50", f, n)
			}
		case bID:
			found++
			if f.Attempts != n || f.Allowed != n || f.Denied != 0 || f.Verdict != enforce.Allow {
				t.Errorf("B's flow counters: %+v, want %d attempts all allowed", f, n)
			}
		default:
			continue
		}
		if f.FirstSeen.Before(start.Add(-time.Second)) || f.LastSeen.Before(f.FirstSeen) || time.Since(f.LastSeen) > time.Minute {
			t.Errorf("flow times: first %v last %v (test started %v)", f.FirstSeen, f.LastSeen, start)
		}
	}
	if found != 2 {
		t.Errorf("found %d of A's and B's flows among %d", found, len(flows))
	}
}

func TestEventOverflowIsCountedNeverSilent(t *testing.T) {
	enf := openEnforcer(t, "overflow")
	dir := testrig.AppDir(t)
	c := testrig.CopyApp(t, testrig.Build(t).Client, dir, "app-flood")
	cID := ident(t, c)
	before, err := enf.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads while C floods: the 1 MiB ring buffer holds about 11,000 events.
	const attempts = 15000
	if r := testrig.RunApp(t, c, testrig.RunOpts{Timeout: 3 * time.Minute}, "bench", "15000"); !r.OK {
		t.Fatalf("flood: %s", r.Error)
	}
	after, err := enf.Stats()
	if err != nil {
		t.Fatal(err)
	}
	lost := after.EventsLost - before.EventsLost

	rd, err := enf.Events(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	delivered := 0
	for {
		rd.SetDeadline(time.Now().Add(500 * time.Millisecond))
		ev, err := rd.Read()
		if err != nil {
			break
		}
		if ev.App == cID {
			delivered++
		}
	}
	t.Logf("%d undecided attempts: %d events delivered, %d counted as lost", attempts, delivered, lost)
	if lost == 0 {
		t.Errorf("the ring buffer overflowed silently: %d of %d events delivered, none counted lost", delivered, attempts)
	}
	// Other processes' events share the buffer and the counter, so the sum may exceed the attempts, never fall short.
	if uint64(delivered)+lost < attempts {
		t.Errorf("%d delivered + %d lost < %d attempts: events vanished uncounted", delivered, lost, attempts)
	}
}
