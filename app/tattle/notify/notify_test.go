package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

type fakeServer struct {
	next     uint32
	notified []uint32 // the replaces argument of each Notify
	closed   []uint32
	fail     error
}

func (f *fakeServer) Notify(_ context.Context, replaces uint32, _ Message) (uint32, error) {
	if f.fail != nil {
		return 0, f.fail
	}
	f.notified = append(f.notified, replaces)
	if replaces != 0 {
		return replaces, nil
	}
	f.next++
	return f.next, nil
}

func (f *fakeServer) Close(_ context.Context, id uint32) error {
	f.closed = append(f.closed, id)
	return nil
}

// An action, whatever key a sender claims, only presents the alert; events about other notifications do nothing.
func TestActionsOnlyPresent(t *testing.T) {
	srv := &fakeServer{next: 41}
	presented := 0
	n := New(srv, func() { presented++ })
	ctx := context.Background()
	if err := n.Show(ctx, Message{Summary: "q"}); err != nil {
		t.Fatal(err)
	}
	id := n.Shown()
	if id != 42 {
		t.Fatalf("shown %d, want 42", id)
	}
	n.Handle(Event{ID: id + 1, Action: ActionShow}) // another application's notification
	if presented != 0 {
		t.Fatalf("an action on another notification presented the alert")
	}
	for _, key := range []string{ActionShow, "default", "allow", "deny"} {
		n.Handle(Event{ID: id, Action: key})
	}
	if presented != 4 {
		t.Fatalf("presented %d times, want 4", presented)
	}
	// A second question replaces the notification rather than stacking another.
	if err := n.Show(ctx, Message{Summary: "q2"}); err != nil {
		t.Fatal(err)
	}
	if len(srv.notified) != 2 || srv.notified[1] != id {
		t.Fatalf("Notify replaces arguments %v, want [0 %d]", srv.notified, id)
	}
	if err := n.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if len(srv.closed) != 1 || srv.closed[0] != id || n.Shown() != 0 {
		t.Fatalf("closed %v, shown %d", srv.closed, n.Shown())
	}
	n.Handle(Event{ID: id, Action: ActionShow}) // late signal for the withdrawn notification
	if presented != 4 {
		t.Fatalf("a withdrawn notification's action presented the alert")
	}
	if err := n.Withdraw(ctx); err != nil || len(srv.closed) != 1 {
		t.Fatalf("second Withdraw: %v, closed %v", err, srv.closed)
	}
}

func TestClosedByServerForgets(t *testing.T) {
	srv := &fakeServer{}
	n := New(srv, func() { t.Fatal("presented on close") })
	ctx := context.Background()
	if err := n.Show(ctx, Message{}); err != nil {
		t.Fatal(err)
	}
	n.Handle(Event{ID: n.Shown(), Closed: true})
	if n.Shown() != 0 {
		t.Fatal("still shown after NotificationClosed")
	}
	if err := n.Withdraw(ctx); err != nil || len(srv.closed) != 0 {
		t.Fatalf("Withdraw after server close: %v, closed %v", err, srv.closed)
	}
}

func TestShowError(t *testing.T) {
	sentinel := errors.New("boom")
	n := New(&fakeServer{fail: sentinel}, func() {})
	if err := n.Show(context.Background(), Message{}); !errors.Is(err, sentinel) {
		t.Fatalf("err %v", err)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	srv := &fakeServer{}
	got := make(chan struct{}, 1)
	n := New(srv, func() { got <- struct{}{} })
	if err := n.Show(context.Background(), Message{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan Event)
	done := make(chan struct{})
	go func() { n.Run(ctx, events); close(done) }()
	events <- Event{ID: n.Shown(), Action: ActionShow}
	<-got
	cancel()
	<-done
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		sig  dbus.Signal
		want Event
		ok   bool
	}{
		{dbus.Signal{Path: objectPath, Name: iface + ".ActionInvoked", Body: []any{uint32(3), "show"}}, Event{ID: 3, Action: "show"}, true},
		{dbus.Signal{Path: objectPath, Name: iface + ".NotificationClosed", Body: []any{uint32(3), uint32(2)}}, Event{ID: 3, Closed: true}, true},
		{dbus.Signal{Path: "/other", Name: iface + ".ActionInvoked", Body: []any{uint32(3), "show"}}, Event{}, false},
		{dbus.Signal{Path: objectPath, Name: iface + ".ActionInvoked", Body: []any{"3", "show"}}, Event{}, false},
		{dbus.Signal{Path: objectPath, Name: iface + ".ActionInvoked", Body: []any{uint32(3)}}, Event{}, false},
	} {
		got, ok := parse(&tc.sig)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parse(%v) = %v, %v; want %v, %v", tc.sig, got, ok, tc.want, tc.ok)
		}
	}
}

// syncServer is a fakeServer safe for Async's goroutine, reporting each call.
type syncServer struct {
	mu    sync.Mutex
	f     fakeServer
	calls chan string
}

func (s *syncServer) Notify(ctx context.Context, replaces uint32, msg Message) (uint32, error) {
	s.mu.Lock()
	id, err := s.f.Notify(ctx, replaces, msg)
	s.mu.Unlock()
	s.calls <- "notify " + msg.Summary
	return id, err
}

func (s *syncServer) Close(ctx context.Context, id uint32) error {
	s.mu.Lock()
	err := s.f.Close(ctx, id)
	s.mu.Unlock()
	s.calls <- "close"
	return err
}

// Async acts on wishes in order, replaces rather than stacks, and withdraws when it stops.
func TestAsyncInOrder(t *testing.T) {
	srv := &syncServer{calls: make(chan string, 16)}
	n := New(srv, func() {})
	a := NewAsync(n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	next := func() string {
		t.Helper()
		select {
		case c := <-srv.calls:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no call to the server")
			return ""
		}
	}
	a.Show(Message{Summary: "one"})
	if c := next(); c != "notify one" {
		t.Fatalf("first call %q", c)
	}
	a.Show(Message{Summary: "two"})
	if c := next(); c != "notify two" {
		t.Fatalf("second call %q", c)
	}
	a.Withdraw()
	if c := next(); c != "close" {
		t.Fatalf("third call %q", c)
	}
	a.Show(Message{Summary: "three"})
	if c := next(); c != "notify three" {
		t.Fatalf("fourth call %q", c)
	}
	cancel()
	<-done
	if c := next(); c != "close" {
		t.Fatalf("Run did not withdraw as it stopped: %q", c)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if fmt.Sprint(srv.f.notified) != "[0 1 0]" {
		t.Fatalf("Notify's replaces arguments %v, want [0 1 0]", srv.f.notified)
	}
}
