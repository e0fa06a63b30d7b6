package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitDenied      = 4
	exitInterrupted = 130 // as a shell reports a command ended by Ctrl-C
)

// usageError is a mistake in the command line: exit status 2 and a pointer to the command's help.
type usageError struct {
	cmd string // command whose help to point at; "" for the top level
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// exitCode maps an error to the exit status.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	}
	switch client.KindOf(err) {
	case client.Unreachable:
		return exitUnreachable
	case client.AccessDenied:
		return exitDenied
	case client.Canceled:
		return exitInterrupted
	}
	return exitFailed
}

// report prints err as "tattlectl: message", with a hint where one helps, and returns the exit status.
func report(w io.Writer, err error) int {
	code := exitCode(err)
	if err == nil {
		return code
	}
	fmt.Fprintf(w, "tattlectl: %s\n", err)
	if h := hint(err); h != "" {
		fmt.Fprintf(w, "tattlectl: %s\n", h)
	}
	return code
}

// hint says what to do about an error, when there is something to say.
func hint(err error) string {
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.cmd == "" {
			return "run 'tattlectl --help' for usage"
		}
		return fmt.Sprintf("run 'tattlectl %s --help' for usage", ue.cmd)
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return ""
	}
	switch {
	case client.IsSpawnFailure(err):
		return "tattled failed to start; see 'journalctl -u tattled' or run it by hand to see why"
	case ce.Kind == client.Unreachable && ce.Method == "":
		// No connection to the bus at all.
		return "is the system bus running, and is tattled installed? (sudo meson install -C build)"
	case ce.Kind == client.Unreachable:
		return "is tattled installed? (sudo meson install -C build)"
	case ce.Name == client.ErrInteractiveAuthorizationRequired, ce.Kind == client.AccessDenied && strings.Contains(ce.Msg, "did not allow interactive"):
		return "this needs authentication; run it without --no-interactive (or with sudo)"
	case ce.Kind == client.AccessDenied && strings.Contains(ce.Msg, "Rejected send message"):
		// The bus itself refused: its policy for tattled is missing.
		return "the bus refused the call; is tattled's bus policy installed? (share/dbus-1/system.d/io.github.tattlefw.Tattle1.conf)"
	case ce.Kind == client.AccessDenied && strings.Contains(ce.Msg, api.ActionManageOwnRules):
		return "this needs your own password: run it in a terminal (tattlectl asks for it there) or in a desktop session with a polkit agent"
	case ce.Kind == client.AccessDenied:
		return "this needs an administrator's authorization; run it in a session with a polkit agent, or with sudo"
	case ce.Name == api.ErrUntrustedAgent:
		return "only the installed tattle and tattlectl, started normally (not traced, without LD_PRELOAD and the like), may answer questions"
	}
	return ""
}
