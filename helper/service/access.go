package service

import (
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/tattlefw/tattle/helper/peer"
	"github.com/tattlefw/tattle/shared/api"
)

// Who may call which method is declared in one place, accessTable. Every served method goes through
// dispatch, which looks the method up, identifies and admits the caller as its entry says, and only then
// runs the method's body with the admitted call. A served method without an entry is refused before its
// body runs.

// kind is one way of being let in.
type kind int

const (
	// undeclared is the zero value: an entry that says nothing refuses everyone.
	undeclared kind = iota
	// anyone: reads everyone may make (status, settings, problems). Nobody is identified or counted.
	anyone
	// ownConnection: the call acts only on the calling connection's own registrations (Unsubscribe,
	// UnregisterAgent), so who runs it does not matter. Nobody is identified.
	ownConnection
	// polkitAction: root, or polkit grants action (interactive when the message allows it).
	polkitAction
	// managersSeeAll: anyone identified; the call sees everyone's data when polkit grants manage-rules
	// without interaction (an error from polkit: the caller's own only), else the caller's own.
	managersSeeAll
	// monitorAll: anyone identified; the call sees everyone's flows when polkit grants monitor-all
	// (interactive when the message allows it; an error from polkit fails the call), else the caller's own.
	monitorAll
	// ruleOwners: anyone identified; the body names the owners of the rules it changes (call.requireOwners):
	// the caller's own rules need manage-own-rules, system rules and other users' need manage-rules.
	ruleOwners
	// trustedAgent: an installed, unaltered agent program (helper/peer) whose user polkit grants action.
	trustedAgent
)

func (k kind) String() string {
	switch k {
	case anyone:
		return "anyone"
	case ownConnection:
		return "own connection"
	case polkitAction:
		return "polkit action"
	case managersSeeAll:
		return "own data, all with manage-rules"
	case monitorAll:
		return "own flows, all with monitor-all"
	case ruleOwners:
		return "rule owners"
	case trustedAgent:
		return "trusted agent"
	}
	return "undeclared"
}

// access is one method's entry.
type access struct {
	kind   kind
	action string // polkitAction, trustedAgent: the polkit action required
	what   string // what the action is for, in a refusal ("not authorized to WHAT")
	// also are actions the body may demand on top, depending on its arguments (call.require).
	also []string
}

// identifies reports whether the caller is identified (and counted against its user's calls in progress).
func (a access) identifies() bool { return a.kind != anyone && a.kind != ownConnection }

func polkit(action, what string) access {
	return access{kind: polkitAction, action: action, what: what}
}

// method names one served method.
type method struct{ iface, member string }

func (m method) String() string { return m.iface + "." + m.member }

// accessTable is the one declaration of who may call what (DESIGN.md, "D-Bus contract").
func accessTable() map[method]access {
	manage := func(what string) access { return polkit(api.ActionManageRules, what) }
	return map[method]access{
		{api.DaemonInterface, "Status"}:      {kind: anyone},
		{api.DaemonInterface, "Settings"}:    {kind: anyone},
		{api.DaemonInterface, "SetMode"}:     manage("change the mode"),
		{api.DaemonInterface, "Learn"}:       manage("start learning mode"),
		{api.DaemonInterface, "SetSettings"}: manage("change the settings"),

		{api.RulesInterface, "List"}:        {kind: managersSeeAll},
		{api.RulesInterface, "Export"}:      {kind: managersSeeAll},
		{api.RulesInterface, "Problems"}:    {kind: anyone},
		{api.RulesInterface, "Add"}:         {kind: ruleOwners},
		{api.RulesInterface, "Update"}:      {kind: ruleOwners},
		{api.RulesInterface, "Remove"}:      {kind: ruleOwners},
		{api.RulesInterface, "SetEnabled"}:  {kind: ruleOwners},
		{api.RulesInterface, "Import"}:      {kind: ruleOwners},
		{api.RulesInterface, "ImportFiles"}: {kind: ruleOwners},
		{api.RulesInterface, "Approve"}:     {kind: ruleOwners},

		{api.MonitorInterface, "Flows"}:       {kind: monitorAll},
		{api.MonitorInterface, "Subscribe"}:   {kind: monitorAll},
		{api.MonitorInterface, "Unsubscribe"}: {kind: ownConnection},
		{api.MonitorInterface, "History"}:     {kind: monitorAll},
		{api.MonitorInterface, "Traffic"}:     {kind: monitorAll},

		{api.PromptsInterface, "RegisterAgent"}: {kind: trustedAgent, action: api.ActionAnswerPrompts,
			what: "answer questions about your processes' connections"},
		// The "replace" option also needs the user's own authentication.
		{api.PromptsInterface, "RegisterAgentWithOptions"}: {kind: trustedAgent, action: api.ActionAnswerPrompts,
			what: "answer questions about your processes' connections", also: []string{api.ActionManageOwnRules}},
		{api.PromptsInterface, "UnregisterAgent"}: {kind: ownConnection},
		{api.PromptsInterface, "Pending"}:         {kind: managersSeeAll},
	}
}

