// Package service tests tattled as a system service, end to end: a real dbus-daemon (system bus type, private
// socket and configuration) whose service directory holds Tattle's activation file, a real polkitd with
// Tattle's polkit actions, tattled activated by the first call, and tattlectl and real curl as the clients.
package service

import (
	"os"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// bus is the private system bus with polkitd and tattled's activation file (testrig.TattleBus).
type bus struct{ *testrig.TattleBus }

// startBus starts the bus; these tests are about the service, so undecided connections pass unheld (holding is
// tests/hold's).
func startBus(t *testing.T) *bus { return &bus{testrig.StartTattleBus(t, "service", "-hold=false")} }

func (b *bus) connect(t *testing.T) *dbus.Conn { return b.Connect(t) }

func (b *bus) tattledPID(t *testing.T, conn *dbus.Conn) (uint32, bool) { return b.TattledPID(t, conn) }

func (b *bus) ctl(t *testing.T, uid uint32, args ...string) (string, string, int) {
	return b.Ctl(t, uid, args...)
}

func tattlectl(t *testing.T) string { return testrig.Tattlectl(t) }
