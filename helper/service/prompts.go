package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
)

// maxAgents bounds registered agents (each connection may register one), maxAgentsPerUID one user's.
const (
	maxAgents       = 256
	maxAgentsPerUID = 8
)

// ErrNoAgent is returned by Ask when nobody can answer for the question's user.
var ErrNoAgent = errors.New("no agent is registered for this user")

type agent struct {
	sender string
	path   dbus.ObjectPath
	uid    uint32
	admin  bool // its user could obtain manage-rules: it answers for system processes
}

// agents are the registered agents, most recent last.
type agents struct {
	mu   sync.Mutex
	list []agent
}

func (a *agents) add(ag agent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, cur := range a.list {
		if cur.sender == ag.sender {
			// One agent per connection: a re-registration replaces the path and makes it the newest.
			a.list = append(a.list[:i:i], a.list[i+1:]...)
			break
		}
	}
	if len(a.list) >= maxAgents {
		return fmt.Errorf("%d agents are registered; no more are taken", maxAgents)
	}
	mine := 0
	for _, cur := range a.list {
		if cur.uid == ag.uid {
			mine++
		}
	}
	if mine >= maxAgentsPerUID && ag.uid != 0 {
		return fmt.Errorf("you have %d agents registered already; close one first", mine)
	}
	a.list = append(a.list, ag)
	return nil
}

// remove drops the agents of sender (at path, or any path when path is "").
func (a *agents) remove(sender string, path dbus.ObjectPath) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.list[:0]
	removed := false
	for _, cur := range a.list {
		if cur.sender == sender && (path == "" || cur.path == path) {
			removed = true
			continue
		}
		kept = append(kept, cur)
	}
	a.list = kept
	return removed
}

// forUID returns the newest agent of uid, else the newest of root (who may answer for users without one).
func (a *agents) forUID(uid uint32) (agent, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, want := range []uint32{uid, 0} {
		for i := len(a.list) - 1; i >= 0; i-- {
			if a.list[i].uid == want {
				return a.list[i], true
			}
		}
	}
	return agent{}, false
}

// newestAdmin returns the newest administrator's agent: it answers questions about system processes.
func (a *agents) newestAdmin() (agent, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.list) - 1; i >= 0; i-- {
		if a.list[i].admin {
			return a.list[i], true
		}
	}
	return agent{}, false
}

// forQuestion picks the agent a question goes to: an administrator's for a system process, else the one of
// the process's user (or root's, see forUID).
func (a *agents) forQuestion(q api.Question) (agent, bool) {
	if q.System {
		return a.newestAdmin()
	}
	return a.forUID(q.UID)
}

// promptsIface implements io.github.tattlefw.Tattle1.Prompts.
type promptsIface struct{ s *Service }

func (i promptsIface) RegisterAgent(msg dbus.Message, sender dbus.Sender, path dbus.ObjectPath) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	if !path.IsValid() {
		return invalid("agent path %q is not a valid object path", path)
	}
	if derr := i.s.require(c, api.ActionAnswerPrompts, "answer questions about your processes' connections"); derr != nil {
		return derr
	}
	admin := i.s.isAdministrator(c)
	if err := i.s.agents.add(agent{sender: c.sender, path: path, uid: c.uid, admin: admin}); err != nil {
		return failed("register the agent", err)
	}
	// An agent that left during the polkit check would never be seen leaving.
	var has bool
	if err := i.s.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, c.sender).Store(&has); err == nil && !has {
		i.s.agents.remove(c.sender, "")
		return nil
	}
	i.s.log.Info("agent registered", "uid", c.uid, "sender", c.sender, "path", path, "administrator", admin)
	return nil
}

func (i promptsIface) UnregisterAgent(sender dbus.Sender, path dbus.ObjectPath) *dbus.Error {
	if !i.s.agents.remove(string(sender), path) {
		return dbus.NewError(api.ErrNotFound, []any{fmt.Sprintf("no agent registered by this connection at %s", path)})
	}
	i.s.log.Info("agent unregistered", "sender", sender, "path", path)
	return nil
}

func (i promptsIface) Pending(msg dbus.Message, sender dbus.Sender) ([]api.Question, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return nil, derr
	}
	defer release()
	all := i.s.mayManage(c)
	return i.s.daemon.Pending(c.uid, all), nil
}

// Ask asks the agent responsible for q (agents.forQuestion) and waits for its answer until ctx ends. Questions
// for one agent wait their turn in the helper's own queue (s.turns), so the bus's limit of pending calls is
// never reached; the question's timeout runs from when the agent is asked. When the time is up the agent is
// told to close its window (Cancel). An administrator's answer about a system process counts only after polkit
// authentication.
func (s *Service) Ask(ctx context.Context, q api.Question) (api.Answer, error) {
	ag, ok := s.agents.forQuestion(q)
	if !ok {
		return api.Answer{}, noAgentError(q)
	}
	turn, err := s.turns.Wait(ctx, ag.sender)
	if err != nil {
		return api.Answer{}, fmt.Errorf("waiting for the agent of uid %d: %w", ag.uid, err)
	}
	defer turn.Done()
	timeout := time.Duration(q.Deadline-q.Created) * time.Millisecond
	now := time.Now()
	q.Deadline = now.Add(timeout).UnixMilli()
	q.Waiting = uint32(s.turns.Waiting(ag.sender))
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ans api.Answer
	call := s.conn.Object(ag.sender, ag.path).CallWithContext(callCtx, api.AgentInterface+".Ask", 0, q)
	err = call.Store(&ans)
	if err != nil && callCtx.Err() != nil {
		// Fire and forget: the agent may be gone or slow, and nothing waits on this.
		s.conn.Object(ag.sender, ag.path).Go(api.AgentInterface+".Cancel", dbus.FlagNoReplyExpected, nil, q.ID)
		return api.Answer{}, fmt.Errorf("agent of uid %d did not answer in time: %w", ag.uid, callCtx.Err())
	}
	if err != nil {
		return api.Answer{}, fmt.Errorf("agent of uid %d: %w", ag.uid, err)
	}
	if q.System {
		if err := s.authenticateSystemAnswer(ctx, ag, q); err != nil {
			return api.Answer{}, err
		}
	}
	return ans, nil
}

// Cancel tells the agent of q that q was settled without it.
func (s *Service) Cancel(q api.Question) {
	if ag, ok := s.agents.forQuestion(q); ok {
		s.conn.Object(ag.sender, ag.path).Go(api.AgentInterface+".Cancel", dbus.FlagNoReplyExpected, nil, q.ID)
	}
}

// PendingChanged updates the Pending property.
func (s *Service) PendingChanged(n int) {
	s.props.SetMust(api.DaemonInterface, "Pending", uint32(n))
}

func (i daemonIface) Settings() (api.Settings, *dbus.Error) {
	return i.s.store.Settings(), nil
}

func (i daemonIface) SetSettings(msg dbus.Message, sender dbus.Sender, st api.Settings) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	if err := store.ValidateSettings(st); err != nil {
		return invalid("%v", err)
	}
	if derr := i.s.require(c, api.ActionManageRules, "change the settings"); derr != nil {
		return derr
	}
	if err := i.s.store.SetSettings(st); err != nil {
		return failed("save the settings", err)
	}
	i.s.props.SetMust(api.DaemonInterface, "Mode", st.Mode)
	if err := i.s.daemon.SettingsChanged(); err != nil {
		return failed("the settings were saved but the fail policy could not be applied to netfilter", err)
	}
	i.s.log.Info("settings changed", "settings", fmt.Sprintf("%+v", st), "uid", c.uid)
	return nil
}