// call is one admitted method call: what its body may rely on.
type call struct {
	sender string // the caller's unique bus name, always set
	// *caller is who called; nil for the kinds that identify nobody (anyone, ownConnection), so a body of
	// such a method that reads a uid fails (dispatch turns the panic into an error) instead of seeing 0, root.
	*caller
	all   bool         // managersSeeAll, monitorAll: the caller may see everyone's data
	agent peer.Process // trustedAgent: the checked agent program
	m     method
	entry access
	s     *Service
}

// require checks an action the entry lists in also. Any other action is refused: access is declared in
// the table, not in bodies.
func (c *call) require(action, what string) *dbus.Error {
	if c.caller == nil || !slices.Contains(c.entry.also, action) {
		c.s.log.Error("a method body demanded an action its access entry does not declare", "method", c.m, "action", action)
		return dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("%s does not declare %s", c.m, action)})
	}
	return c.s.require(*c.caller, action, what)
}

// requireOwners checks what changing rules of these owners needs (ruleOwners methods only).
func (c *call) requireOwners(owners []*uint32) *dbus.Error {
	if c.caller == nil || c.entry.kind != ruleOwners {
		c.s.log.Error("a method body checked rule owners but its access entry is not ruleOwners", "method", c.m, "kind", c.entry.kind)
		return dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("%s is not declared to change rules", c.m)})
	}
	return c.s.requireForOwners(*c.caller, owners)
}

// admit lets a call in as its entry says, or refuses it. release ends the call's admission.
func (s *Service) admit(m method, msg dbus.Message) (*call, func(), *dbus.Error) {
	a, ok := s.access[m]
	if !ok || a.kind == undeclared {
		s.log.Error("refused a call to a method without an access entry", "method", m)
		return nil, nil, dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("%s is served to nobody: no access is declared for it", m)})
	}
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	c := &call{sender: sender, m: m, entry: a, s: s}
	if !a.identifies() {
		return c, func() {}, nil
	}
	who, release, derr := s.caller(msg, dbus.Sender(sender))
	if derr != nil {
		return nil, nil, derr
	}
	c.caller = &who
	switch a.kind {
	case polkitAction:
		derr = s.require(who, a.action, a.what)
	case managersSeeAll:
		c.all = s.mayManage(who)
	case monitorAll:
		all, err := s.allowed(who, api.ActionMonitorAll, who.interactive)
		if err != nil {
			derr = failed("check authorization", err)
		}
		c.all = all
	case ruleOwners:
		// The body names the owners (requireOwners) once it has read the rules the call changes.
	case trustedAgent:
		if c.agent, derr = s.trustedAgent(who); derr == nil {
			derr = s.require(who, a.action, a.what)
		}
	default:
		derr = dbus.NewError(api.ErrAccessDenied, []any{fmt.Sprintf("%s has an access kind this helper does not know", m)})
	}
	if derr != nil {
		release()
		return nil, nil, derr
	}
	return c, release, nil
}

