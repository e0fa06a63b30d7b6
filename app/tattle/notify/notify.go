// Package notify is the alert's fallback when a compositor refuses to raise it (issue 17): a critical
// notification through org.freedesktop.Notifications that can only bring the alert up.
//
// Any program running as the user can own org.freedesktop.Notifications on the session bus, or emit an
// ActionInvoked signal that looks like the server's. So nothing arriving from the notification ever answers the
// question: its one action ("show", also the default action) calls present, which raises and focuses the real
// alert window, where only the user's real input answers (see app/tattle/userinput and the alert's arm delay).
// A forged signal can at most bring the alert to the front, which the alert does by itself anyway.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of the Desktop Notifications Specification.
const (
	busName    = "org.freedesktop.Notifications"
	objectPath = dbus.ObjectPath("/org/freedesktop/Notifications")
	iface      = "org.freedesktop.Notifications"
)

// ActionShow is the key of the notification's only action; it is also announced as the "default" action (a
// click on the notification's body). Both only present the alert.
const ActionShow = "show"

// urgencyCritical is the spec's "urgency" hint for critical notifications: servers keep them until dismissed.
const urgencyCritical = byte(2)

// ErrNoServer is returned when no notification server answers on the session bus.
var ErrNoServer = errors.New("no notification server")

// Message is what one notification says.
type Message struct {
	AppName   string // "Tattle"
	AppIcon   string // an icon name or file URI
	Desktop   string // the desktop entry's ID without ".desktop" (the "desktop-entry" hint)
	Summary   string
	Body      string // e.g. "firefox wants to connect to example.org:443"
	ShowLabel string // the label of the action that brings up the alert, translated by the caller
}

// Event is a signal from the server about a notification.
type Event struct {
	ID     uint32
	Action string // ActionInvoked: the action's key; empty for NotificationClosed
	Closed bool   // NotificationClosed
}

// Server is the seam to the notification server: the real one is DBusServer.
type Server interface {
	// Notify shows msg, replacing notification replaces when it is not 0, and returns its ID.
	Notify(ctx context.Context, replaces uint32, msg Message) (uint32, error)
	// Close withdraws a notification.
	Close(ctx context.Context, id uint32) error
}

// Notifier keeps at most one notification: the one for the question the alert shows. Its methods may be called
// from any goroutine; present is called from the goroutine that runs Run.
type Notifier struct {
	srv     Server
	present func()

	mu sync.Mutex
	id uint32 // the notification shown, 0 for none
}

// New makes a Notifier. present brings up the alert window (on the GTK main loop: the caller arranges that,
// e.g. with glib.IdleAdd); it must never answer the question.
func New(srv Server, present func()) *Notifier {
	return &Notifier{srv: srv, present: present}
}

// Show shows msg, replacing the notification already shown, if any.
func (n *Notifier) Show(ctx context.Context, msg Message) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	id, err := n.srv.Notify(ctx, n.id, msg)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	n.id = id
	return nil
}

// Withdraw closes the notification shown, if any: the question was answered, expired or the alert came up.
func (n *Notifier) Withdraw(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id == 0 {
		return nil
	}
	id := n.id
	n.id = 0
	if err := n.srv.Close(ctx, id); err != nil {
		return fmt.Errorf("close notification %d: %w", id, err)
	}
	return nil
}

// Shown is the ID of the notification shown, 0 for none.
func (n *Notifier) Shown() uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// Handle acts on one event. An action on the current notification presents the alert, whatever its key: a
// forged "allow" is treated as a request to look, never as an answer. Events about other notifications (other
// applications', or ours already withdrawn) are ignored.
func (n *Notifier) Handle(ev Event) {
	n.mu.Lock()
	mine := n.id != 0 && ev.ID == n.id
	if mine && ev.Closed {
		n.id = 0
	}
	n.mu.Unlock()
	if !mine || ev.Closed {
		return
	}
	if ev.Action != ActionShow && ev.Action != "default" {
		slog.Warn("notification action with a key Tattle never offered; only bringing up the alert", "action", ev.Action)
	}
	n.present()
}

// Run handles events until ctx ends or events is closed.
func (n *Notifier) Run(ctx context.Context, events <-chan Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			n.Handle(ev)
		}
	}
}

// DBusServer is the notification server on a session bus connection.
type DBusServer struct {
	conn *dbus.Conn
}

// NewDBusServer uses conn (a session bus connection).
func NewDBusServer(conn *dbus.Conn) *DBusServer {
	return &DBusServer{conn: conn}
}

func (s *DBusServer) obj() dbus.BusObject { return s.conn.Object(busName, objectPath) }

