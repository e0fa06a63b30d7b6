package testrig

import (
	"strings"
	"testing"

	"github.com/tattlefw/tattle/helper/peer"
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
	b := testbus.Start(t, o)
	// Without loader or toolkit injection variables (say, an LD_LIBRARY_PATH of the CI machine): tattled
	// refuses agents started with them, and the agents tests start are meant to be accepted.
	env := b.Env[:0:0]
	for _, e := range b.Env {
		if k, _, _ := strings.Cut(e, "="); !peer.InjectionVariable(k) {
			env = append(env, e)
		}
	}
	b.Env = env
	return b
}