var (
	callType    = reflect.TypeFor[*call]()
	messageType = reflect.TypeFor[dbus.Message]()
	errorType   = reflect.TypeFor[*dbus.Error]()
)

// export serves the methods of obj on iface: each exported method of obj takes the admitted *call first and
// returns *dbus.Error last, and is served with the *call replaced by the message, through dispatch. It
// returns the introspection data of what it serves.
func (s *Service) export(iface string, obj any) (introspect.Interface, error) {
	v := reflect.ValueOf(obj)
	t := v.Type()
	table := map[string]any{}
	in := introspect.Interface{Name: iface}
	for i := range t.NumMethod() { // sorted by name, as godbus's introspect.Methods
		name := t.Method(i).Name
		body := v.Method(i)
		bt := body.Type()
		if bt.NumIn() == 0 || bt.In(0) != callType || bt.NumOut() == 0 || bt.Out(bt.NumOut()-1) != errorType {
			return in, fmt.Errorf("%s.%s: a served method takes *call first and returns *dbus.Error last", iface, name)
		}
		m := method{iface, name}
		if _, ok := s.access[m]; !ok {
			s.log.Error("a served method has no access entry: every call is refused", "method", m)
		}
		table[name] = s.dispatch(m, body).Interface()
		im := introspect.Method{Name: name, Annotations: []introspect.Annotation{}}
		for j := 1; j < bt.NumIn(); j++ {
			im.Args = append(im.Args, introspect.Arg{Type: dbus.SignatureOfType(bt.In(j)).String(), Direction: "in"})
		}
		for j := 0; j < bt.NumOut()-1; j++ {
			im.Args = append(im.Args, introspect.Arg{Type: dbus.SignatureOfType(bt.Out(j)).String(), Direction: "out"})
		}
		if im.Args == nil {
			im.Args = []introspect.Arg{}
		}
		in.Methods = append(in.Methods, im)
	}
	if err := s.conn.ExportMethodTable(table, api.ObjectPath, iface); err != nil {
		return in, fmt.Errorf("export %s: %w", iface, err)
	}
	return in, nil
}

// dispatch wraps body (func(*call, args...) (outs..., *dbus.Error)) into what godbus serves
// (func(dbus.Message, args...) (outs..., *dbus.Error)): admit, then run the body with the admitted call.
func (s *Service) dispatch(m method, body reflect.Value) reflect.Value {
	bt := body.Type()
	ins := []reflect.Type{messageType}
	for j := 1; j < bt.NumIn(); j++ {
		ins = append(ins, bt.In(j))
	}
	outs := make([]reflect.Type, bt.NumOut())
	for j := range outs {
		outs[j] = bt.Out(j)
	}
	refuse := func(derr *dbus.Error) []reflect.Value {
		ret := make([]reflect.Value, len(outs))
		for j := range len(outs) - 1 {
			ret[j] = reflect.Zero(outs[j])
		}
		ret[len(outs)-1] = reflect.ValueOf(derr)
		return ret
	}
	return reflect.MakeFunc(reflect.FuncOf(ins, outs, false), func(args []reflect.Value) (ret []reflect.Value) {
		c, release, derr := s.admit(m, args[0].Interface().(dbus.Message))
		if derr != nil {
			return refuse(derr)
		}
		defer release()
		defer func() {
			// A body's bug (a nil caller read by a method that identifies nobody, say) fails its call, not the helper.
			if p := recover(); p != nil {
				s.log.Error("a method panicked", "method", m, "panic", p, "stack", string(debug.Stack()))
				ret = refuse(dbus.NewError(api.ErrFailed, []any{fmt.Sprintf("%s failed inside tattled", m)}))
			}
		}()
		if s.entered != nil {
			s.entered(m, c)
		}
		return body.Call(append([]reflect.Value{reflect.ValueOf(c)}, args[1:]...))
	})
}
