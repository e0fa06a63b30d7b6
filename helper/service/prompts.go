package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/peer"
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

// ErrAgentChanged: the agent that answered no longer passes the check it passed when it registered.
var ErrAgentChanged = errors.New("the agent changed since it registered")

type agent struct {
	sender  string
	path    dbus.ObjectPath
	uid     uint32
	admin   bool // its user could obtain manage-rules: it answers for system processes
	pid     int
	started uint64 // the process's start time (clock ticks after boot), as checked at registration
	kind    peer.Kind
	exe     string
	seq     uint64          // registration order
	replace bool            // registered with --replace: asked before the others of its uid
	session dbus.ObjectPath // its logind session, "" when unknown
}

// agents are the registered agents, in registration order.
type agents struct {
	mu   sync.Mutex
	list []agent
	seq  uint64
}

func (a *agents) add(ag agent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, cur := range a.list {
		if cur.sender == ag.sender {
			// One agent per connection: a re-registration replaces the earlier one.
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
	a.seq++
	ag.seq = a.seq
	a.list = append(a.list, ag)
	return nil
}

// remove drops the agents of sender (at path, or any path when path is "") and returns them.
func (a *agents) remove(sender string, path dbus.ObjectPath) []agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.list[:0]
	var removed []agent
	for _, cur := range a.list {
		if cur.sender == sender && (path == "" || cur.path == path) {
			removed = append(removed, cur)
			continue
		}
		kept = append(kept, cur)
	}
	a.list = kept
	return removed
}

// ofUID returns uid's agents in registration order.
func (a *agents) ofUID(uid uint32) []agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []agent
	for _, cur := range a.list {
		if cur.uid == uid {
			out = append(out, cur)
		}
	}
	return out
}

// pick chooses which of one user's agents (in registration order) is asked:
//  1. the newest agent registered with --replace (the user took over deliberately, with authentication);
//  2. a GUI agent in an active session (active reports that, from logind; nil when logind is absent);
//  3. the first GUI agent registered;
//  4. the first terminal agent registered.
//
// Being first, not newest, is what keeps a later agent started behind the user's back from being asked.
func pick(list []agent, active func(dbus.ObjectPath) bool) (agent, bool) {
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].replace {
			return list[i], true
		}
	}
	if active != nil {
		for _, ag := range list {
			if ag.kind == peer.GUI && ag.session != "" && active(ag.session) {
				return ag, true
			}
		}
	}
	for _, kind := range []peer.Kind{peer.GUI, peer.Terminal} {
		for _, ag := range list {
			if ag.kind == kind {
				return ag, true
			}
		}
	}
	return agent{}, false
}

