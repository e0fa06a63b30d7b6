package service

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"
)

// logind is asked which session an agent runs in and whether it is the active one on its seat, so that
// questions go to the app in the session the user is looking at. Machines without logind (no systemd, like
// the test machines) fall back to registration order (see pick).
const (
	logindName    = "org.freedesktop.login1"
	logindPath    = dbus.ObjectPath("/org/freedesktop/login1")
	logindTimeout = 2 * time.Second
)

// sessionOf returns the logind session of pid, "" without logind or when pid is in none.
func (s *Service) sessionOf(pid int) dbus.ObjectPath {
	if pid <= 0 || !s.hasLogind() {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), logindTimeout)
	defer cancel()
	var path dbus.ObjectPath
	if err := s.conn.Object(logindName, logindPath).CallWithContext(ctx, logindName+".Manager.GetSessionByPID", 0, uint32(pid)).Store(&path); err != nil {
		return ""
	}
	return path
}

// sessionActive reports whether session is active and graphical (x11 or wayland).
func (s *Service) sessionActive(session dbus.ObjectPath) bool {
	ctx, cancel := context.WithTimeout(context.Background(), logindTimeout)
	defer cancel()
	obj := s.conn.Object(logindName, session)
	var active, kind dbus.Variant
	if obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, logindName+".Session", "Active").Store(&active) != nil ||
		obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, logindName+".Session", "Type").Store(&kind) != nil {
		return false
	}
	a, _ := active.Value().(bool)
	k, _ := kind.Value().(string)
	return a && (k == "x11" || k == "wayland")
}

func (s *Service) hasLogind() bool {
	var has bool
	err := s.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, logindName).Store(&has)
	return err == nil && has
}
