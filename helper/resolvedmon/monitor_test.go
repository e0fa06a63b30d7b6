package resolvedmon

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tattlefw/tattle/helper/dns"
)

// varlinkServer speaks the monitor side of the protocol the way systemd-resolved does: it reads one
// NUL-terminated call, checks it is SubscribeQueryResults with "more": true, and streams replies with
// "continues": true. Each accepted connection gets the next script; a script ends by closing the connection.
type varlinkServer struct {
	t       *testing.T
	path    string
	ln      net.Listener
	mu      sync.Mutex
	scripts [][]any // replies per connection: map[string]any parameters, or varlinkErr
	calls   []map[string]any
	chunk   int // write replies in pieces of this many bytes, to exercise reassembly
	hold    chan struct{}
}

type varlinkErr string

func newServer(t *testing.T, scripts ...[]any) *varlinkServer {
	s := &varlinkServer{t: t, path: filepath.Join(t.TempDir(), "io.systemd.Resolve.Monitor"), scripts: scripts, hold: make(chan struct{})}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	var wg sync.WaitGroup
	t.Cleanup(func() { close(s.hold); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(conn) }()
		}
	}()
	return s
}

func (s *varlinkServer) serve(conn net.Conn) {
	defer conn.Close()
	call, err := bufio.NewReader(conn).ReadBytes(0)
	if err != nil {
		s.t.Errorf("server: read call: %v", err)
		return
	}
	var c map[string]any
	if err := json.Unmarshal(call[:len(call)-1], &c); err != nil {
		s.t.Errorf("server: call is not JSON: %q", call)
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	var script []any
	if len(s.scripts) > 0 {
		script, s.scripts = s.scripts[0], s.scripts[1:]
	}
	s.mu.Unlock()
	if c["method"] != Method || c["more"] != true {
		s.send(conn, map[string]any{"error": "org.varlink.service.MethodNotFound", "parameters": map[string]any{"method": c["method"]}})
		return
	}
	for _, step := range script {
		switch v := step.(type) {
		case varlinkErr:
			s.send(conn, map[string]any{"error": string(v), "parameters": map[string]any{}})
			return
		case string: // "hold": keep the subscription open until the test ends
			<-s.hold
			return
		default:
			s.send(conn, map[string]any{"parameters": v, "continues": true})
		}
	}
}

func (s *varlinkServer) send(conn net.Conn, msg any) {
	b, _ := json.Marshal(msg)
	b = append(b, 0)
	for len(b) > 0 {
		n := len(b)
		if s.chunk > 0 {
			n = min(n, s.chunk)
		}
		if _, err := conn.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
	}
}

func raw(t testing.TB, rr mdns.RR) string {
	buf := make([]byte, 512)
	n, err := mdns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf[:n])
}

func key(name string, typ uint16) map[string]any {
	return map[string]any{"class": 1, "type": typ, "name": name}
}

