package main

import (
	"github.com/gotk3/gotk3/glib"

	"github.com/tattlefw/tattle/app/tattle/notify"
)

// startNotifications gives the alert its fallback, a notification that brings it up when the window manager
// keeps it from the front, on a session bus connection of its own. Its goroutines end with the session; the
// connection closes when the app exits. Without a session bus the alert goes without.
func (s *session) startNotifications() {
	conn, err := privateSessionBus()
	if err != nil {
		s.log.Warn("no session bus for notifications", "error", err)
		return
	}
	srv := notify.NewDBusServer(conn)
	// The action, whoever invoked it, only presents the alert (package notify): on the main loop.
	n := notify.New(srv, func() { glib.IdleAdd(func() { s.alert.Present() }) })
	events, err := srv.Events(s.ctx)
	if err != nil {
		s.log.Warn("notifications could not bring up the alert", "error", err)
		conn.Close()
		return
	}
	go n.Run(s.ctx, events)
	a := notify.NewAsync(n)
	s.notified = make(chan struct{})
	go func() {
		defer close(s.notified)
		a.Run(s.ctx)
	}()
	s.alert.SetFallback(a)
}
