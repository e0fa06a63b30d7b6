package gui

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

// TestBackgroundSingleInstance: `tattle --background` (the autostart entry) runs without a window but is
// the agent; starting `tattle` again opens the window of the running instance and exits.
func TestBackgroundSingleInstance(t *testing.T) {
	h := StartHelper(t)
	h.SetMode(t, api.ModeSilentAllow)
	s := StartSession(t, "x11")
	env := append(append([]string{}, s.Env...), "DBUS_SYSTEM_BUS_ADDRESS="+h.Address)
	first := proc(t, s.Log, env, s.dir, nil, appBinary(t), "--background")
	s.Log.WaitFor(t, "registered as agent", 0)
	h.AppOwner(t, first.Process.Pid)
	time.Sleep(time.Second)
	for _, n := range s.Names(t) {
		if n[0] == "frame" {
			t.Fatalf("tattle --background shows a window: %v", n)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, appBinary(t))
	second.Env = env
	if out, err := second.CombinedOutput(); err != nil {
		t.Fatalf("second tattle: %v\n%s", err, out)
	}
	s.WaitFor(t, "frame", "Tattle", 20*time.Second)
	if first.ProcessState != nil {
		t.Fatal("the first instance exited")
	}
}