// lookup is a result as resolved sends it for www.example.test (a CNAME to edge.cdn.test, two A records).
func lookup(t testing.TB) map[string]any {
	h := func(n string, typ uint16, ttl uint32) mdns.RR_Header {
		return mdns.RR_Header{Name: n, Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
	}
	return map[string]any{
		"state":              "success",
		"question":           []any{key("www.example.test", mdns.TypeA)},
		"collectedQuestions": []any{key("www.example.test", mdns.TypeA), key("edge.cdn.test", mdns.TypeA)},
		"answer": []any{
			map[string]any{"rr": map[string]any{"key": key("www.example.test", mdns.TypeCNAME), "name": "edge.cdn.test"},
				"raw": raw(t, &mdns.CNAME{Hdr: h("www.example.test.", mdns.TypeCNAME, 300), Target: "edge.cdn.test."}), "ifindex": 2},
			map[string]any{"rr": map[string]any{"key": key("edge.cdn.test", mdns.TypeA), "address": []int{192, 0, 2, 7}},
				"raw": raw(t, &mdns.A{Hdr: h("edge.cdn.test.", mdns.TypeA, 42), A: net.IPv4(192, 0, 2, 7)}), "ifindex": 2},
			// A record without a usable wire form: read from the JSON, with the short default TTL.
			map[string]any{"rr": map[string]any{"key": key("edge.cdn.test", mdns.TypeAAAA),
				"address": []int{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}}, "raw": "!!"},
		},
	}
}

func TestSubscribeAndParse(t *testing.T) {
	failed := map[string]any{"state": "rcode-failure", "rcode": 3, "question": []any{key("nx.example.test", mdns.TypeA)}}
	s := newServer(t, []any{map[string]any{"ready": true}, lookup(t), failed, "hold"})
	s.chunk = 7
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := Dial(ctx, s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.Next()
	if err != nil || !r.Ready {
		t.Fatalf("first reply %+v, %v; want ready", r, err)
	}
	r, err = m.Next()
	if err != nil {
		t.Fatal(err)
	}
	chain := []string{"edge.cdn.test"}
	want := []dns.Record{
		{Query: "www.example.test", Canonical: chain, Addr: netip.MustParseAddr("192.0.2.7"), TTL: 42 * time.Second},
		{Query: "www.example.test", Canonical: chain, Addr: netip.MustParseAddr("2001:db8::9"), TTL: DefaultTTL},
	}
	got := r.Records()
	if !slices.EqualFunc(got, want, func(a, b dns.Record) bool {
		return a.Query == b.Query && slices.Equal(a.Canonical, b.Canonical) && a.Addr == b.Addr && a.TTL == b.TTL
	}) {
		t.Fatalf("records\n %+v\nwant\n %+v", got, want)
	}
	r, err = m.Next()
	if err != nil || r.State != "rcode-failure" || r.Rcode != 3 || len(r.Records()) != 0 {
		t.Fatalf("failed lookup: %+v %v", r, err)
	}
	s.mu.Lock()
	call := s.calls[0]
	s.mu.Unlock()
	if call["method"] != Method || call["more"] != true {
		t.Fatalf("call %v", call)
	}
	// Close unblocks a waiting Next.
	done := make(chan error, 1)
	go func() { _, err := m.Next(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	m.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
}

func TestErrorsAndLimits(t *testing.T) {
	s := newServer(t, []any{varlinkErr("io.systemd.System")})
	ctx := context.Background()
	m, err := Dial(ctx, s.path)
	if err != nil {
		t.Fatal(err)
	}
	var ve *VarlinkError
	if _, err := m.Next(); !errors.As(err, &ve) || ve.Name != "io.systemd.System" {
		t.Fatalf("error reply gave %v", err)
	}
	m.Close()

	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("dialing an absent socket worked")
	}

	// A peer that never ends its message is cut off at MaxMessage.
	path := filepath.Join(t.TempDir(), "flood")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		junk := make([]byte, 64<<10)
		for i := range junk {
			junk[i] = 'x'
		}
		for range MaxMessage/len(junk) + 2 {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	m, err = Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("oversized message gave %v", err)
	}
}

// TestRunReconnects: when resolved ends the stream (it restarted), Run dials again and keeps delivering.
func TestRunReconnects(t *testing.T) {
	s := newServer(t, []any{map[string]any{"ready": true}, lookup(t)}, []any{lookup(t), "hold"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan Result, 4)
	var mu sync.Mutex
	var statuses []error
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, s.path, 10*time.Millisecond, func(r Result) { results <- r }, func(err error) {
			mu.Lock()
			statuses = append(statuses, err)
			mu.Unlock()
		})
	}()
	for i := range 2 {
		select {
		case r := <-results:
			if len(r.Records()) != 2 {
				t.Fatalf("result %d: %+v", i, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("result %d did not arrive", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) < 3 || statuses[0] != nil || statuses[1] == nil || statuses[2] != nil {
		t.Fatalf("status reports %v, want connect, loss, connect", statuses)
	}
}

// FuzzResult: any parameters object resolved (or an impostor on the socket) sends must parse or fail
// cleanly, and every record must carry a valid address for the question's name.
func FuzzResult(f *testing.F) {
	seed, _ := json.Marshal(lookup(f))
	f.Add(seed)
	f.Add([]byte(`{"ready":true}`))
	f.Add([]byte(`{"state":"success","question":[{"class":1,"type":1,"name":"a.test"}],"answer":[{"raw":"AAEAAQ==","rr":{"key":{"class":1,"type":1,"name":"a.test"},"address":[1,2,3,4]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Result
		if json.Unmarshal(b, &r) != nil {
			return
		}
		for _, rec := range r.Records() {
			if !rec.Addr.IsValid() || rec.Addr.Is4In6() || rec.Query == "" {
				t.Fatalf("bad record %+v", rec)
			}
		}
	})
}
