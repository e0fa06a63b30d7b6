package testrig

import (
	"testing"

	"github.com/tattlefw/tattle/tests/testbus"
)

// SystemBus is a private dbus-daemon of the system type (tests/testbus), started and stopped (by PID) by a test.
type SystemBus = testbus.Bus

// BusOptions configure StartSystemBus.
type BusOptions = testbus.Options

// LogTail collects output lines for waiting and for failure messages.
type LogTail = testbus.LogTail

// StartSystemBus starts a private system bus (Debian's default policy plus o.Policies) for the test's lifetime.
func StartSystemBus(t testing.TB, o BusOptions) *SystemBus {
	t.Helper()
	o.Type = "system"
	return testbus.Start(t, o)
}
