package gui

import (
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// TestAlertShowsWhatTheAnswerCovers: a system process's question of many ports to a host under a public
// suffix of two labels (co.uk). The alert marks it as a system process, names the ports, offers the
// registrable domain the helper computed (the rule an answer makes says the same), and the host scope says
// it covers any port, as the rule made for a question of several ports does.
func TestAlertShowsWhatTheAnswerCovers(t *testing.T) {
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	app := StartApp(t, s, h, English())
	exe := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "updater")
	q := question(2001, exe, "www.example.co.uk", "192.0.2.7", 80, "tcp")
	q.System, q.User = true, "root"
	q.Ports, q.PortCount = []uint16{80, 443, 8080, 8443, 21, 22, 23, 25}, 3000
	q.Domain = rules.RegistrableDomain(q.Host)
	if q.Domain != "example.co.uk" {
		t.Fatalf("registrable domain of %s = %q, want example.co.uk", q.Host, q.Domain)
	}
	call := ask(h, app, q)
	s.WaitFor(t, "label", "www.example.co.uk · 3,000 ports (80, 443, 8080, 8443, 21, 22, …)", 20*time.Second)
	names := s.Names(t)
	for _, want := range []string{"System process. Your answer makes a rule for all users.", "root (system)",
		"On X11, other programs can fake clicks and keys; a Wayland session prevents that."} {
		if !hasName(names, "label", want) {
			t.Errorf("the alert does not show %q; it shows:\n%s", want, dumpNames(names))
		}
	}
	opts := s.Options(t, "Scope")
	for _, want := range []string{"To any host in example.co.uk", "To www.example.co.uk on any port"} {
		if !contains(opts, want) {
			t.Errorf("the alert's scopes have no %q: %q", want, opts)
		}
	}
	s.Screenshot(t, "x11-en-alert-system-ports")
	if err := h.Conn.Object(app.Owner, "/io/github/tattlefw/Tattle/Agent").Call(api.AgentInterface+".Cancel", 0, q.ID).Err; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	select {
	case <-call.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("Ask did not return after Cancel")
	}
}