// forUID returns the agent asked about uid's processes, else root's (who may answer for users without one).
func (s *Service) forUID(uid uint32) (agent, bool) {
	for _, want := range []uint32{uid, 0} {
		if ag, ok := pick(s.agents.ofUID(want), s.sessionActive); ok {
			return ag, true
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
func (s *Service) forQuestion(q api.Question) (agent, bool) {
	if q.System {
		return s.agents.newestAdmin()
	}
	return s.forUID(q.UID)
}

// promptsIface implements io.github.tattlefw.Tattle1.Prompts.
type promptsIface struct{ s *Service }

func (i promptsIface) RegisterAgent(c *call, path dbus.ObjectPath) *dbus.Error {
	return i.register(c, path, false)
}

// RegisterAgentWithOptions is RegisterAgent with options: "replace" (b) makes this agent the one asked,
// ahead of the user's others (tattlectl agent --replace); it needs the user's own authentication.
func (i promptsIface) RegisterAgentWithOptions(c *call, path dbus.ObjectPath, opts map[string]dbus.Variant) *dbus.Error {
	replace := false
	for k, v := range opts {
		switch k {
		case api.AgentOptionReplace:
			b, ok := v.Value().(bool)
			if !ok {
				return invalid("agent option %q takes a boolean", k)
			}
			replace = b
		default:
			return invalid("unknown agent option %q", k)
		}
	}
	return i.register(c, path, replace)
}

// register records the agent of an admitted call (the access table checked the program and answer-prompts).
func (i promptsIface) register(c *call, path dbus.ObjectPath, replace bool) *dbus.Error {
	if !path.IsValid() {
		return invalid("agent path %q is not a valid object path", path)
	}
	if replace {
		if derr := c.require(api.ActionManageOwnRules, "take over answering questions from your other agents"); derr != nil {
			return derr
		}
	}
	proc := c.agent
	admin := i.s.isAdministrator(*c.caller)
	ag := agent{sender: c.sender, path: path, uid: c.uid, admin: admin, pid: proc.PID, started: proc.Started, kind: proc.Kind, exe: proc.Exe,
		replace: replace, session: i.s.sessionOf(proc.PID)}
	before, _ := i.s.forUID(c.uid)
	if err := i.s.agents.add(ag); err != nil {
		return failed("register the agent", err)
	}
	// An agent that left during the checks would never be seen leaving.
	var has bool
	if err := i.s.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, c.sender).Store(&has); err == nil && !has {
		i.s.agents.remove(c.sender, "")
		return nil
	}
	i.s.log.Info("agent registered", "uid", c.uid, "sender", c.sender, "path", path, "administrator", admin, "pid", proc.PID,
		"program", proc.Exe, "kind", proc.Kind, "replace", replace)
	i.s.announceAsked(c.uid, before)
	return nil
}

// trustedAgent admits only the installed agent programs, unaltered (helper/peer).
func (s *Service) trustedAgent(c caller) (peer.Process, *dbus.Error) {
	if s.trusted == nil {
		return peer.Process{}, dbus.NewError(api.ErrAccessDenied, []any{"this helper accepts no agents (no trusted agent programs are configured)"})
	}
	proc, err := s.trusted.Check(int(c.pid), c.pidfd, c.uid)
	if err != nil {
		s.log.Warn("agent refused", "uid", c.uid, "pid", c.pid, "sender", c.sender, "error", err)
		return peer.Process{}, dbus.NewError(api.ErrUntrustedAgent, []any{fmt.Sprintf("refused as an agent: %v", err)})
	}
	return proc, nil
}

// announceAsked tells uid's agents which of them is now asked, when that changed from before: the one that
// lost the questions shows who has them (a terminal agent that took over with --replace, say).
func (s *Service) announceAsked(uid uint32, before agent) {
	now, ok := s.forUID(uid)
	if !ok || now.sender == before.sender || now.uid != uid {
		return
	}
	for _, ag := range s.agents.ofUID(uid) {
		asked := ag.sender == now.sender
		s.conn.Object(ag.sender, ag.path).Go(api.AgentInterface+".AskedChanged", dbus.FlagNoReplyExpected, nil,
			asked, uint32(now.pid), now.exe, now.kind.String())
	}
}

// agentsLeft reacts to agents leaving: the next one asked is told.
func (s *Service) agentsLeft(gone []agent) {
	for _, ag := range gone {
		s.log.Info("agent left", "sender", ag.sender, "uid", ag.uid)
		s.announceAsked(ag.uid, ag)
	}
}

func (i promptsIface) UnregisterAgent(c *call, path dbus.ObjectPath) *dbus.Error {
	gone := i.s.agents.remove(c.sender, path)
	if len(gone) == 0 {
		return dbus.NewError(api.ErrNotFound, []any{fmt.Sprintf("no agent registered by this connection at %s", path)})
	}
	i.s.agentsLeft(gone)
	return nil
}

func (i promptsIface) Pending(c *call) ([]api.Question, *dbus.Error) {
	return i.s.daemon.Pending(c.uid, c.all), nil
}

// Ask asks the agent responsible for q (agents.forQuestion) and waits for its answer until ctx ends. Questions
// for one agent wait their turn in the helper's own queue (s.turns), so the bus's limit of pending calls is
// never reached; the question's timeout runs from when the agent is asked. When the time is up the agent is
// told to close its window (Cancel). An administrator's answer about a system process counts only after polkit
// authentication.
func (s *Service) Ask(ctx context.Context, q api.Question) (api.Answer, error) {
	ag, ok := s.forQuestion(q)
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
	if err := s.recheckAgent(ag); err != nil {
		s.log.Warn("answer refused: the agent no longer passes the agent check", "question", q.ID, "uid", ag.uid, "pid", ag.pid, "error", err)
		return api.Answer{}, fmt.Errorf("question %d: %w", q.ID, err)
	}
	if q.System {
		if err := s.authenticateSystemAnswer(ctx, ag, q); err != nil {
			return api.Answer{}, err
		}
	} else if s.store.Settings().Protected {
		if err := s.authenticateProtectedAnswer(ctx, ag, q); err != nil {
			return api.Answer{}, err
		}
	}
	return ans, nil
}

// recheckAgent checks the agent's process again before its answer counts: code loaded into it since it
// registered (a GTK module that XSETTINGS named later, a library it was led to dlopen) must not answer.
func (s *Service) recheckAgent(ag agent) error {
	if s.trusted == nil {
		return nil // no agent could have registered
	}
	proc, err := s.trusted.Check(ag.pid, -1, ag.uid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAgentChanged, err)
	}
	if proc.Started != ag.started {
		return fmt.Errorf("%w: process %d is another process now", ErrAgentChanged, ag.pid)
	}
	return nil
}

// authenticateProtectedAnswer: with the protected setting on, an answer counts only once its user has
// authenticated (manage-own-rules, the user's own password, asked through the agent's polkit agent).
// Root's answers need nothing.
func (s *Service) authenticateProtectedAnswer(ctx context.Context, ag agent, q api.Question) error {
	ok, err := s.answerAuthorized(ctx, ag, q, api.ActionManageOwnRules)
	if err != nil || ok {
		return err
	}
	s.log.Warn("answer refused: protected mode needs the user's password", "question", q.ID, "uid", ag.uid)
	return fmt.Errorf("question %d (uid %d, protected): %w", q.ID, ag.uid, ErrNotAuthenticated)
}

// Cancel tells the agent of q that q was settled without it.
func (s *Service) Cancel(q api.Question) {
	if ag, ok := s.forQuestion(q); ok {
		s.conn.Object(ag.sender, ag.path).Go(api.AgentInterface+".Cancel", dbus.FlagNoReplyExpected, nil, q.ID)
	}
}

// PendingChanged updates the Pending property.
func (s *Service) PendingChanged(n int) {
	s.props.SetMust(api.DaemonInterface, "Pending", uint32(n))
}

func (i daemonIface) Settings(*call) (api.Settings, *dbus.Error) {
	return i.s.store.Settings(), nil
}

func (i daemonIface) SetSettings(c *call, st api.Settings) *dbus.Error {
	if err := store.ValidateSettings(st); err != nil {
		return invalid("%v", err)
	}
	if err := i.s.store.SetSettings(st); errors.Is(err, store.ErrNotLearning) {
		return invalid("%v", err)
	} else if err != nil {
		return failed("save the settings", err)
	}
	i.s.props.SetMust(api.DaemonInterface, "Mode", st.Mode)
	if err := i.s.daemon.SettingsChanged(); err != nil {
		return failed("the settings were saved but the fail policy could not be applied to netfilter", err)
	}
	i.s.log.Info("settings changed", "settings", fmt.Sprintf("%+v", st), "uid", c.uid)
	return nil
}
