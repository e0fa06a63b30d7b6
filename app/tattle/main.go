// Command tattle is Tattle's desktop app: the network monitor, the rule editor, the preferences, and the
// agent that asks the user about new connections in an alert window. It talks to tattled, the root helper,
// only over the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured). One instance runs per session
// (application ID io.github.tattlefw.Tattle); `tattle --background` starts it without showing the window, as
// the autostart entry does, so that it can answer questions in every session.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/app/i18n"
)

// AppID is the desktop application ID.
const AppID = "io.github.tattlefw.Tattle"

// Set at build time (meson: -X main.version=… -X main.localeDir=…).
var (
	version   = "dev"
	localeDir = "/usr/share/locale"
)

func main() {
	background := flag.Bool("background", false, "start without showing the window (for the session's autostart)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("tattle", version)
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Before anything connects: a process that is not dumpable cannot be traced or have its memory written by
	// its user's other programs, and tattled accepts only such agents.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Error("cannot protect the app from tracing", "error", err)
		os.Exit(1)
	}
	dir := localeDir
	if d := os.Getenv("TATTLE_LOCALEDIR"); d != "" {
		dir = d
	}
	if err := i18n.Init(i18n.Domain, dir); err != nil {
		log.Warn("translations", "error", err)
	}
	glib.SetApplicationName(i18n.T("Tattle"))

	app, err := gtk.ApplicationNew(AppID, glib.APPLICATION_FLAGS_NONE)
	if err != nil {
		log.Error("cannot create the application", "error", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s *session
	first := true
	app.Connect("startup", func() {
		s = startSession(ctx, app, log)
	})
	app.Connect("activate", func() {
		if first && *background {
			first = false
			return
		}
		first = false
		s.present()
	})
	app.Connect("shutdown", func() {
		if s != nil {
			s.stop()
		}
		cancel()
	})
	// GApplication parses its own options; ours are handled above.
	os.Exit(app.Run([]string{os.Args[0]}))
}
