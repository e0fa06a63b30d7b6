// Package metrics proves the engines fleets already run get Tattle's decisions: a real Prometheus server
// (Debian's) scrapes tattled's metrics endpoint on loopback and its query API returns the decisions and bytes
// of the test's programs; a real systemd-journald, started by the test in a mount namespace of its own (PID 1
// is not systemd here), receives tattled's decision records, read back with journalctl.
package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

var report = testrig.NewReport("metrics.txt")

const journald = "/lib/systemd/systemd-journald"

func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed (tests/install-deps.sh installs it): %v", name, err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBuffer keeps a process's output for the failure message.
type logBuffer struct{ bytes.Buffer }

// runForTest starts cmd, its output going to out, and stops it when the test ends: an interrupt, then a kill
// if it has not exited after grace.
func runForTest(t *testing.T, cmd *exec.Cmd, out *logBuffer, grace time.Duration) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			cmd.Process.Kill()
			<-done
		}
	})
}

// startJournald runs systemd-journald in a new mount namespace: its own /run/systemd (where it binds
// /run/systemd/journal/socket, the path every journal client writes to), its journal files in dir (bound over
// /run/log) and a configuration of the test's (volatile storage, no rate limit, no forwarding). It returns
// journald's PID: tattled joins its mount namespace, so it finds this journald and no other.
func startJournald(t *testing.T, dir string) (int, *logBuffer) {
	t.Helper()
	if _, err := os.Stat(journald); err != nil {
		t.Fatalf("systemd-journald is needed (apt-get install systemd): %v", err)
	}
	logs := filepath.Join(dir, "log")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "journald.conf")
	os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitBurst=0\nRateLimitIntervalSec=0\nForwardToSyslog=no\n"+
		"ForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\nReadKMsg=no\nAudit=no\n"), 0o644)
	script := `set -e
mount -t tmpfs -o mode=0755 tattle-journal /run/systemd
mount --bind "$1" /run/log
mount --bind "$2" /etc/systemd/journald.conf
exec "$3"`
	cmd := exec.Command(need(t, "unshare"), "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", logs, conf, journald)
	out := new(logBuffer)
	runForTest(t, cmd, out, 5*time.Second)
	pid := cmd.Process.Pid // unshare and sh exec: the same process becomes journald
	sock := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", pid)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == os.ModeSocket {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-journald did not open %s:\n%s", sock, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pid, out
}

// startPrometheus runs Debian's Prometheus on loopback, scraping target every second.
func startPrometheus(t *testing.T, dir, target string) string {
	t.Helper()
	bin := need(t, "prometheus")
	port := freePort(t)
	conf := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"+
		"scrape_configs:\n  - job_name: tattle\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['%s']\n", target)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	out := new(logBuffer)
	// Registered first, so it runs after runForTest's stop and shows all prometheus wrote.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus:\n%s", out.String())
		}
	})
	runForTest(t, cmd, out, 10*time.Second)
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not become ready:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query asks Prometheus's HTTP API for an instant vector.
func query(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s: %s", q, err, r.Error, body)
	}
	return r.Data.Result
}

// waitValue polls Prometheus until q returns one sample accepted by ok (or the deadline), and returns its value.
func waitValue(t *testing.T, base, q string, ok func(float64) bool) (float64, time.Duration) {
	t.Helper()
	start := time.Now()
	var last []promSample
	for time.Since(start) < 30*time.Second {
		last = query(t, base, q)
		if len(last) == 1 {
			s, _ := last[0].Value[1].(string)
			v, err := strconv.ParseFloat(s, 64)
			if err == nil && ok(v) {
				return v, time.Since(start)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("prometheus: %s gave %v for 30 s", q, last)
	return 0, 0
}

// journalRecords reads the records of app back from the test's journal files.
func journalRecords(t *testing.T, dir, app string) []map[string]any {
	t.Helper()
	return journalRecordsMatching(t, dir, "TATTLE_APP="+app)
}

// journalRecordsMatching reads the records matching a journalctl field match.
func journalRecordsMatching(t *testing.T, dir, match string) []map[string]any {
	t.Helper()
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Fatal(err)
	}
	jdir := filepath.Join(dir, "log", "journal", strings.TrimSpace(string(mid)))
	out, err := exec.Command(need(t, "journalctl"), "--directory="+jdir, "-o", "json", "--no-pager", match).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Logf("journalctl: %s", ee.Stderr)
		}
		return nil
	}
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("journalctl -o json: %v: %s", err, sc.Bytes())
		}
		recs = append(recs, m)
	}
	return recs
}

