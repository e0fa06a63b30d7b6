// Package vm is the third test ring: it boots Debian's own kernels under qemu (TCG; KVM is not needed) with a
// small initramfs holding busybox and the statically linked behaviour suite, and runs the suite inside, where
// BPF LSM programs can load. Boots:
//
//   - bookworm's 6.1 and trixie's 6.12 cloud kernels: auto must choose the lsm backend; suite and benchmark
//   - bookworm's kernel with an lsm= list lacking bpf (Ubuntu's setup): auto must choose cgroup; suite
//
// Kernels come from tests/vm/fetch-kernels.sh (TATTLE_KERNELS, default /var/cache/tattle-kernels). Console logs
// and benchmark reports are kept in $TATTLE_RESULTS_DIR (default tests/output).
package vm

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type boot struct {
	name      string
	kernel    string // directory under TATTLE_KERNELS
	cmdline   string // extra kernel arguments
	env       []string
	bench     bool
	expectLSM bool
}

var boots = []boot{
	{name: "bookworm-lsm", kernel: "bookworm", expectLSM: true, bench: true,
		env: []string{"TATTLE_BACKEND=auto", "TATTLE_EXPECT_BACKEND=lsm", "TATTLE_EXPECT_BPF_LSM=yes"}},
	{name: "trixie-lsm", kernel: "trixie", expectLSM: true, bench: true,
		env: []string{"TATTLE_BACKEND=auto", "TATTLE_EXPECT_BACKEND=lsm", "TATTLE_EXPECT_BPF_LSM=yes"}},
	{name: "bookworm-no-bpf-lsm", kernel: "bookworm", cmdline: "lsm=landlock,lockdown,yama,apparmor",
		env: []string{"TATTLE_BACKEND=auto", "TATTLE_EXPECT_BACKEND=cgroup", "TATTLE_EXPECT_BPF_LSM=no"}},
}

