package scripts

import (
	"slices"
	"testing"

	"github.com/tattlefw/tattle/helper/peer"
)

// The kernel's list: every name fits its key and is not taken for a prefix, and the runtime's TARGET_APPIMAGE
// and every injection variable are on it.
func TestAppImageRefusedEnv(t *testing.T) {
	names := AppImageRefusedEnv()
	if !slices.Contains(names, "TARGET_APPIMAGE") {
		t.Error("TARGET_APPIMAGE is not refused")
	}
	for _, n := range names {
		if len(n) == 0 || len(n) > 30 || len(n) == 3 {
			t.Errorf("%q cannot be matched exactly by the kernel", n)
		}
		if n != "TARGET_APPIMAGE" && !peer.InjectionVariable(n) {
			t.Errorf("%q is refused but no injection variable", n)
		}
	}
	for _, v := range []string{"LD_PRELOAD", "LD_AUDIT", "GTK_MODULES", "PYTHONPATH"} {
		covered := slices.Contains(names, v)
		for _, p := range peer.InjectionPrefixes() {
			covered = covered || (len(p) == 3 && v[:3] == p)
		}
		if !covered {
			t.Errorf("%s is not refused", v)
		}
	}
}
