package enforce

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A bad option is refused before Open touches the kernel: nothing is made under the pin directory.
func TestOpenRefusesBadOptionsBeforeAttaching(t *testing.T) {
	pins := filepath.Join(t.TempDir(), "pins")
	cases := map[string]Options{
		"unknown backend":      {Backend: "nftables", PinDir: pins},
		"unknown traffic mode": {TrafficAttach: "tcx-please", PinDir: pins},
		"relative pin dir":     {PinDir: "tattle"},
		"pin dir is the root":  {PinDir: "/"},
		"pin dir at the root":  {PinDir: "/tattle"},
		"relative cgroup root": {PinDir: pins, CgroupRoot: "sys/fs/cgroup"},
		"overlapping marks":    {PinDir: pins, Marks: Marks{Held: 0x10000000, Deny: 0x10000000, Token: 0x0fff0000}},
		"two-bit held mark":    {PinDir: pins, Marks: Marks{Held: 0x30000000, Deny: 0x40000000, Token: 0x0fff0000}},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := Open(opts)
			if e != nil {
				e.Close()
			}
			if !errors.Is(err, ErrBadOptions) {
				t.Fatalf("Open: %v, want ErrBadOptions", err)
			}
			if _, err := os.Stat(pins); !os.IsNotExist(err) {
				t.Errorf("the pin directory exists after a refused Open (%v)", err)
			}
		})
	}
}

func TestDefaultOptionsAreValid(t *testing.T) {
	var o Options
	o.fill()
	if err := o.validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	o.TrafficAttach = TrafficClsact
	o.Backend = BackendCgroup
	if err := o.validate(); err != nil {
		t.Fatalf("cgroup with clsact refused: %v", err)
	}
}
