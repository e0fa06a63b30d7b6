// Package service is tattled's D-Bus face (shared/api): rules, monitor and daemon interfaces on the system bus,
// every state change authorized by polkit for the calling process.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/askqueue"
	"github.com/tattlefw/tattle/helper/daemon"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/peer"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// callTimeout bounds how long one call may wait, polkit's answer included (an interactive authentication
// takes as long as the person needs, within this).
const callTimeout = 5 * time.Minute

// Service serves the API for one helper.
type Service struct {
	conn    *dbus.Conn
	store   *store.Store
	daemon  *daemon.Daemon
	enf     *enforce.Enforcer
	auth    Authorizer
	version string
	log     *slog.Logger
	props   *prop.Properties
	monitor *monitor
	agents  agents
	turns   *askqueue.Queue // questions waiting for their agent
	trusted *peer.Trusted

	callsMu sync.Mutex
	calls   map[uint32]int // calls in progress per uid

	access map[method]access // who may call what: accessTable
	seams
}

// seams are what the unit tests replace; the zero value is production.
type seams struct {
	// table replaces accessTable when not nil.
	table map[method]access
	// credsOf replaces asking the bus for a caller's credentials (GetConnectionCredentials).
	credsOf func(sender string) (map[string]dbus.Variant, error)
	// entered is called as a method's body is about to run, with the admitted call.
	entered func(method, *call)
}

// Options wire a Service.
type Options struct {
	Conn       *dbus.Conn
	Store      *store.Store
	Daemon     *daemon.Daemon
	Enforcer   *enforce.Enforcer
	Authorizer Authorizer // Polkit{Conn} when nil
	// TrustedAgents are the programs that may register as agents; nil refuses every agent.
	TrustedAgents *peer.Trusted
	Version       string
	Logger        *slog.Logger
}

// New exports the interfaces on conn. Call Serve to take the bus name.
func New(o Options) (*Service, error) { return newService(o, seams{}) }

func newService(o Options, x seams) (*Service, error) {
	if o.Authorizer == nil {
		o.Authorizer = Polkit{Conn: o.Conn}
	}
	s := &Service{conn: o.Conn, store: o.Store, daemon: o.Daemon, enf: o.Enforcer, auth: o.Authorizer,
		version: o.Version, log: o.Logger, monitor: newMonitor(), calls: map[uint32]int{},
		turns: askqueue.New(askqueue.DefaultPerAgent, askqueue.DefaultTotal), trusted: o.TrustedAgents,
		access: x.table, seams: x}
	if s.access == nil {
		s.access = accessTable()
	}
	props, err := prop.Export(o.Conn, api.ObjectPath, prop.Map{api.DaemonInterface: {
		"Version": {Value: o.Version, Emit: prop.EmitConst},
		"Backend": {Value: string(o.Enforcer.Backend()), Emit: prop.EmitConst},
		"Mode":    {Value: o.Store.Settings().Mode, Emit: prop.EmitTrue},
		"Pending": {Value: uint32(0), Emit: prop.EmitTrue},
	}})
	if err != nil {
		return nil, fmt.Errorf("export properties: %w", err)
	}
	s.props = props
	ifaces := interfaceObjects(s)
	node := &introspect.Node{Name: string(api.ObjectPath), Interfaces: []introspect.Interface{introspect.IntrospectData, prop.IntrospectData}}
	served := map[method]bool{}
	for _, i := range ifaces {
		in, err := s.export(i.name, i.v)
		if err != nil {
			return nil, err
		}
		for _, m := range in.Methods {
			served[method{i.name, m.Name}] = true
		}
		switch i.name {
		case api.RulesInterface:
			in.Signals = []introspect.Signal{{Name: "Changed"}}
		case api.DaemonInterface:
			in.Properties = props.Introspection(api.DaemonInterface)
		case api.MonitorInterface:
			in.Signals = []introspect.Signal{{Name: "FlowsChanged", Args: []introspect.Arg{{Name: "flows", Type: dbus.SignatureOf([]api.Flow{}).String()}}}}
		}
		node.Interfaces = append(node.Interfaces, in)
	}
	// An entry for a method nobody serves is a stale or misspelt name (and the method it meant has none).
	for m := range s.access {
		if !served[m] {
			return nil, fmt.Errorf("the access table names %s, which is not served", m)
		}
	}
	if err := o.Conn.Export(introspect.NewIntrospectable(node), api.ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("export introspection: %w", err)
	}
	return s, nil
}

// interfaceObject is one served interface: its exported methods are its D-Bus methods (see export).
type interfaceObject struct {
	name string
	v    any
}

func interfaceObjects(s *Service) []interfaceObject {
	return []interfaceObject{
		{api.DaemonInterface, daemonIface{s}},
		{api.RulesInterface, rulesIface{s}},
		{api.MonitorInterface, monitorIface{s}},
		{api.PromptsInterface, promptsIface{s}},
	}
}

// Serve takes the bus name (which is when D-Bus activation completes) and keeps it until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	reply, err := s.conn.RequestName(api.BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("take bus name %s: %w", api.BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("bus name %s is taken: another tattled runs, or the bus policy does not let root own it", api.BusName)
	}
	s.log.Info("serving on the system bus", "name", api.BusName)
	s.runMonitor(ctx)
	s.conn.ReleaseName(api.BusName)
	return nil
}

// caller is who made a call.
type caller struct {
	sender      string
	uid         uint32
	pid         uint32 // the bus's word for the connecting process
	pidfd       int    // a pidfd for it when the bus hands one over (ProcessFD), else -1; owned by the call
	interactive bool
}