// Notify calls org.freedesktop.Notifications.Notify with critical urgency, resident, never expiring.
func (s *DBusServer) Notify(ctx context.Context, replaces uint32, msg Message) (uint32, error) {
	hints := map[string]dbus.Variant{
		"urgency":  dbus.MakeVariant(urgencyCritical),
		"resident": dbus.MakeVariant(true), // stay after an action is invoked: the question is still open
		"category": dbus.MakeVariant("network"),
	}
	if msg.Desktop != "" {
		hints["desktop-entry"] = dbus.MakeVariant(msg.Desktop)
	}
	actions := []string{"default", msg.ShowLabel, ActionShow, msg.ShowLabel}
	var id uint32
	call := s.obj().CallWithContext(ctx, iface+".Notify", 0,
		msg.AppName, replaces, msg.AppIcon, msg.Summary, msg.Body, actions, hints, int32(0))
	if call.Err != nil {
		var de dbus.Error
		if errors.As(call.Err, &de) && (de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
			return 0, fmt.Errorf("%w: %w", ErrNoServer, call.Err)
		}
		return 0, fmt.Errorf("Notify: %w", call.Err)
	}
	if err := call.Store(&id); err != nil {
		return 0, fmt.Errorf("Notify reply: %w", err)
	}
	return id, nil
}

// Close calls org.freedesktop.Notifications.CloseNotification.
func (s *DBusServer) Close(ctx context.Context, id uint32) error {
	if err := s.obj().CallWithContext(ctx, iface+".CloseNotification", 0, id).Err; err != nil {
		return fmt.Errorf("CloseNotification: %w", err)
	}
	return nil
}

// Events subscribes to the server's ActionInvoked and NotificationClosed signals and delivers them until ctx
// ends; then it unsubscribes and closes the returned channel. The sender is not checked: whoever sends, an
// event can only present the alert (see Notifier.Handle).
func (s *DBusServer) Events(ctx context.Context) (<-chan Event, error) {
	opts := []dbus.MatchOption{dbus.WithMatchInterface(iface), dbus.WithMatchObjectPath(objectPath)}
	if err := s.conn.AddMatchSignalContext(ctx, opts...); err != nil {
		return nil, fmt.Errorf("subscribe to notification signals: %w", err)
	}
	raw := make(chan *dbus.Signal, 16)
	s.conn.Signal(raw)
	out := make(chan Event)
	go func() {
		defer close(out)
		defer s.conn.RemoveSignal(raw)
		defer func() { _ = s.conn.RemoveMatchSignal(opts...) }()
		for {
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-raw:
				if !ok {
					return
				}
				ev, ok := parse(sig)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// parse turns a signal into an Event; ok is false for other signals and malformed ones.
func parse(sig *dbus.Signal) (Event, bool) {
	if sig.Path != objectPath || len(sig.Body) < 2 {
		return Event{}, false
	}
	id, ok := sig.Body[0].(uint32)
	if !ok {
		return Event{}, false
	}
	switch sig.Name {
	case iface + ".ActionInvoked":
		key, ok := sig.Body[1].(string)
		if !ok {
			return Event{}, false
		}
		return Event{ID: id, Action: key}, true
	case iface + ".NotificationClosed":
		return Event{ID: id, Closed: true}, true
	}
	return Event{}, false
}

// Async keeps the notification in step with what the alert wants shown, from a goroutine of its own (Run), so
// that the GTK main loop never waits for the bus. Show and Withdraw only record the wish; Run acts on the
// latest one, in order, so a withdrawal never overtakes the notification it withdraws.
type Async struct {
	n    *Notifier
	kick chan struct{}

	mu   sync.Mutex
	want *Message // nil: no notification
}

// NewAsync drives n. Start Run before the first Show.
func NewAsync(n *Notifier) *Async {
	return &Async{n: n, kick: make(chan struct{}, 1)}
}

// Show asks for msg to be shown, replacing the notification shown, if any. It never blocks.
func (a *Async) Show(msg Message) {
	a.set(&msg)
}

// Withdraw asks for the notification to be closed. It never blocks.
func (a *Async) Withdraw() {
	a.set(nil)
}

func (a *Async) set(msg *Message) {
	a.mu.Lock()
	a.want = msg
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default: // Run has a wake-up pending already; it reads the latest wish
	}
}

// Run acts on the wishes until ctx ends, then withdraws the notification (within a second), so that none
// outlives the app.
func (a *Async) Run(ctx context.Context) {
	defer func() {
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := a.n.Withdraw(wctx); err != nil {
			slog.Warn("cannot withdraw the alert's notification", "error", err)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		a.mu.Lock()
		want := a.want
		a.mu.Unlock()
		if want != nil {
			if err := a.n.Show(ctx, *want); err != nil {
				slog.Warn("cannot show a notification for the alert", "error", err)
			}
			continue
		}
		if err := a.n.Withdraw(ctx); err != nil {
			slog.Warn("cannot withdraw the alert's notification", "error", err)
		}
	}
}
