// Command leftovers removes what test runs that were killed left in the kernel: the pinned programs of a test's
// helper (still attached to the root cgroup, marking and deciding every socket), its nftables table (still
// queueing held packets to a queue nobody reads) and its network namespaces. Another run's leftovers make
// every later test of the suite fail in ways that say nothing about the code, so tests/run-all.sh runs this
// first. Only leftovers are touched: a pin directory or namespace whose test process (the PID in its name)
// is gone, a table no running tattled was started with and whose test process (where its name has one) is gone.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/netfilter"
)

// The names the test rigs give (testrig.PinDir, the rigs' -nft-table and namespace names).
var (
	pinDirName = regexp.MustCompile(`^tattle-test-.*-([0-9]+)$`)
	netnsName  = regexp.MustCompile(`^tattle-.*-([0-9]+)-[0-9]+$`)
	// Tables a test installs itself, without a tattled (tests/bench, tests/holding-kernel), carry its PID.
	pidTable = regexp.MustCompile(`^tattle-(?:bench|hk)-([0-9]+)(?:-[0-9]+)?$`)
)

func main() {
	n, err := sweep()
	if err != nil {
		fmt.Fprintln(os.Stderr, "leftovers:", err)
		os.Exit(1)
	}
	fmt.Printf("leftovers of killed test runs removed: %d\n", n)
}

func sweep() (int, error) {
	live, err := liveTattledArgs()
	if err != nil {
		return 0, err
	}
	removed := 0
	dirs, _ := filepath.Glob("/sys/fs/bpf/tattle-test-*")
	for _, dir := range dirs {
		m := pinDirName.FindStringSubmatch(filepath.Base(dir))
		if m == nil || alive(m[1]) || live[dir] {
			continue
		}
		if err := enforce.Uninstall(dir); err != nil {
			return removed, fmt.Errorf("remove the pinned programs of a killed test run: %w", err)
		}
		fmt.Println("removed pinned programs", dir)
		removed++
	}

	conn, err := nftables.New()
	if err != nil {
		return removed, fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return removed, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if !isTestTable(t.Name) || live[t.Name] {
			continue
		}
		if m := pidTable.FindStringSubmatch(t.Name); m != nil && alive(m[1]) {
			continue
		}
		if err := netfilter.Uninstall(t.Name); err != nil {
			return removed, fmt.Errorf("remove the table of a killed test run: %w", err)
		}
		fmt.Println("removed nftables table", t.Name)
		removed++
	}

	nss, _ := os.ReadDir("/run/netns")
	for _, ns := range nss {
		m := netnsName.FindStringSubmatch(ns.Name())
		if m == nil || alive(m[1]) {
			continue
		}
		path := filepath.Join("/run/netns", ns.Name())
		if err := unmountNamespace(path); err != nil {
			return removed, err
		}
		fmt.Println("removed network namespace", ns.Name())
		removed++
	}
	return removed, nil
}

// isTestTable tells the tables of the test rigs from everything else, the production table included.
func isTestTable(name string) bool {
	for _, p := range []string{"tattle_test", "tattle-test", "tattle-hk-", "tattle-bench"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// alive tells whether the process pid runs.
func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return false
	}
	_, err = os.Stat("/proc/" + strconv.Itoa(n))
	return err == nil
}

// liveTattledArgs lists the pin directories and tables the running tattled processes were started with.
func liveTattledArgs() (map[string]bool, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	live := map[string]bool{}
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if filepath.Base(args[0]) != "tattled" {
			continue
		}
		for i := 1; i+1 < len(args); i++ {
			if args[i] == "-pin-dir" || args[i] == "-nft-table" {
				live[args[i+1]] = true
			}
		}
	}
	return live, nil
}

// unmountNamespace removes a named network namespace the way ip-netns(8) does: its bind mount, then the file.
func unmountNamespace(path string) error {
	// EINVAL: not mounted (any more), only the file is left.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}
