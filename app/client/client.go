// Package client calls tattled, Tattle's root helper, over the system bus: one Go method per D-Bus method of
// the contract in shared/api, with the same Go types. tattlectl and the GTK app both use it.
//
// Every error a method returns is an *Error whose Kind says what kind of failure it was (the helper is not
// reachable, the caller is not allowed, the helper refused the request...), so that callers can pick an exit
// code or a dialog without parsing D-Bus error names themselves.
package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
)

// DefaultTimeout bounds a call that nobody has to answer by hand: reads, and changes made without
// interactive authorization. It includes the time the bus takes to start tattled on demand.
const DefaultTimeout = 60 * time.Second

// Options say how a Client calls the helper.
type Options struct {
	// Interactive sets the allow-interactive-authorization flag on calls that change state, so that polkit
	// may ask the user for a password (through the session's polkit agent) instead of refusing. Such calls
	// are bounded only by their context, since a person may take a while to answer.
	Interactive bool
	// Timeout bounds every other call; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client is a connection to tattled. Its methods may be called from several goroutines.
type Client struct {
	conn *dbus.Conn
	opts Options
	own  bool // Close closes conn
}

// Connect opens a private connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS when set, else the standard
// socket). The bus starts tattled on the first call if it is not running.
func Connect(opts Options) (*Client, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, connectError("the system bus", err)
	}
	c := New(conn, opts)
	c.own = true
	return c, nil
}

// Dial is Connect for a bus at a given address (tests run a private bus).
func Dial(address string, opts Options) (*Client, error) {
	conn, err := dbus.Connect(address)
	if err != nil {
		return nil, connectError("the bus at "+address, err)
	}
	c := New(conn, opts)
	c.own = true
	return c, nil
}

// New uses a connection the caller already has; Close leaves it open.
func New(conn *dbus.Conn, opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Client{conn: conn, opts: opts}
}

// Close closes the connection if Connect or Dial opened it.
func (c *Client) Close() error {
	if c.own {
		return c.conn.Close()
	}
	return nil
}

// Conn is the underlying bus connection.
func (c *Client) Conn() *dbus.Conn { return c.conn }

// call makes one method call and stores its reply in out. change marks calls that change state: they carry
// the allow-interactive-authorization flag when the client is interactive.
func (c *Client) call(ctx context.Context, method string, change bool, out []any, args ...any) error {
	var flags dbus.Flags
	if change && c.opts.Interactive {
		flags |= dbus.FlagAllowInteractiveAuthorization
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	call := <-c.conn.SendWithContext(ctx, methodCall(method, flags, args), nil).Done
	if call.Err != nil {
		return callError(ctx, method, call.Err, c.opts.Timeout)
	}
	if len(out) > 0 {
		if err := call.Store(out...); err != nil {
			return &Error{Kind: Failed, Method: method, Err: err,
				Msg: fmt.Sprintf("tattled answered %s with something this client does not understand (%v); are tattled and this client the same version?", shortMethod(method), err)}
		}
	}
	return nil
}

// methodCall builds the call message by hand: godbus's Object.Call drops every flag but no-auto-start and
// no-reply-expected, and with them allow-interactive-authorization.
func methodCall(method string, flags dbus.Flags, args []any) *dbus.Message {
	i := strings.LastIndex(method, ".")
	msg := &dbus.Message{
		Type:  dbus.TypeMethodCall,
		Flags: flags,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldDestination: dbus.MakeVariant(api.BusName),
			dbus.FieldPath:        dbus.MakeVariant(api.ObjectPath),
			dbus.FieldInterface:   dbus.MakeVariant(method[:i]),
			dbus.FieldMember:      dbus.MakeVariant(method[i+1:]),
		},
		Body: args,
	}
	if len(args) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(args...))
	}
	return msg
}

// Status describes the helper. Anyone may call it.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := c.call(ctx, api.DaemonInterface+".Status", false, []any{&st})
	return st, err
}

// SetMode switches between api.ModeAlert, api.ModeSilentAllow and api.ModeSilentDeny (manage-rules).
func (c *Client) SetMode(ctx context.Context, mode string) error {
	return c.call(ctx, api.DaemonInterface+".SetMode", true, nil, mode)
}

// Learn starts learning mode for seconds (manage-rules); the helper returns to alert by itself then.
func (c *Client) Learn(ctx context.Context, seconds uint32) error {
	return c.call(ctx, api.DaemonInterface+".Learn", true, nil, seconds)
}

