package dayone

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/holdrig"
)

// pyLookupConnect resolves a name through the C library (getaddrinfo, as any program would) and connects to
// the first address: it prints "ADDR ok TIME", "ADDR timeout TIME", "ADDR ERRNO TIME" or "- resolve-failed".
const pyLookupConnect = `
import socket, sys, time, errno
name, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    ai = socket.getaddrinfo(name, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
except OSError as e:
    print("- resolve-failed", e); sys.exit(0)
fam, _, _, _, sa = ai[0]
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect(sa); out = "ok"
except socket.timeout:
    out = "timeout"
except OSError as e:
    out = errno.errorcode.get(e.errno, str(e.errno))
print(sa[0], out, "%.6f" % time.time(), flush=True)
`

// TestNewProgramIsAskedOnce: a program nobody made a rule for looks a name up (its DNS query allowed by the
// shipped factory rules) and connects to the host: one question, about the host under the name it looked up,
// and the connection completes once it is answered.
func TestNewProgramIsAskedOnce(t *testing.T) {
	factoryDir, shipped := shippedFactory(t)
	if shipped["factory-dns-udp"] == "" {
		t.Fatal("data/rules.d has no factory-dns-udp")
	}
	resolvers := filepath.Join(t.TempDir(), "resolv.conf")
	r := ring.NewRig(t, "dayone-askedonce", api.Settings{DefaultAction: api.DefaultDeny, SystemDefault: api.DefaultDeny, QuestionTimeout: 30},
		"-factory-dir", factoryDir, "-resolver-files", resolvers)
	ag := r.StartAgent(t)

	// The resolver in one namespace, the named host in another: the host's address is not the DNS server's.
	const name = "app.dayone.test"
	hosts := ring.NewNetns(t, 1)
	srv := hosts.TCPServer(t)
	hostAddr, port, _ := net.SplitHostPort(srv)
	resolver := dnsServer(t, r.NS, map[string]string{name: hostAddr})
	setResolvers(t, r, resolvers, resolver) // the machine's configured resolver, for the factory DNS rules
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver "+resolver+"\noptions timeout:2 attempts:1\n"), 0o644)
	script := filepath.Join(dir, "lookup.py")
	os.WriteFile(script, []byte(pyLookupConnect), 0o644)

	// A private mount namespace whose /etc/resolv.conf names the test's server (the machine's file is untouched).
	c := holdrig.Start(t, "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec python3 "$@"`, resolv, script, name, port, "40")
	ev := ag.Next(t, "question", 20*time.Second)
	q := ev.Question
	// A second question would come now, before the answer (the DNS query, had it been asked, came first and
	// held the lookup; anything else is asked at once).
	more := ag.CountQuestions(1500 * time.Millisecond)
	if c.Exited() {
		t.Fatalf("the program ended before the question was answered: %s", c.Output())
	}
	answered := ag.Answer(t, "a 1")
	out := strings.TrimSpace(c.Wait(t, 30*time.Second))
	more += ag.CountQuestions(time.Second)

	f := strings.Fields(out)
	outcome, connected := "", time.Time{}
	if len(f) == 3 {
		outcome = f[1]
		var sec float64
		fmt.Sscan(f[2], &sec)
		connected = time.Unix(0, int64(sec*1e9))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flows, err := r.API.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dnsRule := ""
	for _, fl := range flows {
		if fl.Dest == resolver+":53" && fl.Protocol == "udp" {
			dnsRule = fl.RuleID
		}
	}
	report.Add(t, "python3 (no rule of its own) resolving %s through getaddrinfo (resolver %s, DNS query allowed by %q) and connecting: %d question(s) (Host %q, %s:%d %s, Domain %q); answered allow once, connect %s %v after the answer",
		name, resolver, dnsRule, 1+more, q.Host, q.Addr, q.Port, q.Protocol, q.Domain, outcome, connected.Sub(answered).Round(time.Millisecond))

	if q.Port == 53 {
		t.Fatalf("the DNS query was asked about: %+v", q)
	}
	if more != 0 {
		t.Errorf("%d more questions, want exactly 1", more)
	}
	if q.Host != name || q.Addr != hostAddr || fmt.Sprint(q.Port) != port || q.Protocol != "tcp" {
		t.Errorf("question %+v, want host %s (%s:%s tcp)", q, name, hostAddr, port)
	}
	if f := strings.Fields(out); len(f) != 3 || f[0] != hostAddr || outcome != "ok" {
		t.Fatalf("program said %q, want %s ok", out, hostAddr)
	}
	if connected.Before(answered) {
		t.Errorf("connected at %v, before the answer at %v", connected, answered)
	}
	if !strings.HasPrefix(dnsRule, "factory-dns") {
		t.Errorf("the DNS query's flow shows rule %q, want a factory DNS rule", dnsRule)
	}
}
