// Package hold tests holding undecided connections end to end (issue 4): a real dbus-daemon and polkitd, tattled
// activated on that bus with its netfilter queue, `tattlectl agent` answering as a user would, and real clients
// (python, curl, the test client) connecting to servers in a network namespace the test creates.
//
// The rig is tests/internal/holdrig's, the agent tests/internal/testagent's.
package hold

import (
	"os"
	"testing"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/holdrig"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// ring is this ring's own table, queue, namespaces and addresses.
var ring = holdrig.Ring{Table: "tattle_test_hold", Queue: "7452", Netns: "hold", Link: "th", Subnet: 7}

// report collects the figures the tests measure, for tests/output/hold.txt.
var report = testrig.NewReport("hold.txt")

// newRig starts the ring's helper. Its agents: tattlectl agent, and this test binary's own in-process agent
// (registerTestAgent), which the helper must accept as a trusted agent program too (both are root's, in
// directories only root writes).
func newRig(t *testing.T, name string, st api.Settings, extra ...string) *holdrig.Rig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return ring.NewRig(t, name, st, append([]string{"-terminal-agents", testrig.Tattlectl(t) + "," + self}, extra...)...)
}