// Rules lists the system rules and the caller's own (everyone's with manage-rules).
func (c *Client) Rules(ctx context.Context) ([]api.Rule, error) {
	var rs []api.Rule
	err := c.call(ctx, api.RulesInterface+".List", false, []any{&rs})
	return rs, err
}

// AddRules adds rules and returns their ids, in order.
func (c *Client) AddRules(ctx context.Context, rs []api.Rule) ([]string, error) {
	var ids []string
	err := c.call(ctx, api.RulesInterface+".Add", true, []any{&ids}, nonNil(rs))
	return ids, err
}

// UpdateRule replaces the rule with r's id.
func (c *Client) UpdateRule(ctx context.Context, r api.Rule) error {
	return c.call(ctx, api.RulesInterface+".Update", true, nil, r)
}

// RemoveRules removes the rules with these ids.
func (c *Client) RemoveRules(ctx context.Context, ids []string) error {
	return c.call(ctx, api.RulesInterface+".Remove", true, nil, nonNil(ids))
}

// Approve marks imported rules approved (the same authorization as changing them).
func (c *Client) Approve(ctx context.Context, ids []string) error {
	return c.call(ctx, api.RulesInterface+".Approve", true, nil, nonNil(ids))
}

// SetEnabled switches a rule on or off.
func (c *Client) SetEnabled(ctx context.Context, id string, enabled bool) error {
	return c.call(ctx, api.RulesInterface+".SetEnabled", true, nil, id, enabled)
}

// Import converts data in the given format (api.FormatTattle, FormatLittleSnitch, FormatOpenSnitch) into
// rules: system rules when system is true, else rules for the caller's own processes. It returns how many
// rules were added and one line per thing left out.
func (c *Client) Import(ctx context.Context, format string, data []byte, system bool) (uint32, []string, error) {
	var n uint32
	var skipped []string
	err := c.call(ctx, api.RulesInterface+".Import", true, []any{&n, &skipped}, format, nonNil(data), system)
	return n, skipped, err
}

// ImportFiles imports several files as one transaction (rules and the named lists they need, all or
// nothing); with req.DryRun it only reports what it would do.
func (c *Client) ImportFiles(ctx context.Context, req api.ImportRequest) (api.ImportSummary, []string, error) {
	var sum api.ImportSummary
	var report []string
	for i := range req.Files {
		req.Files[i].Data = nonNil(req.Files[i].Data)
	}
	for i := range req.ListDirs {
		if req.ListDirs[i].Files == nil {
			req.ListDirs[i].Files = []api.ImportFile{}
		}
		for j := range req.ListDirs[i].Files {
			req.ListDirs[i].Files[j].Data = nonNil(req.ListDirs[i].Files[j].Data)
		}
	}
	if req.ListDirs == nil {
		req.ListDirs = []api.ImportListDir{}
	}
	err := c.call(ctx, api.RulesInterface+".ImportFiles", true, []any{&sum, &report}, req)
	return sum, report, err
}

// Export writes the rules the caller may list in the given format, with one line per rule left out.
func (c *Client) Export(ctx context.Context, format string) ([]byte, []string, error) {
	var data []byte
	var skipped []string
	err := c.call(ctx, api.RulesInterface+".Export", false, []any{&data, &skipped}, format)
	return data, skipped, err
}

// Problems lists the rule files the helper refused.
func (c *Client) Problems(ctx context.Context) ([]api.Problem, error) {
	var ps []api.Problem
	err := c.call(ctx, api.RulesInterface+".Problems", false, []any{&ps})
	return ps, err
}

// Flows is the kernel's account of the caller's processes' connections (everyone's with monitor-all).
func (c *Client) Flows(ctx context.Context) ([]api.Flow, error) {
	var fs []api.Flow
	err := c.call(ctx, api.MonitorInterface+".Flows", false, []any{&fs})
	return fs, err
}

// WatchChanged delivers a value on the returned channel each time the helper's rules change (the
// Rules.Changed signal), until ctx ends; then the channel is closed. Several changes in a row may be
// delivered as one.
func (c *Client) WatchChanged(ctx context.Context) (<-chan struct{}, error) {
	sigs, stop, err := c.helperSignals(ctx, api.RulesInterface, "Changed", 16)
	if err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	fromHelper := c.helperSender(ctx)
	go func() {
		defer close(out)
		defer stop()
		eachHelperSignal(ctx, sigs, fromHelper, api.ChangedSignal, func(*dbus.Signal) bool {
			select {
			case out <- struct{}{}:
			default: // one is already waiting to be read
			}
			return true
		})
	}()
	return out, nil
}

// nonNil keeps nil slices off the wire as empty arrays (godbus encodes both the same; this is for clarity).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
