// Package systemd is the test ring with systemd as PID 1: it builds Tattle's .deb from the tree
// (packaging/build.sh, nfpm), boots a real Debian 12 made from Debian's packages with mmdebstrap
// (make-rootfs.sh, cached in /var/cache/tattle-rootfs) under qemu TCG with Debian's 6.1 cloud kernel (BPF LSM),
// and runs guest/check.sh in it: apt install of the package, the unit enabled and started, its security
// exposure, readiness and STATUS= through sd_notify, enforcement and holding under the unit's hardening,
// polkit and D-Bus activation, the watchdog restarting a SIGSTOPped helper, structured journald fields,
// rules and settings surviving a reboot, and `apt remove` leaving nothing attached.
//
// Results (each check, the figures, the package's files and size) go to $TATTLE_RESULTS_DIR/systemd.txt.
package systemd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// wantChecks are the checks guest/check.sh must report, all PASS.
var wantChecks = []string{
	"apt-install", "unit-enabled", "unit-active", "status-text", "notify-type", "security", "rule-add",
	"enforce-deny", "polkit-denies", "hold", "stopped", "enforce-while-stopped", "dbus-activation", "names", "no-problems",
	"enforce-while-hung", "watchdog", "enforce-after-restart", "journald", "mode-set",
	"boot-active", "before-network", "rule-survived", "enforce-after-reboot", "mode-survived",
	"apt-remove", "removed-pins", "removed-nft", "removed-unit", "removed-enforce",
}