func kernelsDir() string {
	if d := os.Getenv("TATTLE_KERNELS"); d != "" {
		return d
	}
	return "/var/cache/tattle-kernels"
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

// prerequisites skips (or, with TATTLE_REQUIRE_VM=1, fails) when the VM ring cannot run here.
func prerequisites(t *testing.T) {
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (busybox-static)")
	}
	for _, b := range boots {
		if _, err := os.Stat(filepath.Join(kernelsDir(), b.kernel, "vmlinuz")); err != nil {
			missing = append(missing, "kernel "+b.kernel+" (run tests/vm/fetch-kernels.sh "+kernelsDir()+")")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "VM ring needs: " + strings.Join(missing, ", ")
	if os.Getenv("TATTLE_REQUIRE_VM") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildStatic builds a static binary (or test binary with -c) for the guest.
func buildStatic(t *testing.T, out string, args ...string) {
	t.Helper()
	full := append([]string{args[0], "-o", out}, args[1:]...)
	cmd := exec.Command("go", full...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, msg)
	}
}

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "TATTLE-VM-BOOTED kernel=$(uname -r) clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) lsm=$(cat /sys/kernel/security/lsm)"
export TATTLE_REQUIRE_ROOT=1 TATTLE_CLIENT=/bin/tattle-testclient TATTLE_TATTLED=/bin/tattled
export TATTLE_RESULTS_DIR=/tmp/results HOME=/tmp TMPDIR=/tmp
cd /tmp
/bin/enforcement.test -test.v -test.count=1 -test.timeout=15m
suite=$?
bench=skipped
if [ "$TATTLE_VM_BENCH" = 1 ]; then
	TATTLE_BENCH_ROUNDS=9 TATTLE_BENCH_CONNECTS=3000 TATTLE_BENCH_MIN_RATIO=0.60 TATTLE_BENCH_MAX_COST_SHARE=0.10 /bin/bench.test -test.v -test.count=1 -test.timeout=10m
	bench=$?
fi
echo "TATTLE-VM-RESULT suite=$suite bench=$bench"
poweroff -f
`

// initramfs assembles an uncompressed newc cpio archive with busybox, the test binaries and /init.
func initramfs(t *testing.T, work string) string {
	t.Helper()
	root := filepath.Join(work, "root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	buildStatic(t, filepath.Join(root, "bin", "tattle-testclient"), "build", "github.com/tattlefw/tattle/tests/client")
	buildStatic(t, filepath.Join(root, "bin", "tattled"), "build", "github.com/tattlefw/tattle/helper/cmd/tattled")
	buildStatic(t, filepath.Join(root, "bin", "enforcement.test"), "test", "-c", "github.com/tattlefw/tattle/tests/enforcement")
	buildStatic(t, filepath.Join(root, "bin", "bench.test"), "test", "-c", "github.com/tattlefw/tattle/tests/bench")
	copyFile(t, "/bin/busybox", filepath.Join(root, "bin", "busybox"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/tmp:/bin/sh\nnobody:x:65534:65534::/tmp:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "initramfs.cpio")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+out)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, msg)
	}
	return out
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

var resultLine = regexp.MustCompile(`TATTLE-VM-RESULT suite=(\S+) bench=(\S+)`)

func TestKernelsUnderQEMU(t *testing.T) {
	prerequisites(t)
	work := t.TempDir()
	initrd := initramfs(t, work)
	results := resultsDir(t)

	// Boots run two at a time: each guest gets two vCPUs on a two-core machine, and TCG is CPU bound.
	sem := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for _, b := range boots {
		wg.Add(1)
		t.Run(b.name, func(t *testing.T) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			runBoot(t, b, initrd, results)
		})
	}
	wg.Wait()
}

func runBoot(t *testing.T, b boot, initrd, results string) {
	kdir := filepath.Join(kernelsDir(), b.kernel)
	pkg, _ := os.ReadFile(filepath.Join(kdir, "package"))
	t.Logf("booting %s (%s)", b.name, strings.TrimSpace(string(pkg)))
	env := append([]string{}, b.env...)
	if b.bench {
		env = append(env, "TATTLE_VM_BENCH=1")
	}
	cmdline := strings.Join(append([]string{"console=ttyS0", "quiet", "panic=-1", b.cmdline}, env...), " ")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "2",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd,
		"-append", cmdline, "-nographic", "-no-reboot", "-nic", "none")
	logPath := filepath.Join(results, "vm-"+b.name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		result    []string
		booted    string
		failures  []string
		benchText strings.Builder
		inBench   bool
	)
	sc := bufio.NewScanner(io.TeeReader(stdout, logFile))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.Contains(line, "TATTLE-VM-BOOTED"):
			// The firmware's escape sequences may precede it on the same line.
			booted = line[strings.Index(line, "TATTLE-VM-BOOTED"):]
			t.Logf("%s after %v", line, time.Since(start).Round(time.Millisecond))
		case strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "panic:"):
			failures = append(failures, line)
		case strings.Contains(line, "Tattle connect-rate benchmark"):
			inBench = true
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			result = m
		}
		if inBench {
			if strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "=== ") {
				inBench = false
			} else {
				benchText.WriteString(line + "\n")
			}
		}
	}
	waitErr := cmd.Wait()
	t.Logf("%s finished in %v; console log: %s", b.name, time.Since(start).Round(time.Second), logPath)
	if benchText.Len() > 0 {
		t.Logf("benchmark inside %s:\n%s", b.name, benchText.String())
		os.WriteFile(filepath.Join(results, "bench-connect-vm-"+b.name+".txt"), []byte(benchText.String()), 0o644)
	}
	if booted == "" {
		t.Fatalf("guest never reached /init (qemu: %v); see %s", waitErr, logPath)
	}
	if b.expectLSM != strings.Contains(booted, "bpf") {
		t.Errorf("guest LSM list %q: BPF LSM expected=%v", booted, b.expectLSM)
	}
	for _, f := range failures {
		t.Errorf("in guest: %s", f)
	}
	if result == nil {
		t.Fatalf("guest did not finish the suite (qemu: %v); see %s", waitErr, logPath)
	}
	if result[1] != "0" {
		t.Errorf("behaviour suite failed in %s (exit %s); see %s", b.name, result[1], logPath)
	}
	if b.bench && result[2] != "0" {
		t.Errorf("benchmark failed in %s (exit %s); see %s", b.name, result[2], logPath)
	}
}
