package service

import (
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/peer"
)

// TestPickOrder: --replace (newest) first, then a GUI agent in an active session, then the first GUI agent,
// then the first terminal agent; a later agent never wins just by being later.
func TestPickOrder(t *testing.T) {
	term1 := agent{sender: ":1.1", kind: peer.Terminal}
	term2 := agent{sender: ":1.2", kind: peer.Terminal}
	gui1 := agent{sender: ":1.3", kind: peer.GUI, session: "/s/1"}
	gui2 := agent{sender: ":1.4", kind: peer.GUI, session: "/s/2"}
	repl := agent{sender: ":1.5", kind: peer.Terminal, replace: true}
	active2 := func(s dbus.ObjectPath) bool { return s == "/s/2" }
	for _, tc := range []struct {
		what   string
		list   []agent
		active func(dbus.ObjectPath) bool
		want   string
	}{
		{"first terminal agent, not the newest", []agent{term1, term2}, nil, ":1.1"},
		{"a GUI agent before terminal agents", []agent{term1, gui1, term2}, nil, ":1.3"},
		{"the first GUI agent without logind", []agent{gui1, gui2}, nil, ":1.3"},
		{"the GUI agent in the active session", []agent{gui1, gui2}, active2, ":1.4"},
		{"--replace before everything", []agent{gui1, repl, gui2}, active2, ":1.5"},
	} {
		got, ok := pick(tc.list, tc.active)
		if !ok || got.sender != tc.want {
			t.Errorf("%s: picked %q, want %q", tc.what, got.sender, tc.want)
		}
	}
	if _, ok := pick(nil, nil); ok {
		t.Error("picked an agent from none")
	}
}
