package enforce

import (
	"bufio"
	"strings"
	"testing"
)

func TestLSMListHasBPF(t *testing.T) {
	for list, want := range map[string]bool{
		"lockdown,capability,landlock,yama,apparmor,bpf\n": true,
		"bpf":                               true,
		"lockdown,capability,landlock,yama": false,
		"lockdown,bpfx,capability":          false,
		"":                                  false,
	} {
		if got := lsmListHasBPF(list); got != want {
			t.Errorf("lsmListHasBPF(%q) = %v, want %v", list, got, want)
		}
	}
}

func TestParseCgroupV2Root(t *testing.T) {
	hybrid := `25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
34 25 0:29 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
`
	got, err := parseCgroupV2Root(bufio.NewScanner(strings.NewReader(hybrid)))
	if err != nil || got != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid layout: got %q, %v", got, err)
	}
	// A bind mount of a sub-cgroup (root field not "/") is not the hierarchy's root.
	nested := `40 34 0:30 /user.slice /mnt/sub rw - cgroup2 cgroup2 rw
41 34 0:30 / /my\040cgroups rw - cgroup2 cgroup2 rw
`
	got, err = parseCgroupV2Root(bufio.NewScanner(strings.NewReader(nested)))
	if err != nil || got != "/my cgroups" {
		t.Errorf("escaped path: got %q, %v", got, err)
	}
	if _, err := parseCgroupV2Root(bufio.NewScanner(strings.NewReader("36 34 0:31 / /x rw - cgroup cgroup rw\n"))); err == nil {
		t.Error("v1-only layout: want an error")
	}
}

func TestParseBackend(t *testing.T) {
	for _, ok := range []string{"auto", "lsm", "cgroup"} {
		if _, err := ParseBackend(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if _, err := ParseBackend("nfqueue"); err == nil {
		t.Error("nfqueue accepted")
	}
}
