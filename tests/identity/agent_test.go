package identity

import (
	"os/exec"
	"testing"

	"github.com/tattlefw/tattle/tests/internal/testagent"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// agent is a running `tattlectl agent --json` (tests/internal/testagent).
type agent = testagent.Agent

func (r *rig) startAgent(t *testing.T) *agent {
	t.Helper()
	cmd := exec.Command(testrig.Tattlectl(t), "agent", "--json")
	cmd.Env = r.Env
	return testagent.Start(t, cmd, r.Log)
}
