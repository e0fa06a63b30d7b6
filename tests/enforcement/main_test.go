// Package enforcement is the behaviour suite of the kernel core. The same tests run on the host kernel
// (cgroup backend) and inside Debian's kernels booted under qemu (lsm backend, and cgroup again on a kernel
// booted without BPF LSM); see tests/vm.
//
// Environment: TATTLE_BACKEND (auto, lsm or cgroup; default auto), TATTLE_EXPECT_BACKEND (fail unless auto
// chose this), TATTLE_CLIENT and TATTLE_TATTLED (prebuilt binaries), TATTLE_REQUIRE_ROOT=1 (fail instead of
// skip without root).
package enforcement

import (
	"log/slog"
	"os"
	"testing"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

func backend(t testing.TB) enforce.Backend {
	b, err := enforce.ParseBackend(envOr("TATTLE_BACKEND", "auto"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// openEnforcer attaches a private set of programs for one test and detaches them when it ends.
func openEnforcer(t testing.TB, name string) *enforce.Enforcer {
	t.Helper()
	pin := testrig.PinDir(name)
	enforce.Uninstall(pin) // leftovers of a crashed run
	enf, err := enforce.Open(enforce.Options{
		Backend: backend(t),
		PinDir:  pin,
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatalf("attach programs: %v", err)
	}
	t.Cleanup(func() {
		enf.Close()
		if err := enforce.Uninstall(pin); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	return enf
}

func TestBackendChoice(t *testing.T) {
	enf := openEnforcer(t, "choice")
	want := os.Getenv("TATTLE_EXPECT_BACKEND")
	t.Logf("backend requested %s, attached %s", backend(t), enf.Backend())
	if want != "" && string(enf.Backend()) != want {
		t.Fatalf("backend %s attached, want %s", enf.Backend(), want)
	}
	// Detection, not fallback, must be what chose: the kernel's LSM list decides.
	if exp := os.Getenv("TATTLE_EXPECT_BPF_LSM"); exp != "" {
		active, err := enforce.BPFLSMActive(enforce.DefaultSecurityFS)
		if err != nil {
			t.Fatal(err)
		}
		if active != (exp == "yes") {
			t.Errorf("BPF LSM active = %v, expected %s", active, exp)
		}
	}
	ids, err := enf.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	wantProgs := 6 // four cgroup hooks, and the exec and fork tracepoints that follow scripts
	if enf.Backend() == enforce.BackendLSM {
		wantProgs = 8 // two LSM hooks, four cgroup marking programs, exec and fork
	}
	// Both backends add the two traffic counters (tcx egress and ingress) where the kernel has tcx (6.6) and
	// there is an interface besides loopback.
	if enf.CountsTraffic() {
		wantProgs += 2
	} else {
		t.Logf("the traffic counters are attached nowhere (no tcx, or no interface but loopback)")
	}
	if len(ids) != wantProgs {
		t.Errorf("%d programs attached, want %d: %v", len(ids), wantProgs, ids)
	}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
