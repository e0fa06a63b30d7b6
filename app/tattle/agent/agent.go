// Package agent is the app's io.github.tattlefw.Tattle1.Agent object: tattled calls Ask for each undecided
// connection of this user's processes and the call waits, in its own D-Bus goroutine, until the user answers
// in the alert window, the helper Cancels the question, or the question's Deadline passes. The UI reads the
// queue of open questions (Queue) and answers them (Answer); it is told of every change through a callback.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// Path is where the app exports its agent.
const Path = dbus.ObjectPath("/io/github/tattlefw/Tattle/Agent")

// MaxQueued bounds the open questions one agent holds; further ones are refused (the helper then applies
// its default), so a flood of new connections cannot grow the app without bound. It stays under the system
// bus's limit of 128 calls awaiting a reply per connection (max_replies_per_connection in system.conf).
const MaxQueued = 100

// ErrNoAnswer is the D-Bus error an unanswered question ends with.
const ErrNoAnswer = api.BusName + ".Agent.Error.NoAnswer"

// Agent holds the open questions.
type Agent struct {
	ctx     context.Context
	log     *slog.Logger
	changed func() // called from any goroutine after the queue changed
	asked   func(Asked)
	// fromHelper reports whether a caller may ask, cancel and tell: any program on the system bus can call
	// the agent, and a forged Ask reusing a real question's ID (they are sequential) would replace it, a forged
	// Cancel would withdraw it, so its default would apply without the user (set by Export).
	fromHelper func(sender string) bool

	mu    sync.Mutex
	open  map[uint64]*question
	order []uint64 // arrival order of open questions
}

type question struct {
	q    api.Question
	done chan api.Answer // buffered 1: Answer never blocks
	gone chan struct{}   // closed by Cancel
}

// Asked is the helper's word on which of the user's agents it asks (AskedChanged).
type Asked struct {
	Here bool   // this agent
	PID  uint32 // the agent asked
	Exe  string
	Kind string // "gui" or "terminal"
}

// OnAsked sets what runs (on a D-Bus goroutine) when the helper says which agent it asks. Call before Export.
func (a *Agent) OnAsked(f func(Asked)) { a.asked = f }

// New makes an agent. Pending Ask calls end (with ErrNoAnswer) when ctx ends. changed runs after every
// change of the queue, on the goroutine that made it; the UI hops to its main loop from there.
func New(ctx context.Context, log *slog.Logger, changed func()) *Agent {
	return &Agent{ctx: ctx, log: log, changed: changed, open: map[uint64]*question{}}
}

// Export exports the agent on conn at Path with its introspection data.
func (a *Agent) Export(conn *dbus.Conn) error {
	if a.fromHelper == nil {
		a.fromHelper = func(sender string) bool { return rootConnection(conn, sender) }
	}
	if err := conn.Export(dbusAgent{a}, Path, api.AgentInterface); err != nil {
		return fmt.Errorf("export the agent at %s: %w", Path, err)
	}
	node := &introspect.Node{Name: string(Path), Interfaces: []introspect.Interface{
		introspect.IntrospectData,
		{Name: api.AgentInterface, Methods: introspect.Methods(dbusAgent{a})},
	}}
	if err := conn.Export(introspect.NewIntrospectable(node), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("export the agent's introspection data: %w", err)
	}
	return nil
}

// Queue returns the open questions, oldest first.
func (a *Agent) Queue() []api.Question {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.Question, 0, len(a.order))
	for _, id := range a.order {
		out = append(out, a.open[id].q)
	}
	return out
}

// Answer answers an open question; false when it is no longer open.
func (a *Agent) Answer(id uint64, ans api.Answer) bool {
	a.mu.Lock()
	q, ok := a.open[id]
	if ok {
		a.removeLocked(id)
	}
	a.mu.Unlock()
	if !ok {
		return false
	}
	q.done <- ans
	a.changed()
	return true
}

func (a *Agent) removeLocked(id uint64) {
	delete(a.open, id)
	for i, o := range a.order {
		if o == id {
			a.order = append(a.order[:i], a.order[i+1:]...)
			break
		}
	}
}

