package dayone

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/holdrig"
	"github.com/tattlefw/tattle/tests/internal/testagent"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// dnsServer answers A queries for names in the namespace (UDP port 53 of its address).
func dnsServer(t *testing.T, n *holdrig.Netns, names map[string]string) string {
	t.Helper()
	var pc net.PacketConn
	n.Inside(t, func() {
		var err error
		pc, err = net.ListenPacket("udp4", n.PeerAddr+":53")
		if err != nil {
			t.Errorf("listen dns: %v", err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if addr, ok := names[strings.TrimSuffix(q.Name, ".")]; ok && q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A: net.ParseIP(addr).To4()})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return n.PeerAddr
}

// testUser makes a local account for the test's lifetime (removed after), in groups, with a password.
func testUser(t *testing.T, name, password string, groups ...string) uint32 {
	t.Helper()
	exec.Command("userdel", name).Run()
	args := []string{"-M", "-s", "/bin/sh"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	if password != "" {
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chpasswd: %v\n%s", err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uint32(uid)
}

// run runs a command and returns its combined output and error.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestSystemTrafficSurvivesDayOne: with only an ordinary user's agent, the system's own traffic (apt's
// download helper and name lookups as _apt, root's curl, a system user's UDP query) completes, none denied,
// each logged with why; an administrator's agent is asked about root's first connection to a new host, and
// its answer, after authentication through pkttyagent, makes a system rule.
func TestSystemTrafficSurvivesDayOne(t *testing.T) {
	for _, tool := range []string{"curl", "runuser", "unshare", "getent", "useradd", "pkttyagent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (see tests/install-deps.sh)", tool)
		}
	}
	r := ring.NewRig(t, "dayone-system", apiSettings(20))
	srv := r.NS.TCPServer(t)
	udp := r.NS.UDPServer(t)
	resolver := dnsServer(t, r.NS, map[string]string{"mirror.dayone.test": r.NS.PeerAddr})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver "+resolver+"\noptions timeout:2 attempts:1\n"), 0o644)

	person := testUser(t, "tattle-d1-user", "")
	ord := r.StartAgentCmd(t, userCmd(person, testrig.Tattlectl(t), "agent", "--json"))
	logFrom := r.Log.Len()
	url := "http://" + srv + "/"

	type step struct {
		what string
		out  string
		err  error
	}
	var steps []step
	out, err := run(t, "unshare", "-m", "sh", "-c", "mount --bind "+resolv+" /etc/resolv.conf && exec runuser -u _apt -- getent ahostsv4 mirror.dayone.test")
	steps = append(steps, step{"name lookup through the C library as _apt (getent)", out, err})
	if err == nil && !strings.Contains(out, r.NS.PeerAddr) {
		err = fmt.Errorf("resolved to %q", out)
		steps[len(steps)-1].err = err
	}
	out, err = run(t, "runuser", "-u", "_apt", "--", "curl", "-sS", "-m", "10", url)
	steps = append(steps, step{"HTTP GET as _apt (runuser curl)", out, err})
	out, err = run(t, "curl", "-sS", "-m", "10", url)
	steps = append(steps, step{"root's curl", out, err})
	app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "sysudp")
	res := testrig.RunApp(t, app, testrig.RunOpts{UID: 65534}, "udp", udp)
	steps = append(steps, step{"UDP query from a system user (nobody)", fmt.Sprintf("%+v", res), map[bool]error{true: nil, false: fmt.Errorf("not echoed")}[res.Echoed]})
	for _, s := range steps {
		if s.err != nil || (strings.Contains(s.what, "curl") && strings.TrimSpace(s.out) != "ok") {
			t.Errorf("%s failed: %v: %s", s.what, s.err, s.out)
		}
	}
	ord.Quiet(t, 300*time.Millisecond) // the ordinary user is never asked about the system's traffic

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flows, err := r.API.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	denied, nobody := 0, 0
	for _, f := range flows {
		if strings.HasPrefix(f.Dest, r.NS.PeerAddr+":") {
			denied += int(f.Denied)
			if f.RuleID == "allowed: nobody to ask" {
				nobody++
			}
		}
	}
	why := 0
	var whyLines []string
	for _, l := range r.Log.Since(logFrom) {
		if strings.Contains(l, "system process, no administrator's agent") {
			why++
			whyLines = append(whyLines, l)
		}
	}
	ok := 0
	for _, s := range steps {
		if s.err == nil {
			ok++
		}
		report.Add(t, "%s: %s", s.what, map[bool]string{true: "completed", false: "FAILED"}[s.err == nil])
	}
	report.Add(t, "only an ordinary user's agent: %d of %d completed, %d denied attempts, %d flows shown as \"allowed: nobody to ask\", %d questions settled by the system default (logged with why)",
		ok, len(steps), denied, nobody, why)
	if denied != 0 {
		t.Errorf("%d attempts denied", denied)
	}
	if why < 3 {
		t.Errorf("%d system-default decisions logged, want one per program (3 or more):\n%s", why, strings.Join(whyLines, "\n"))
	}

	t.Run("administrator", func(t *testing.T) {
		const password = "dayone-Pw-1"
		admin := testUser(t, "tattle-d1-admin", password, "sudo")
		tty := newPTY(t, admin)
		ag := startTTYAgent(t, r, admin, tty)
		r.Log.WaitFor(t, "administrator=true", 0)
		srv2 := r.NS.TCPServer(t)
		c := holdrig.Start(t, "curl", "-sS", "-m", "30", "http://"+srv2+"/")
		q := ag.Next(t, "question", 10*time.Second).Question
		if !q.System {
			t.Errorf("root's question is not marked System: %+v", q)
		}
		// The answer counts only once its administrator authenticated: a wrong password (someone at an
		// administrator's unlocked terminal) makes no rule and lets nothing through.
		answered := ag.Answer(t, "a")
		tty.authenticate(t, "tattle-d1-admin", "not-"+password)
		out := c.Wait(t, 30*time.Second)
		var rule *api.Rule
		for _, ru := range r.Rules(t) {
			if strings.HasSuffix(ru.Application, "curl") && strings.Contains(ru.Remote, r.NS.PeerAddr) {
				ru := ru
				rule = &ru
			}
		}
		authFailed := strings.Contains(tty.text(), "AUTHENTICATION FAILED")
		report.Add(t, "administrator's agent: root's curl to a new host asked there (System=%v); answered Allow, pkttyagent asked for the password, a wrong one given (failed: %v): curl %q %v after the answer, rule made: %v",
			q.System, authFailed, strings.TrimSpace(out), c.End.Sub(answered).Round(time.Millisecond), rule != nil)
		if strings.TrimSpace(out) == "ok" || rule != nil {
			t.Errorf("an unauthenticated answer counted: curl %q, rule %+v\npty: %s", out, rule, tty.text())
		}
		if !authFailed {
			t.Errorf("pkttyagent did not report the failed authentication:\n%s", tty.text())
		}

		// The administrator's own password: the connection completes and a system rule is made.
		srv3 := r.NS.TCPServer(t)
		c3 := holdrig.Start(t, "curl", "-sS", "-m", "30", "http://"+srv3+"/")
		q3 := ag.Next(t, "question", 10*time.Second).Question
		answered = ag.Answer(t, "a")
		tty.authenticate(t, "tattle-d1-admin", password)
		out3 := c3.Wait(t, 30*time.Second)
		_, port3, _ := net.SplitHostPort(srv3)
		var made *api.Rule
		for _, ru := range r.Rules(t) {
			// The remote is the host the address was looked up as (or the address): the port tells it apart.
			if strings.HasSuffix(ru.Application, "curl") && ru.Port == port3 {
				ru := ru
				made = &ru
			}
		}
		madeText := "none"
		if made != nil {
			madeText = fmt.Sprintf("%s %s:%s for everyone=%v", made.ID, made.Remote, made.Port, made.Owner == api.NoOwner)
		}
		report.Add(t, "the administrator's password given for the next question (System=%v): curl %q %v after the answer, system rule made: %s",
			q3.System, strings.TrimSpace(out3), c3.End.Sub(answered).Round(time.Millisecond), madeText)
		if strings.TrimSpace(out3) != "ok" || made == nil || made.Owner != api.NoOwner {
			t.Errorf("an authenticated administrator's answer: curl %q, rule %+v\npty: %s", out3, made, tty.text())
		}
	})
}

// startTTYAgent starts `tattlectl agent --json` as uid with tty as its controlling terminal, where its
// pkttyagent asks for passwords. polkit checks a password in its setuid helper, which reports to polkitd over
// the system bus at its standard path (a setuid program ignores DBUS_SYSTEM_BUS_ADDRESS): the agent runs in a
// mount namespace of its own with the test bus's directory over /run/dbus (as testrig.RunWithPassword does),
// keeping the user's groups.
func startTTYAgent(t *testing.T, r *holdrig.Rig, uid uint32, tty *pty) *testagent.Agent {
	t.Helper()
	if err := os.MkdirAll("/run/dbus", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /run/dbus && exec setpriv --reuid="$2" --regid="$3" --init-groups -- "$4" agent --json`,
		"sh", r.Dir, strconv.Itoa(int(uid)), strconv.Itoa(int(primaryGID(uid))), testrig.Tattlectl(t))
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{tty.slave}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 3}
	return r.StartAgentCmd(t, cmd)
}

// primaryGID is uid's primary group (its own group, else nogroup).
func primaryGID(uid uint32) uint32 {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			return uint32(g)
		}
	}
	return 65534
}

// userCmd runs a command as uid (its primary group: the uid's own group or nogroup).
func userCmd(uid uint32, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	gid := uid
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = uint32(g)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	return cmd
}

// pty is a pseudo-terminal: the agent's controlling terminal, where pkttyagent asks for the password.
type pty struct {
	master, slave *os.File
	mu            sync.Mutex
	buf           bytes.Buffer
	answered      int // how much of buf earlier authentications used: each looks only at what came after
}

func newPTY(t *testing.T, owner uint32) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	os.Chown(name, int(owner), -1)
	s, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &pty{master: m, slave: s}
	go func() {
		b := make([]byte, 4096)
		for {
			k, err := m.Read(b)
			if k > 0 {
				p.mu.Lock()
				p.buf.Write(b[:k])
				p.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { s.Close(); m.Close() })
	return p
}

func (p *pty) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

var identityLine = regexp.MustCompile(`(?m)^\s*(\d+)\.\s+.*\(([^)]+)\)`)

// authenticate answers pkttyagent on the terminal: picks the user's identity when asked to choose, then types
// the password.
func (p *pty) authenticate(t *testing.T, name, password string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	chose := false
	for time.Now().Before(deadline) {
		all := p.text()
		txt := all[p.answered:]
		if !chose && strings.Contains(txt, "Choose identity") {
			for _, m := range identityLine.FindAllStringSubmatch(txt, -1) {
				if m[2] == name {
					p.master.WriteString(m[1] + "\n")
					chose = true
				}
			}
		}
		if strings.Contains(txt, "Password:") {
			// The agent turns echo off after its prompt, discarding input typed before (TCSAFLUSH): type as
			// a person would, a moment later.
			time.Sleep(time.Second)
			p.master.WriteString(password + "\n")
			p.answered = len(all)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pkttyagent did not ask for a password; terminal said:\n%s", p.text())
}
