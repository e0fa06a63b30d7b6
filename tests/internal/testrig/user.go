package testrig

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// User is an ordinary local account with a known password: polkit's auth_self asks the user's own password,
// which nobody (the usual unprivileged test user) does not have.
type User struct {
	Name     string
	UID      uint32
	Password string
}

// TestUserName is the account TestUser makes; it stays (tests of several packages share it).
const TestUserName = "tattle-test"

// TestUser makes (or reuses) the test account, with a regular uid (useradd picks one from UID_MIN up), and
// sets its password.
func TestUser(t testing.TB) User {
	t.Helper()
	u, err := user.Lookup(TestUserName)
	if err != nil {
		if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", TestUserName).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", TestUserName, err, out)
		}
		if u, err = user.Lookup(TestUserName); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	pw := "Tattle-test-pw-7"
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(TestUserName + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return User{Name: TestUserName, UID: uint32(uid), Password: pw}
}

// RunWithPassword runs argv as u on a terminal (util-linux script), where tattlectl starts polkit's text
// agent (pkttyagent); whenever the terminal shows "Password:" it types password, as the user would. It
// returns what the terminal showed and the exit code.
//
// polkit checks the password in its setuid helper, which reports to polkitd over the system bus at its
// standard path (a setuid program ignores DBUS_SYSTEM_BUS_ADDRESS): the command runs in a mount namespace of
// its own where bus's directory is mounted over /run/dbus, so the helper reaches the test's polkitd without
// the machine's own bus being touched.
func RunWithPassword(t testing.TB, bus *SystemBus, u User, password string, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	if err := os.MkdirAll("/run/dbus", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /run/dbus && shift && exec setpriv --reuid="$1" --regid="$1" --clear-groups -- script --quiet --return --command "$2" /dev/null`,
		"sh", bus.Dir, strconv.Itoa(int(u.UID)), strings.Join(quoted, " "))
	cmd.Env = bus.Env
	cmd.Dir = "/"
	stdin, stdout := Pipes(t, cmd)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start script: %v", err)
	}
	var out strings.Builder
	r := bufio.NewReader(stdout)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if strings.HasSuffix(strings.TrimRight(out.String(), " "), "Password:") {
			// pkttyagent switches echo off (flushing pending input) after its prompt: type once it has.
			time.Sleep(500 * time.Millisecond)
			io.WriteString(stdin, password+"\n")
			out.WriteString(" [typed]\n")
		}
		if err != nil {
			break
		}
	}
	stdin.Close()
	err := cmd.Wait()
	shown := ansi.ReplaceAllString(strings.ReplaceAll(out.String(), "\r", ""), "")
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	return shown, code
}

// ansi matches the colour codes pkttyagent writes (the terminal shows them as colours, not text).
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// String names the user for messages.
func (u User) String() string { return fmt.Sprintf("%s (uid %d)", u.Name, u.UID) }