// caller identifies who made a call and admits it: each user (root aside) may have at most maxCallsPerUID
// calls in progress, so one account cannot pile up work or stalled authentications. The returned function
// ends the call's admission.
func (s *Service) caller(msg dbus.Message, sender dbus.Sender) (caller, func(), *dbus.Error) {
	c, err := s.credentials(string(sender))
	if err != nil {
		return caller{}, nil, failed("identify the caller", err)
	}
	c.interactive = msg.Flags&dbus.FlagAllowInteractiveAuthorization != 0
	closeFD := func() {
		if c.pidfd >= 0 {
			unix.Close(c.pidfd)
		}
	}
	if c.uid == 0 {
		return c, closeFD, nil
	}
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	if s.calls[c.uid] >= maxCallsPerUID {
		closeFD()
		return caller{}, nil, dbus.NewError(api.ErrFailed, []any{fmt.Sprintf("%d of your calls are still in progress; wait for them", maxCallsPerUID)})
	}
	s.calls[c.uid]++
	return c, func() {
		closeFD()
		s.callsMu.Lock()
		defer s.callsMu.Unlock()
		if s.calls[c.uid]--; s.calls[c.uid] <= 0 {
			delete(s.calls, c.uid)
		}
	}, nil
}

// credentials asks the bus who is behind sender: uid, PID and, from dbus-daemons that offer it, a pidfd
// taken when the connection was made (which no PID reuse can redirect).
func (s *Service) credentials(sender string) (caller, error) {
	var creds map[string]dbus.Variant
	if s.credsOf != nil {
		var err error
		if creds, err = s.credsOf(sender); err != nil {
			return caller{}, err
		}
	} else if err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds); err != nil {
		return caller{}, err
	}
	c := caller{sender: sender, pidfd: -1}
	uid, ok := creds["UnixUserID"].Value().(uint32)
	if !ok {
		return caller{}, errors.New("the bus did not say which user the caller runs as")
	}
	c.uid = uid
	c.pid, _ = creds["ProcessID"].Value().(uint32)
	switch fd := creds["ProcessFD"].Value().(type) {
	case dbus.UnixFD:
		c.pidfd = int(fd)
	}
	return c, nil
}

// maxCallsPerUID bounds one user's calls in progress.
const maxCallsPerUID = 16

// require checks one polkit action for the caller. Root is trusted without asking.
func (s *Service) require(c caller, action, what string) *dbus.Error {
	ok, err := s.allowed(c, action, c.interactive)
	if err != nil {
		return failed("check authorization", err)
	}
	if !ok {
		hint := ""
		if !c.interactive {
			hint = " (the request did not allow interactive authentication)"
		}
		return dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("not authorized to %s: needs %s%s", what, action, hint)})
	}
	return nil
}

func (s *Service) allowed(c caller, action string, interactive bool) (bool, error) {
	if c.uid == 0 {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return s.auth.Authorized(ctx, c.sender, action, interactive)
}

// requireForOwners checks what changing rules of these owners needs: the caller's own rules need
// manage-own-rules (the user's own password: a program running as the user must not allow itself);
// system rules and other users' rules need manage-rules.
func (s *Service) requireForOwners(c caller, owners []*uint32) *dbus.Error {
	needManage, needOwn := false, false
	for _, o := range owners {
		if o != nil && *o == c.uid {
			needOwn = true
		} else {
			needManage = true
		}
	}
	if needManage {
		return s.require(c, api.ActionManageRules, "change system-wide rules or other users' rules")
	}
	if needOwn {
		return s.require(c, api.ActionManageOwnRules, "change rules for your own processes (this needs your password)")
	}
	return nil
}

func failed(what string, err error) *dbus.Error {
	return dbus.NewError(api.ErrFailed, []any{fmt.Sprintf("%s: %v", what, err)})
}

func invalid(format string, args ...any) *dbus.Error {
	return dbus.NewError(api.ErrInvalidArgs, []any{fmt.Sprintf(format, args...)})
}

func storeError(err error) *dbus.Error {
	switch {
	case errors.Is(err, store.ErrQuota), errors.Is(err, store.ErrIDTaken), errors.Is(err, store.ErrTooMany):
		return dbus.NewError(api.ErrInvalidArgs, []any{err.Error()})
	case errors.Is(err, store.ErrChanged):
		return dbus.NewError(api.ErrFailed, []any{err.Error()})
	case errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrFactory):
		return dbus.NewError(api.ErrReadOnly, []any{err.Error()})
	case errors.Is(err, store.ErrNotFound):
		return dbus.NewError(api.ErrNotFound, []any{err.Error()})
	}
	var fe *rules.FieldError
	if errors.As(err, &fe) {
		return dbus.NewError(api.ErrInvalidArgs, []any{err.Error()})
	}
	return failed("store the rules", err)
}

// AnnounceRulesChanged tells clients the rules changed (the helper changed them itself: an answer, an
// application that quit).
func (s *Service) AnnounceRulesChanged() {
	if err := s.conn.Emit(api.ObjectPath, api.ChangedSignal); err != nil {
		s.log.Warn("announce rule change", "error", err)
	}
}

// changed recompiles, installs and announces new rules.
func (s *Service) changed() *dbus.Error {
	err := s.daemon.Apply()
	if emitErr := s.conn.Emit(api.ObjectPath, api.ChangedSignal); emitErr != nil {
		s.log.Warn("announce rule change", "error", emitErr)
	}
	if err != nil {
		return failed("the rules were saved but could not be applied", err)
	}
	return nil
}