// ask waits for the user's answer to q.
func (a *Agent) ask(q api.Question) (api.Answer, *dbus.Error) {
	if msg := CheckQuestion(q); msg != "" {
		return api.Answer{}, dbus.NewError(api.ErrInvalidArgs, []any{msg})
	}
	p := &question{q: q, done: make(chan api.Answer, 1), gone: make(chan struct{})}
	a.mu.Lock()
	if old, dup := a.open[q.ID]; dup {
		// The helper asks again about the same question (it restarted, say): the newer call is the live one.
		close(old.gone)
		a.removeLocked(q.ID)
	}
	if len(a.open) >= MaxQueued {
		a.mu.Unlock()
		return api.Answer{}, dbus.NewError(ErrNoAnswer, []any{fmt.Sprintf("%d questions are already waiting for an answer", MaxQueued)})
	}
	a.open[q.ID] = p
	a.order = append(a.order, q.ID)
	a.mu.Unlock()
	a.changed()
	a.log.Info("question", "id", q.ID, "exe", q.Exe, "dest", q.Addr, "port", q.Port, "protocol", q.Protocol)

	wait := time.Until(time.UnixMilli(q.Deadline))
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case ans := <-p.done:
		return ans, nil
	case <-p.gone:
		return api.Answer{}, dbus.NewError(ErrNoAnswer, []any{"the question was withdrawn"})
	case <-timer.C:
	case <-a.ctx.Done():
	}
	a.mu.Lock()
	if a.open[q.ID] == p {
		a.removeLocked(q.ID)
	}
	a.mu.Unlock()
	a.changed()
	// An answer may have raced the timer: it still counts.
	select {
	case ans := <-p.done:
		return ans, nil
	default:
	}
	return api.Answer{}, dbus.NewError(ErrNoAnswer, []any{"nobody answered before the deadline; the default applies"})
}

func (a *Agent) cancel(id uint64) {
	a.mu.Lock()
	q, ok := a.open[id]
	if ok {
		a.removeLocked(id)
		close(q.gone)
	}
	a.mu.Unlock()
	if ok {
		a.changed()
	}
}

// CheckQuestion returns what is wrong with a question the UI could not show sensibly, or "".
func CheckQuestion(q api.Question) string {
	switch {
	case q.Exe == "":
		return "the question names no executable"
	case !validAddr(q.Addr):
		return fmt.Sprintf("the question's destination %q is not an IP address", q.Addr)
	case q.Protocol != rules.ProtocolTCP && q.Protocol != rules.ProtocolUDP:
		return fmt.Sprintf("unknown protocol %q", q.Protocol)
	case q.Default != api.DefaultAllow && q.Default != api.DefaultDeny:
		return fmt.Sprintf("unknown default %q", q.Default)
	}
	return ""
}

func validAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// rootConnection reports whether sender's connection is root's. tattled's is; a program of the user's
// cannot be, and a root process could replace tattled anyway.
func rootConnection(conn *dbus.Conn, sender string) bool {
	var uid uint32
	err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, sender).Store(&uid)
	return err == nil && uid == 0
}

// notHelper is the refusal of a call from anyone but the helper.
func notHelper(sender dbus.Sender) *dbus.Error {
	return dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("%s is not the Tattle service: only it asks this agent", sender)})
}

// dbusAgent is the exported method set (kept apart so that Agent's own methods are not exported). godbus
// fills in each call's sender and leaves it out of the signatures.
type dbusAgent struct{ a *Agent }

func (d dbusAgent) Ask(sender dbus.Sender, q api.Question) (api.Answer, *dbus.Error) {
	if !d.a.fromHelper(string(sender)) {
		d.a.log.Warn("refused a question from another program than the Tattle service", "sender", sender, "id", q.ID)
		return api.Answer{}, notHelper(sender)
	}
	return d.a.ask(q)
}

// AskedChanged: the helper now asks another of the user's agents (one that took over with --replace), or
// this one again.
func (d dbusAgent) AskedChanged(sender dbus.Sender, here bool, pid uint32, exe, kind string) *dbus.Error {
	if !d.a.fromHelper(string(sender)) {
		return notHelper(sender)
	}
	if d.a.asked != nil {
		d.a.asked(Asked{Here: here, PID: pid, Exe: exe, Kind: kind})
	}
	return nil
}

func (d dbusAgent) Cancel(sender dbus.Sender, id uint64) *dbus.Error {
	if !d.a.fromHelper(string(sender)) {
		d.a.log.Warn("refused a cancel from another program than the Tattle service", "sender", sender, "id", id)
		return notHelper(sender)
	}
	d.a.cancel(id)
	return nil
}
