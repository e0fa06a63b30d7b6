package service

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// Authorizer decides whether the sender of a call may perform a polkit action.
type Authorizer interface {
	// Authorized asks for sender (a unique bus name) and action. interactive lets polkit ask the user through
	// an authentication agent (the caller set the allow-interactive-authorization flag).
	Authorized(ctx context.Context, sender, action string, interactive bool) (bool, error)
}

// Polkit asks polkitd over the bus the helper is on.
type Polkit struct{ Conn *dbus.Conn }

const polkitAllowUserInteraction = 1

// Authorized implements Authorizer with org.freedesktop.PolicyKit1.Authority.CheckAuthorization, naming the
// caller by its bus name (the subject polkit can tie to a process and session without races).
func (p Polkit) Authorized(ctx context.Context, sender, action string, interactive bool) (bool, error) {
	ok, _, err := p.check(ctx, sender, action, interactive)
	return ok, err
}

func (p Polkit) check(ctx context.Context, sender, action string, interactive bool) (bool, bool, error) {
	subject := struct {
		Kind    string
		Details map[string]dbus.Variant
	}{"system-bus-name", map[string]dbus.Variant{"name": dbus.MakeVariant(sender)}}
	var flags uint32
	if interactive {
		flags = polkitAllowUserInteraction
	}
	var result struct {
		IsAuthorized bool
		IsChallenge  bool
		Details      map[string]string
	}
	obj := p.Conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")
	err := obj.CallWithContext(ctx, "org.freedesktop.PolicyKit1.Authority.CheckAuthorization", 0,
		subject, action, map[string]string{}, flags, "").Store(&result)
	if err != nil {
		return false, false, fmt.Errorf("ask polkit about %s: %w", action, err)
	}
	return result.IsAuthorized, result.IsChallenge, nil
}
