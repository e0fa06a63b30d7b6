package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/tray/traytest"
	"github.com/tattlefw/tattle/shared/api"
)

// setup exports an agent on a real private bus and returns it with a second connection playing tattled.
func setup(t *testing.T) (*Agent, dbus.BusObject, chan struct{}) {
	t.Helper()
	addr := traytest.SessionBus(t)
	appConn := traytest.Connect(t, addr)
	helperConn := traytest.Connect(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changed := make(chan struct{}, 64)
	a := New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err := a.Export(appConn); err != nil {
		t.Fatal(err)
	}
	return a, helperConn.Object(appConn.Names()[0], Path), changed
}

func q(id uint64, deadline time.Duration) api.Question {
	now := time.Now()
	return api.Question{ID: id, Exe: "/usr/bin/curl", Addr: "192.0.2.1", Port: 443, Protocol: "tcp", Default: api.DefaultDeny,
		Created: now.UnixMilli(), Deadline: now.Add(deadline).UnixMilli()}
}

func ask(obj dbus.BusObject, question api.Question) *dbus.Call {
	return obj.Go(api.AgentInterface+".Ask", 0, make(chan *dbus.Call, 1), question)
}

func waitQueue(t *testing.T, a *Agent, n int) []api.Question {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if qs := a.Queue(); len(qs) == n {
			return qs
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("queue never held %d questions: %v", n, a.Queue())
	return nil
}

func TestAskWaitsForTheAnswer(t *testing.T) {
	a, helper, changed := setup(t)
	c1 := ask(helper, q(1, time.Minute))
	waitQueue(t, a, 1)
	c2 := ask(helper, q(2, time.Minute))
	qs := waitQueue(t, a, 2)
	if qs[0].ID != 1 || qs[1].ID != 2 {
		t.Fatalf("queue order %d, %d; want oldest first", qs[0].ID, qs[1].ID)
	}
	select {
	case <-c1.Done:
		t.Fatal("Ask returned before anyone answered")
	case <-time.After(100 * time.Millisecond):
	}
	want := api.Answer{Action: "allow", Scope: api.ScopeDomain, Duration: "forever"}
	if !a.Answer(1, want) {
		t.Fatal("Answer(1) found no open question")
	}
	if a.Answer(1, want) {
		t.Fatal("a question was answered twice")
	}
	var got api.Answer
	if err := (<-c1.Done).Store(&got); err != nil || got != want {
		t.Fatalf("Ask returned %+v, %v; want %+v", got, err, want)
	}
	// The other question is still open; the helper withdraws it.
	if err := helper.Call(api.AgentInterface+".Cancel", 0, uint64(2)).Err; err != nil {
		t.Fatal(err)
	}
	call := <-c2.Done
	var derr dbus.Error
	if e, ok := call.Err.(dbus.Error); ok {
		derr = e
	}
	if derr.Name != ErrNoAnswer {
		t.Fatalf("a cancelled Ask ended with %v, want %s", call.Err, ErrNoAnswer)
	}
	if len(a.Queue()) != 0 {
		t.Fatalf("queue not empty: %v", a.Queue())
	}
	if len(changed) == 0 {
		t.Fatal("the UI was never told of changes")
	}
}

func TestDeadlineEndsTheQuestion(t *testing.T) {
	a, helper, _ := setup(t)
	start := time.Now()
	call := <-ask(helper, q(7, 300*time.Millisecond)).Done
	if call.Err == nil || !strings.Contains(call.Err.Error(), "deadline") {
		t.Fatalf("Ask past its deadline returned %v", call.Err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 3*time.Second {
		t.Fatalf("Ask ended after %v, want about 300ms", el)
	}
	if len(a.Queue()) != 0 || a.Answer(7, api.Answer{}) {
		t.Fatal("an expired question is still open")
	}
}

func TestBadQuestionsAreRefused(t *testing.T) {
	a, helper, _ := setup(t)
	for _, bad := range []api.Question{
		func() api.Question { x := q(1, time.Minute); x.Exe = ""; return x }(),
		func() api.Question { x := q(2, time.Minute); x.Addr = "example.com"; return x }(),
		func() api.Question { x := q(3, time.Minute); x.Protocol = "sctp"; return x }(),
		func() api.Question { x := q(4, time.Minute); x.Default = "maybe"; return x }(),
	} {
		call := <-ask(helper, bad).Done
		if e, ok := call.Err.(dbus.Error); !ok || e.Name != api.ErrInvalidArgs {
			t.Errorf("question %d: %v, want %s", bad.ID, call.Err, api.ErrInvalidArgs)
		}
	}
	if len(a.Queue()) != 0 {
		t.Fatalf("refused questions were queued: %v", a.Queue())
	}
}

func TestQueueIsBounded(t *testing.T) {
	a, helper, _ := setup(t)
	calls := make([]*dbus.Call, 0, MaxQueued)
	for i := 0; i < MaxQueued; i++ {
		calls = append(calls, ask(helper, q(uint64(i+1), time.Minute)))
	}
	waitQueue(t, a, MaxQueued)
	call := <-ask(helper, q(MaxQueued+1, time.Minute)).Done
	if e, ok := call.Err.(dbus.Error); !ok || e.Name != ErrNoAnswer {
		t.Fatalf("question beyond the bound: %v", call.Err)
	}
	for i := range calls {
		a.Answer(uint64(i+1), api.Answer{Action: "deny", Scope: api.ScopeHost, Duration: "once"})
	}
	for _, c := range calls {
		if err := (<-c.Done).Err; err != nil {
			t.Fatal(err)
		}
	}
}

// Only the helper may ask, cancel and tell: another program's Ask reusing an open question's ID, and its
// Cancel of that ID, are refused, and the question stays open with its own details.
func TestOnlyTheHelperIsHeard(t *testing.T) {
	addr := traytest.SessionBus(t)
	appConn := traytest.Connect(t, addr)
	helperConn := traytest.Connect(t, addr)
	forger := traytest.Connect(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	// Everyone is root on this test bus: which connection is the helper's is given here, as the UID is there.
	a.fromHelper = func(sender string) bool { return sender == helperConn.Names()[0] }
	if err := a.Export(appConn); err != nil {
		t.Fatal(err)
	}
	helper := helperConn.Object(appConn.Names()[0], Path)
	forged := forger.Object(appConn.Names()[0], Path)
	real := ask(helper, q(7, time.Minute))
	waitQueue(t, a, 1)

	fake := q(7, time.Minute)
	fake.Exe = "/usr/bin/firefox"
	call := <-ask(forged, fake).Done
	if e, ok := call.Err.(dbus.Error); !ok || e.Name != api.ErrAccessDenied {
		t.Errorf("another program's Ask: %v, want %s", call.Err, api.ErrAccessDenied)
	}
	if err := forged.Call(api.AgentInterface+".Cancel", 0, uint64(7)).Err; err == nil {
		t.Error("another program's Cancel was accepted")
	}
	if err := forged.Call(api.AgentInterface+".AskedChanged", 0, false, uint32(1), "/usr/bin/evil", "terminal").Err; err == nil {
		t.Error("another program's AskedChanged was accepted")
	}
	if qs := waitQueue(t, a, 1); qs[0].Exe != "/usr/bin/curl" {
		t.Fatalf("the open question now names %s: the forged Ask replaced it", qs[0].Exe)
	}
	select {
	case <-real.Done:
		t.Fatal("the helper's Ask ended without an answer")
	default:
	}
	if !a.Answer(7, api.Answer{Action: "deny", Scope: api.ScopeHost, Duration: "once"}) {
		t.Fatal("the helper's question is gone")
	}
	<-real.Done
}
