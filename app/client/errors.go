package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
)

// Kind says what kind of failure an Error is.
type Kind int

const (
	// Failed: the helper (or the bus) could not do what was asked, for a reason its message gives.
	Failed Kind = iota
	// Unreachable: no helper answered; the bus is not running, tattled is not installed, could not be
	// started, or stopped answering.
	Unreachable
	// AccessDenied: polkit or the bus policy refused the caller.
	AccessDenied
	// InvalidArgs: the helper refused the request's content (a bad rule, an unknown mode...).
	InvalidArgs
	// NotFound: a rule id the request names does not exist.
	NotFound
	// ReadOnly: the rule belongs to an administrator's rule file and is changed by editing that file.
	ReadOnly
	// Canceled: the caller's context ended before the helper answered (the user pressed Ctrl-C, say).
	Canceled
)

func (k Kind) String() string {
	switch k {
	case Failed:
		return "failed"
	case Unreachable:
		return "unreachable"
	case AccessDenied:
		return "access denied"
	case InvalidArgs:
		return "invalid arguments"
	case NotFound:
		return "not found"
	case ReadOnly:
		return "read-only"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failed call. Msg is written for people.
type Error struct {
	Kind   Kind
	Name   string // D-Bus error name; "" when no error reply came (no connection, timeout)
	Method string // D-Bus method, "" for connecting
	Msg    string
	Err    error // the underlying error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// KindOf is the Kind of an error from this package; Failed for any other non-nil error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Failed
}

// D-Bus error names, other than those in shared/api, that say something about where a call failed.
const (
	errServiceUnknown   = "org.freedesktop.DBus.Error.ServiceUnknown"
	errNameHasNoOwner   = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errNoReply          = "org.freedesktop.DBus.Error.NoReply"
	errTimeout          = "org.freedesktop.DBus.Error.Timeout"
	errTimedOut         = "org.freedesktop.DBus.Error.TimedOut"
	errDisconnected     = "org.freedesktop.DBus.Error.Disconnected"
	errNoServer         = "org.freedesktop.DBus.Error.NoServer"
	errSpawnPrefix      = "org.freedesktop.DBus.Error.Spawn."
	errSystemdPrefix    = "org.freedesktop.systemd1."
	errUnknownMethod    = "org.freedesktop.DBus.Error.UnknownMethod"
	errUnknownObject    = "org.freedesktop.DBus.Error.UnknownObject"
	errUnknownInterface = "org.freedesktop.DBus.Error.UnknownInterface"
	// ErrInteractiveAuthorizationRequired is the reply to a call that needs a password when the caller did
	// not allow interactive authorization.
	ErrInteractiveAuthorizationRequired = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
)

// IsSpawnFailure reports whether the bus tried to start tattled and it failed (a crash at start-up, say),
// as opposed to tattled not being installed.
func IsSpawnFailure(err error) bool {
	var e *Error
	return errors.As(err, &e) && (strings.HasPrefix(e.Name, errSpawnPrefix) || strings.HasPrefix(e.Name, errSystemdPrefix))
}

func connectError(what string, err error) error {
	return &Error{Kind: Unreachable, Err: err, Msg: fmt.Sprintf("cannot connect to %s: %v", what, err)}
}

// callError classifies what a method call returned.
func callError(ctx context.Context, method string, err error, timeout time.Duration) error {
	e := &Error{Kind: Failed, Method: method, Err: err}
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &de):
	case errors.As(err, &dep):
		de = *dep
	default:
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
			e.Kind = Unreachable
			e.Msg = fmt.Sprintf("tattled did not answer %s within %v", shortMethod(method), timeout)
		case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
			e.Kind = Canceled
			e.Msg = "interrupted"
		default:
			// The connection failed under the call (dbus.ErrClosed, a broken socket).
			e.Kind = Unreachable
			e.Msg = fmt.Sprintf("lost the connection to the bus: %v", err)
		}
		return e
	}
	e.Name = de.Name
	text := de.Error() // the message body, or the name when there is none
	switch name := de.Name; {
	case name == api.ErrAccessDenied:
		e.Kind, e.Msg = AccessDenied, "access denied: "+text
	case name == ErrInteractiveAuthorizationRequired:
		e.Kind, e.Msg = AccessDenied, "access denied: "+text
	case name == errServiceUnknown, name == errNameHasNoOwner, name == errNoServer, name == errDisconnected:
		e.Kind, e.Msg = Unreachable, "cannot reach tattled: "+text
	case name == errNoReply, name == errTimeout, name == errTimedOut:
		e.Kind, e.Msg = Unreachable, "tattled did not answer: "+text
	case strings.HasPrefix(name, errSpawnPrefix), strings.HasPrefix(name, errSystemdPrefix):
		e.Kind, e.Msg = Unreachable, "tattled could not be started: "+text
	case name == errUnknownMethod, name == errUnknownObject, name == errUnknownInterface:
		e.Msg = fmt.Sprintf("tattled does not offer %s (%s); are tattled and this client the same version?", shortMethod(method), text)
	case name == api.ErrInvalidArgs:
		e.Kind, e.Msg = InvalidArgs, text
	case name == api.ErrNotFound:
		e.Kind, e.Msg = NotFound, text
	case name == api.ErrReadOnly:
		e.Kind, e.Msg = ReadOnly, text
	default:
		e.Msg = text
	}
	return e
}

// shortMethod drops the bus name from an interface-qualified method: "Rules.Add".
func shortMethod(method string) string {
	return strings.TrimPrefix(method, api.BusName+".")
}