func TestPrometheusAndJournal(t *testing.T) {
	curlPath := need(t, "curl")
	python := "/usr/bin/python3" // Debian's: an interpreter tattled identifies scripts of (not a pyenv shim in PATH)
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("Debian's python3 is needed: %v", err)
	}
	nsenter := need(t, "nsenter")
	dir := t.TempDir()
	jpid, jlog := startJournald(t, dir)

	ns := testrig.NewNetns(t, "t16m", 18)
	const port = 15218
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	const size = 1 << 20
	os.WriteFile(filepath.Join(www, "blob"), bytes.Repeat([]byte("tattle16"), size/8), 0o644)
	srv := ns.Command(python, "-m", "http.server", "--bind", ns.NsV4.String(), "--directory", www, strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	mport := freePort(t)
	endpoint := fmt.Sprintf("127.0.0.1:%d", mport)
	table := fmt.Sprintf("tattle-t16m-%d", os.Getpid())
	t.Cleanup(func() { netfilter.Uninstall(table) })
	b := testrig.StartTattleBusWrapped(t, "metrics", []string{nsenter, fmt.Sprintf("--mount=/proc/%d/ns/mnt", jpid), "--"},
		"-nft-table", table, "-queue", "7463", "-metrics-listen", endpoint)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus and tattled:\n%s", b.Log)
		}
	})
	apps := testrig.AppDir(t)
	// A script run by the real interpreter: its records name the interpreter and the script (TATTLE_VIA).
	pyExe, err := filepath.EvalSymlinks(python)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(apps, "sync-photos.py")
	os.WriteFile(script, []byte("import socket, sys, time\ntime.sleep(0.5)\ns = socket.socket()\ns.settimeout(5)\n"+
		"try:\n    s.connect((sys.argv[1], int(sys.argv[2])))\n    print('connected')\nexcept OSError as e:\n    print(e)\n"), 0o644)
	denied := testrig.CopyApp(t, curlPath, apps, "curl-denied")
	named := testrig.CopyApp(t, curlPath, apps, "curl-named")
	allowed := testrig.CopyApp(t, curlPath, apps, "curl-allowed")
	for _, r := range [][]string{
		{"--deny", "--app", denied, "--remote", ns.NsV4.String(), "--id", "t16-deny-curl"},
		{"--allow", "--app", allowed, "--remote", ns.NsV4.String(), "--id", "t16-allow-curl"},
		{"--deny", "--app", pyExe, "--via", script, "--remote", ns.NsV4.String(), "--id", "t16-deny-script"},
		// A program that looks its host up first: its DNS query allowed, its connection denied.
		{"--allow", "--app", named, "--remote", ns.NsV4.String(), "--port", "53", "--protocol", "udp", "--id", "t16-named-dns"},
		{"--deny", "--app", named, "--remote", ns.NsV4.String(), "--port", strconv.Itoa(port), "--id", "t16-deny-named"},
	} {
		if out, errOut, code := b.Ctl(t, 0, append([]string{"rules", "add"}, r...)...); code != 0 {
			t.Fatalf("rules add: %d %s %s", code, out, errOut)
		}
	}
	// The endpoint answers once tattled runs.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + endpoint + "/metrics")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tattled's metrics endpoint %s does not answer: %v\n%s", endpoint, err, b.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	prom := startPrometheus(t, dir, endpoint)
	time.Sleep(200 * time.Millisecond)

	dest := fmt.Sprintf("%s:%d", ns.NsV4, port)
	if out, err := exec.Command(denied, "-sS", "--max-time", "5", "http://"+dest+"/blob", "-o", "/dev/null").CombinedOutput(); err == nil {
		t.Fatalf("the denied program connected: %s", out)
	}
	// Two fetches: the first may be held while the helper decides it (then its verdict is cached in the
	// kernel's flow table), the second is decided in the kernel. Both are counted (their records are made
	// at connect(), DESIGN.md, Traffic accounting); the bounds below allow for one or both.
	for i := 0; i < 2; i++ {
		got, err := exec.Command(allowed, "-sS", "--max-time", "10", "http://"+dest+"/blob").Output()
		if err != nil || len(got) != size {
			t.Fatalf("the allowed program fetched %d bytes (%v), want %d", len(got), err, size)
		}
	}

	deniedQ := fmt.Sprintf(`tattle_app_decisions_total{app=%q,verdict="deny"}`, denied)
	v, waited := waitValue(t, prom, deniedQ, func(float64) bool { return true })
	if v != 1 {
		t.Errorf("%s = %v, want 1 (one flow, decided once)", deniedQ, v)
	}
	allowedQ := fmt.Sprintf(`tattle_app_decisions_total{app=%q,verdict="allow"}`, allowed)
	va, _ := waitValue(t, prom, allowedQ, func(float64) bool { return true })
	if va != 1 {
		t.Errorf("%s = %v, want 1", allowedQ, va)
	}
	// Per-application bytes are the kernel's flow counters (tattlectl monitor shows the same), summed per
	// application and kept monotonic: once they are quiet, Prometheus must hold exactly the monitor's sum.
	counted := monitorBytes(t, b, allowed)
	time.Sleep(2 * time.Second) // a scrape after the monitor's read
	rxQ := fmt.Sprintf(`tattle_app_received_bytes_total{app=%q}`, allowed)
	rx, rxWait := waitValue(t, prom, rxQ, func(v float64) bool { return v == float64(counted) })
	if counted == 0 {
		// The kernel's byte counters (bpf/traffic.c) counted nothing: tests/traffic fails the same way.
		t.Errorf("the kernel counted no received bytes for the allowed curl copy's %d-byte fetch (tests/traffic checks the counters)", size)
	} else if counted < size || rx < size || rx > 2*size*1.05 {
		t.Errorf("%s = %v, the monitor %d: want at least the %d bytes of the fetch decided in the kernel, at most both fetches (plus headers)", rxQ, rx, counted, size)
	}
	up, _ := waitValue(t, prom, `up{job="tattle"}`, func(v float64) bool { return v == 1 })
	flows, _ := waitValue(t, prom, `tattle_map_entries{map="flows"}`, func(v float64) bool { return v >= 2 })
	flowsMax, _ := waitValue(t, prom, `tattle_map_max_entries{map="flows"}`, func(float64) bool { return true })
	lost, _ := waitValue(t, prom, `tattle_kernel_events_lost_total`, func(float64) bool { return true })
	byVerdict, _ := waitValue(t, prom, `tattle_decisions_total{verdict="deny"}`, func(v float64) bool { return v >= 1 })
	report.Add(t, "a real Prometheus 2.42 (Debian's) scraping tattled's loopback endpoint every 1 s: %s = %v (seen after %v); "+
		"%s = %v; received bytes of the allowed curl copy %v (the monitor: the same) for two fetches of a %d-byte file (seen after %v); up=%v; flows map %v/%v entries; "+
		"kernel events lost %v; all denials %v", deniedQ, v, waited.Round(100*time.Millisecond), allowedQ, va, rx, size,
		rxWait.Round(100*time.Millisecond), up, flows, flowsMax, lost, byVerdict)

	// The journal: the same decision, every field, read back with journalctl from the test's journald.
	var recs []map[string]any
	deadline = time.Now().Add(15 * time.Second)
	for len(recs) == 0 && time.Now().Before(deadline) {
		recs = journalRecords(t, dir, denied)
		time.Sleep(200 * time.Millisecond)
	}
	if len(recs) == 0 {
		t.Fatalf("no journal record of %s; journald:\n%s\ntattled:\n%s", denied, jlog.String(), b.Log)
	}
	if len(recs) != int(v) {
		t.Errorf("%d journal records of %s, the decisions counter says %v", len(recs), denied, v)
	}
	r := recs[0]
	pid, _ := b.TattledPID(t, b.Connect(t))
	want := map[string]string{"TATTLE_APP": denied, "TATTLE_DEST": dest, "TATTLE_PROTO": "tcp", "TATTLE_VERDICT": "deny",
		"TATTLE_RULE": "t16-deny-curl", "TATTLE_UID": "0", "TATTLE_USER": "root", "SYSLOG_IDENTIFIER": "tattled",
		"PRIORITY": "5", "_PID": strconv.Itoa(int(pid)), "_UID": "0"}
	for k, x := range want {
		if s, _ := r[k].(string); s != x {
			t.Errorf("journal record %s = %v, want %q", k, r[k], x)
		}
	}
	for _, k := range []string{"TATTLE_VIA", "TATTLE_HOST"} {
		if _, ok := r[k]; ok {
			t.Errorf("journal record has %s = %v for a program that runs no script and looked up no name", k, r[k])
		}
	}
	msg, _ := r["MESSAGE"].(string)
	if !strings.Contains(msg, "denied") || !strings.Contains(msg, denied) || !strings.Contains(msg, dest) || !strings.Contains(msg, "t16-deny-curl") {
		t.Errorf("journal MESSAGE %q does not say what was denied", msg)
	}
	at, _ := strconv.ParseInt(fmt.Sprint(r["TATTLE_TIME_USEC"]), 10, 64)
	if d := time.Since(time.UnixMicro(at)); d < 0 || d > 5*time.Minute {
		t.Errorf("TATTLE_TIME_USEC %v is not the attempt's time", r["TATTLE_TIME_USEC"])
	}
	allowedRecs := journalRecords(t, dir, allowed)
	if len(allowedRecs) != 1 || allowedRecs[0]["TATTLE_VERDICT"] != "allow" || allowedRecs[0]["TATTLE_RULE"] != "t16-allow-curl" {
		t.Errorf("journal records of the allowed program: %v", allowedRecs)
	}
	out, err := exec.Command(pyExe, script, ns.NsV4.String(), strconv.Itoa(port)).CombinedOutput()
	if err != nil || strings.Contains(string(out), "connected") {
		t.Errorf("the denied script: %v %s", err, out)
	}
	var sr []map[string]any
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		sr = nil
		for _, x := range journalRecords(t, dir, pyExe) {
			if x["TATTLE_VIA"] == script {
				sr = append(sr, x)
			}
		}
		if len(sr) > 0 && sr[len(sr)-1]["TATTLE_VERDICT"] == "deny" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(sr) == 0 {
		t.Fatalf("no journal record of %s via %s", pyExe, script)
	}
	last := sr[len(sr)-1]
	for k, x := range map[string]string{"TATTLE_APP": pyExe, "TATTLE_VIA": script, "TATTLE_DEST": dest, "TATTLE_VERDICT": "deny",
		"TATTLE_RULE": "t16-deny-script", "TATTLE_USER": "root"} {
		if s, _ := last[k].(string); s != x {
			t.Errorf("the script's journal record %s = %v, want %q", k, last[k], x)
		}
	}
	// The host name: curl-named resolves photos.t16.test through a DNS server in the namespace (a private
	// mount namespace gives it a resolv.conf naming that server), then connects and is denied.
	const host = "photos.t16.test"
	startDNS(t, ns, host)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver "+ns.NsV4.String()+"\noptions timeout:2 attempts:2\n"), 0o644)
	out, err = exec.Command(need(t, "unshare"), "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$1" -sS --max-time 5 -o /dev/null "$2"`, resolv, named,
		fmt.Sprintf("http://%s:%d/blob", host, port)).CombinedOutput()
	if err == nil {
		t.Errorf("the denied named program connected: %s", out)
	}
	var nr []map[string]any
	deadline = time.Now().Add(15 * time.Second)
	for len(nr) == 0 && time.Now().Before(deadline) {
		for _, x := range journalRecords(t, dir, named) {
			if x["TATTLE_VERDICT"] == "deny" {
				nr = append(nr, x)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(nr) == 0 {
		t.Fatalf("no journal record of the denied %s (curl: %s)", named, out)
	}
	for k, x := range map[string]string{"TATTLE_HOST": host, "TATTLE_DEST": dest, "TATTLE_RULE": "t16-deny-named", "TATTLE_PROTO": "tcp"} {
		if s, _ := nr[0][k].(string); s != x {
			t.Errorf("the named program's journal record %s = %v, want %q", k, nr[0][k], x)
		}
	}
	report.Add(t, "the record of a program that looked its host up: MESSAGE=%q (TATTLE_HOST=%v)", nr[0]["MESSAGE"], nr[0]["TATTLE_HOST"])
	report.Add(t, "the denied script's record: MESSAGE=%q (TATTLE_APP=%v TATTLE_VIA=%v); %d record(s) of it", last["MESSAGE"], last["TATTLE_APP"], last["TATTLE_VIA"], len(sr))
	report.Add(t, "a real systemd-journald (the test's, in its own mount namespace) got %d record(s) of the denied curl copy, read with journalctl -o json: MESSAGE=%q, "+
		"TATTLE_DEST=%v TATTLE_PROTO=%v TATTLE_VERDICT=%v TATTLE_RULE=%v TATTLE_UID=%v TATTLE_USER=%v _PID=%v (tattled)",
		len(recs), msg, r["TATTLE_DEST"], r["TATTLE_PROTO"], r["TATTLE_VERDICT"], r["TATTLE_RULE"], r["TATTLE_UID"], r["TATTLE_USER"], r["_PID"])
}

// startDNS answers A queries for host with the namespace's address, on port 53 inside the namespace.
func startDNS(t *testing.T, ns *testrig.Netns, host string) {
	t.Helper()
	var pc net.PacketConn
	var lerr error
	f, err := os.Open("/var/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is never unlocked: it dies with this goroutine rather than return to the pool inside.
		runtime.LockOSThread()
		if lerr = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); lerr == nil {
			pc, lerr = net.ListenPacket("udp4", ns.NsV4.String()+":53")
		}
	}()
	<-done
	if lerr != nil {
		t.Fatalf("dns listen: %v", lerr)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && strings.EqualFold(q.Question[0].Name, mdns.Fqdn(host)) && q.Question[0].Qtype == mdns.TypeA {
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: mdns.Fqdn(host), Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
				A: net.IP(ns.NsV4.AsSlice())}}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// monitorBytes is what tattlectl monitor shows app received, summed over its flows, once it stops changing.
func monitorBytes(t *testing.T, b *testrig.TattleBus, app string) uint64 {
	t.Helper()
	var last uint64
	stable := 0
	for i := 0; i < 40 && stable < 3; i++ {
		var sum uint64
		for _, f := range testrig.MonitorFlows[struct {
			Exe      string `json:"exe"`
			Received uint64 `json:"received_bytes"`
		}](t, b) {
			if f.Exe == app {
				sum += f.Received
			}
		}
		if sum == last {
			stable++
		} else {
			stable = 0
		}
		last = sum
		time.Sleep(time.Second)
	}
	return last
}

// An endpoint other hosts could reach is refused before anything starts.
func TestNonLoopbackEndpointRefused(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9772", "10.1.2.3:9772", "[::]:9772", "localhost:9772"} {
		cmd := exec.Command(testrig.Build(t).Tattled, "-bus", "none", "-metrics-listen", addr)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "loopback") {
			t.Errorf("tattled -metrics-listen %s: %v: %s; want exit 2 naming loopback", addr, err, out)
		}
	}
	report.Add(t, "tattled -metrics-listen with 0.0.0.0, 10.1.2.3, [::] and a host name: refused with exit 2 before anything starts")
}

// -journal-records=false: journald runs, decisions are still made and counted, but none is recorded.
func TestJournalRecordsOff(t *testing.T) {
	curlPath := need(t, "curl")
	dir := t.TempDir()
	jpid, _ := startJournald(t, dir)
	ns := testrig.NewNetns(t, "t16o", 19)
	mport := freePort(t)
	endpoint := fmt.Sprintf("127.0.0.1:%d", mport)
	table := fmt.Sprintf("tattle-t16o-%d", os.Getpid())
	t.Cleanup(func() { netfilter.Uninstall(table) })
	b := testrig.StartTattleBusWrapped(t, "metrics-off", []string{need(t, "nsenter"), fmt.Sprintf("--mount=/proc/%d/ns/mnt", jpid), "--"},
		"-nft-table", table, "-queue", "7464", "-metrics-listen", endpoint, "-journal-records=false")
	denied := testrig.CopyApp(t, curlPath, testrig.AppDir(t), "curl-unrecorded")
	if out, errOut, code := b.Ctl(t, 0, "rules", "add", "--deny", "--app", denied, "--remote", ns.NsV4.String(), "--id", "t16-off"); code != 0 {
		t.Fatalf("rules add: %d %s %s", code, out, errOut)
	}
	time.Sleep(200 * time.Millisecond)
	if out, err := exec.Command(denied, "-sS", "--max-time", "5", fmt.Sprintf("http://%s:15219/", ns.NsV4)).CombinedOutput(); err == nil {
		t.Fatalf("the denied program connected: %s", out)
	}
	// Counted: the decision was made and seen.
	want := fmt.Sprintf(`tattle_app_decisions_total{app=%q,verdict="deny"} 1`, denied)
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(body, want) && time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + endpoint + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, want) {
		t.Fatalf("the endpoint never showed %s:\n%.3000s", want, body)
	}
	// journald is there for any client in tattled's mount namespace (a probe record sent from there arrives),
	// yet holds no record of the decision.
	// logger --journald writes to the native socket, as go-systemd's journal package does.
	probe := exec.Command(need(t, "nsenter"), fmt.Sprintf("--mount=/proc/%d/ns/mnt", jpid), "--", need(t, "logger"), "--journald")
	probe.Stdin = strings.NewReader("MESSAGE=probe\nSYSLOG_IDENTIFIER=t16probe\n")
	if out, err := probe.CombinedOutput(); err != nil {
		t.Fatalf("logger --journald in the journal's namespace: %v %s", err, out)
	}
	var probed bool
	for deadline := time.Now().Add(10 * time.Second); !probed && time.Now().Before(deadline); {
		probed = len(journalRecordsMatching(t, dir, "SYSLOG_IDENTIFIER=t16probe")) > 0
		time.Sleep(200 * time.Millisecond)
	}
	if !probed {
		t.Fatal("the test's journald did not get the probe record: the check below would prove nothing")
	}
	if recs := journalRecords(t, dir, denied); len(recs) != 0 {
		t.Errorf("with -journal-records=false journald got %d record(s): %v", len(recs), recs[0])
	}
	if strings.Contains(body, "tattle_journal_records_total") {
		t.Errorf("the endpoint reports journal records with the records off")
	}
	report.Add(t, "tattled -journal-records=false under a running journald: the denial is counted (%s) and no record reaches the journal", want)
}
