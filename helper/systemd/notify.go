// Package systemd connects tattled to the service manager when systemd runs it: readiness and a status line
// through sd_notify, watchdog pings while the helper is healthy, and log records as structured journal entries.
// Outside systemd (no NOTIFY_SOCKET, no journal stream) every part does nothing and logging stays on stderr.
package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd that the helper serves (Type=notify), with the status line `systemctl status` shows.
func Ready(status string) error {
	return notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Status replaces the status line `systemctl status` shows.
func Status(status string) error {
	return notify("STATUS=" + status)
}

// Stopping tells systemd the helper is shutting down on purpose.
func Stopping(status string) error {
	return notify(daemon.SdNotifyStopping + "\nSTATUS=" + status)
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// Watchdog pings systemd's watchdog (WatchdogSec=) at half its interval for as long as healthy returns nil,
// until ctx ends. healthy runs in the pinging goroutine on purpose: a helper whose main loops hang (a lock
// never released, the kernel's maps unreadable) stops pinging, and systemd restarts it while the pinned
// programs keep enforcing. Without a watchdog (or outside systemd) it returns at once.
func Watchdog(ctx context.Context, healthy func() error, log *slog.Logger) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("read the watchdog settings: %w", err)
	}
	if interval == 0 {
		return nil
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	failing := false
	for {
		if err := healthy(); err != nil {
			if !failing {
				log.Error("unhealthy: watchdog pings stopped; systemd restarts the helper unless this passes",
					"error", err, "watchdog", interval)
				_ = Status("unhealthy: " + err.Error())
			}
			failing = true
		} else {
			if failing {
				log.Info("healthy again: watchdog pings resumed")
			}
			failing = false
			if err := notify(daemon.SdNotifyWatchdog); err != nil {
				log.Warn("watchdog ping failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
