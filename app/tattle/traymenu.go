package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tray"
	"github.com/tattlefw/tattle/shared/api"
)

// trayUI keeps the tray item in step with the app: its icon (normal, question waiting, silent mode) and
// its menu (open the monitor, the mode (shown; Preferences change it), the questions waiting, quit). All its
// methods run on the main loop.
type trayUI struct {
	s       *session
	t       *tray.Tray
	conn    *dbus.Conn
	mode    string
	told    bool // the user was told that no tray shows the item
	pending []api.Question
}

// startTray puts Tattle in the desktop's tray, on its own connection to the session bus. Without a session
// bus or a tray the app keeps working, and says so once.
func (s *session) startTray() {
	conn, err := privateSessionBus()
	if err != nil {
		s.log.Warn("no session bus for the tray icon", "error", err)
		return
	}
	u := &trayUI{s: s, conn: conn}
	t, err := tray.New(s.ctx, conn, tray.Options{
		ID:         AppID,
		Title:      i18n.T("Tattle"),
		OnActivate: func() { glib.IdleAdd(func() { s.present() }) },
		OnAvailable: func(available bool) {
			glib.IdleAdd(func() { u.availability(available) })
		},
		Logger: s.log,
	})
	if err != nil {
		s.log.Warn("no tray icon", "error", err)
		conn.Close()
		return
	}
	u.t = t
	s.tray = u
	u.refreshMode()
	glib.TimeoutAdd(10000, func() bool {
		if s.ctx.Err() != nil {
			return false
		}
		u.refreshMode()
		return true
	})
}

func (u *trayUI) close() {
	if u.t != nil {
		u.t.Close()
	}
	u.conn.Close()
}

func (u *trayUI) availability(available bool) {
	if available || u.told {
		return
	}
	u.told = true
	u.s.log.Info("no tray shows Tattle's icon")
	u.s.msg.Show(gtk.MESSAGE_INFO, i18n.T("No system tray was found, so Tattle shows no icon there. It keeps running and asks about new connections; open this window again from the applications menu."))
}

// refreshMode reads the helper's mode (it may be changed elsewhere, by tattlectl say).
func (u *trayUI) refreshMode() {
	go func() {
		ctx, cancel := context.WithTimeout(u.s.ctx, 10*time.Second)
		defer cancel()
		st, err := u.s.cl.Status(ctx)
		if err != nil {
			return
		}
		glib.IdleAdd(func() {
			if st.Mode != u.mode {
				u.mode = st.Mode
				u.update(u.pending)
			}
		})
	}()
}

// update shows the questions waiting and the mode.
func (u *trayUI) update(pending []api.Question) {
	u.pending = pending
	state := tray.Normal
	switch {
	case len(pending) > 0:
		state = tray.Question
	case u.mode == api.ModeSilentAllow || u.mode == api.ModeSilentDeny:
		state = tray.Silent
	}
	u.t.SetState(state)
	tip := ""
	if len(pending) > 0 {
		tip = fmt.Sprintf(i18n.N("%d question waiting", "%d questions waiting", len(pending)), len(pending))
	}
	u.t.SetToolTip("", tip)

	s := u.s
	onMain := func(f func()) func() { return func() { glib.IdleAdd(f) } }
	// The mode is shown, not switched, here: a menu item's click reaches the app as a dbusmenu Event call,
	// which any program on the session bus can make too. Preferences change it on the user's own click.
	modeName := map[string]string{api.ModeAlert: i18n.T("Alert"), api.ModeSilentAllow: i18n.T("Silent, allow"),
		api.ModeSilentDeny: i18n.T("Silent, deny")}[u.mode]
	modeLabel := i18n.T("Change _Mode…")
	if modeName != "" {
		modeLabel = fmt.Sprintf(i18n.T("_Mode: %s…"), modeName)
	}
	items := []tray.Item{
		{Label: i18n.T("_Open Monitor"), OnClick: onMain(func() {
			s.stack.SetVisibleChildName("monitor")
			s.present()
		})},
		{Label: modeLabel, OnClick: onMain(func() {
			s.stack.SetVisibleChildName("preferences")
			s.present()
			s.prefs.FocusMode()
		})},
		{Separator: true},
	}
	if len(pending) == 0 {
		items = append(items, tray.Item{Label: i18n.T("No questions waiting"), Disabled: true})
	}
	for i, q := range pending {
		if i == 10 {
			items = append(items, tray.Item{Label: fmt.Sprintf(i18n.T("and %d more"), len(pending)-10), Disabled: true})
			break
		}
		dest := q.Host
		if dest == "" {
			dest = q.Addr
		}
		items = append(items, tray.Item{Label: fmt.Sprintf(i18n.T("%s to %s port %d"), filepath.Base(q.Exe), dest, q.Port),
			OnClick: onMain(func() {
				// Brought up, not engaged: any program on the session bus can send this item's click.
				s.alert.Update(s.agent.Queue())
				s.alert.Present()
			})})
	}
	items = append(items, tray.Item{Separator: true}, tray.Item{Label: i18n.T("_Quit Tattle"), OnClick: onMain(func() { s.app.Quit() })})
	u.t.SetMenu(items)
}

// privateSessionBus opens a connection of its own to the session bus, so that what one part of the app does
// on it (the tray's names, the notifications' signal matches) never mixes with another's.
func privateSessionBus() (*dbus.Conn, error) {
	conn, err := dbus.SessionBusPrivate()
	if err != nil {
		return nil, err
	}
	if err = conn.Auth(nil); err == nil {
		err = conn.Hello()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
