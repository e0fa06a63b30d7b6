// Package dayone tests Tattle as a new user meets it on a real machine (issue 10): the system's own traffic keeps
// working, questions reach the right person (system processes: an administrator), one question per
// application, user and host. A real dbus-daemon and polkitd, tattled activated on that bus with its netfilter
// queue, `tattlectl agent` answering as a person would, real clients (curl, getent, python) run as root, as
// system users and as an ordinary user, against servers in a network namespace the test makes.
//
// The rig is tests/internal/holdrig's (as tests/hold's), the agent tests/internal/testagent's.
package dayone

import (
	"os"
	"testing"

	"github.com/tattlefw/tattle/tests/internal/holdrig"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// ring is this ring's own table, queue, namespaces and addresses.
var ring = holdrig.Ring{Table: "tattle_test_dayone", Queue: "7453", Netns: "d1", Link: "td", Subnet: 40}

// report collects the figures the tests measure, for tests/output/dayone.txt.
var report = testrig.NewReport("dayone.txt")