func resultsDir(t *testing.T) string {
	dir := os.Getenv("TATTLE_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "output")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func kernelsDir() string {
	if d := os.Getenv("TATTLE_KERNELS"); d != "" {
		return d
	}
	return "/var/cache/tattle-kernels"
}

// prerequisites skips (or, with TATTLE_REQUIRE_VM=1, fails) when this ring cannot run here, saying why.
func prerequisites(t *testing.T) {
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "mmdebstrap", "mkfs.ext4", "depmod", "meson", "ninja", "go", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the image is unpacked with its owners)")
	}
	if _, err := os.Stat(filepath.Join(kernelsDir(), "bookworm", "vmlinuz")); err != nil {
		missing = append(missing, "the bookworm kernel (run tests/vm/fetch-kernels.sh "+kernelsDir()+")")
	}
	if len(missing) == 0 {
		return
	}
	msg := "systemd ring needs: " + strings.Join(missing, ", ") + " (tests/install-deps.sh installs them)"
	if os.Getenv("TATTLE_REQUIRE_VM") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func run(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSystemdMachine(t *testing.T) {
	prerequisites(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	var report []string
	add := func(format string, a ...any) { report = append(report, fmt.Sprintf(format, a...)) }
	results := resultsDir(t)
	defer func() {
		os.WriteFile(filepath.Join(results, "systemd.txt"), []byte(strings.Join(report, "\n")+"\n"), 0o644)
	}()
	add("systemd ring (tests/systemd): Debian 12 with systemd as PID 1 under qemu TCG, kernel %s",
		strings.TrimSpace(readFile(filepath.Join(kernelsDir(), "bookworm", "package"))))

	// The package, from the tree.
	start := time.Now()
	pkgDir := t.TempDir()
	run(t, ctx, "bash", "../../packaging/build.sh", pkgDir, "deb")
	debs, _ := filepath.Glob(filepath.Join(pkgDir, "tattle_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("packaging/build.sh made %v, want one tattle_*.deb", debs)
	}
	deb := debs[0]
	st, err := os.Stat(deb)
	if err != nil {
		t.Fatal(err)
	}
	add("package: %s, %d bytes (%.1f MiB), built in %s", filepath.Base(deb), st.Size(), float64(st.Size())/(1<<20),
		time.Since(start).Round(time.Second))
	add("package info:\n%s", indent(run(t, ctx, "dpkg-deb", "-f", deb, "Package", "Version", "Depends", "Installed-Size")))
	add("package files:\n%s", indent(run(t, ctx, "dpkg-deb", "-c", deb)))

	// The root file system (cached) and the disk image.
	start = time.Now()
	out := run(t, ctx, "bash", "make-rootfs.sh")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tarball := lines[len(lines)-1]
	add("root file system: %s (%s)", tarball, strings.TrimSpace(lines[0]))
	image := makeImage(t, ctx, tarball, deb)
	add("disk image made in %s", time.Since(start).Round(time.Second))

	// Two boots: check.sh powers off after each; the second is a cold reboot of the same disk.
	console := filepath.Join(results, "systemd-console.log")
	checks := filepath.Join(results, "systemd-checks.log")
	os.Remove(console)
	os.Remove(checks)
	for boot := 1; boot <= 2; boot++ {
		start = time.Now()
		bootCtx, bootCancel := context.WithTimeout(ctx, 15*time.Minute)
		q := exec.CommandContext(bootCtx, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "2",
			"-kernel", filepath.Join(kernelsDir(), "bookworm", "vmlinuz"),
			"-append", "root=/dev/nvme0n1 rw console=ttyS0 quiet loglevel=3 panic=-1 systemd.show_status=0 systemd.firstboot=off",
			"-drive", "file="+image+",if=none,id=root,format=raw", "-device", "nvme,drive=root,serial=tattle",
			"-display", "none", "-monitor", "none", "-nic", "none", "-no-reboot",
			"-serial", "file:"+console+fmt.Sprint(boot), "-serial", "file:"+checks+fmt.Sprint(boot))
		qout, qerr := q.CombinedOutput()
		bootCancel()
		if qerr != nil {
			t.Errorf("qemu boot %d: %v (after %s)\n%s", boot, qerr, time.Since(start).Round(time.Second), qout)
		}
		add("qemu boot %d with its checks: %s", boot, time.Since(start).Round(time.Second))
		appendFile(t, console, console+fmt.Sprint(boot))
		appendFile(t, checks, checks+fmt.Sprint(boot))
	}

	got := map[string]string{}
	var figures []string
	f, err := os.Open(checks)
	if err != nil {
		t.Fatalf("no check results: %v (console log: %s)", err, console)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fields := strings.SplitN(line, " ", 4)
		switch {
		case len(fields) >= 3 && fields[0] == "CHECK":
			detail := ""
			if len(fields) == 4 {
				detail = fields[3]
			}
			got[fields[1]] = fields[2]
			add("%-22s %s  %s", fields[1]+":", fields[2], detail)
			if fields[2] != "PASS" {
				t.Errorf("check %s failed: %s", fields[1], detail)
			}
		case len(fields) >= 2 && fields[0] == "FIGURE":
			figures = append(figures, strings.Join(fields[1:], " "))
		case fields[0] == "LOG" || fields[0] == "PHASE" || fields[0] == "PHASE-DONE":
			t.Log(line)
		}
	}
	for _, name := range wantChecks {
		if _, ok := got[name]; !ok {
			t.Errorf("check %s never reported (see %s and %s)", name, checks, console)
			add("%-22s %s", name+":", "MISSING")
		}
	}
	for name := range got {
		if !slices.Contains(wantChecks, name) {
			t.Errorf("check %s reported but not expected by the test", name)
		}
	}
	add("figures:")
	for _, fig := range figures {
		add("  %s", fig)
	}
}

// makeImage unpacks the root file system, adds the kernel's modules (for netfilter's on-demand loading), the
// package and the guest's check scripts, and makes a raw ext4 image of it.
func makeImage(t *testing.T, ctx context.Context, tarball, deb string) string {
	t.Helper()
	work := t.TempDir()
	root := filepath.Join(work, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "tar", "-xf", tarball, "-C", root, "--numeric-owner")
	mods, _ := filepath.Glob(filepath.Join(kernelsDir(), "bookworm", "modules", "*"))
	if len(mods) != 1 {
		t.Fatalf("kernel modules: %v, want one version directory", mods)
	}
	ver := filepath.Base(mods[0])
	run(t, ctx, "mkdir", "-p", filepath.Join(root, "usr/lib/modules"))
	run(t, ctx, "cp", "-a", mods[0], filepath.Join(root, "usr/lib/modules", ver))
	run(t, ctx, "depmod", "-b", root, ver)
	for src, dst := range map[string]string{
		"guest/check.sh":                "usr/local/sbin/tattle-vm-check",
		"guest/hold-check":              "usr/local/bin/hold-check",
		"guest/tattle-vm-check.service": "etc/systemd/system/tattle-vm-check.service",
		deb:                             "root/tattle.deb",
	} {
		run(t, ctx, "install", "-D", "-m", "0755", src, filepath.Join(root, dst))
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	run(t, ctx, "mkdir", "-p", wants)
	if err := os.Symlink("/etc/systemd/system/tattle-vm-check.service", filepath.Join(wants, "tattle-vm-check.service")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("tattle-vm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(work, "root.img")
	run(t, ctx, "truncate", "-s", "3G", image)
	run(t, ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, image)
	os.RemoveAll(root)
	return image
}

// appendFile moves the contents of part to the end of path.
func appendFile(t *testing.T, path, part string) {
	t.Helper()
	b, err := os.ReadFile(part)
	if err != nil {
		t.Logf("%s: %v", part, err)
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	os.Remove(part)
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
