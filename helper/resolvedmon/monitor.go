// Package resolvedmon subscribes to systemd-resolved's monitor (Varlink interface io.systemd.Resolve.Monitor)
// and turns the lookups it reports into name -> address records. Applications that resolve through
// resolved's NSS module or D-Bus API never send port-53 packets of their own, so the kernel capture cannot
// see their answers; this can.
//
// Varlink here is JSON objects, each terminated by a NUL byte, over a unix stream socket. The client calls
// io.systemd.Resolve.Monitor.SubscribeQueryResults with "more": true; resolved answers with a stream of
// replies flagged "continues": true — first {"ready": true} (newer versions), then one per completed lookup:
// {"state", "rcode"?, "errno"?, "question": [ResourceKey], "collectedQuestions"?: [ResourceKey],
// "answer"?: [{"rr": ResourceRecord?, "raw": base64 wire-format record, "ifindex"?}]}.
package resolvedmon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tattlefw/tattle/helper/dns"
)

// SocketPath is where systemd-resolved listens for monitor clients (root only).
const SocketPath = "/run/systemd/resolve/io.systemd.Resolve.Monitor"

// Method is the subscription call.
const Method = "io.systemd.Resolve.Monitor.SubscribeQueryResults"

// MaxMessage bounds one Varlink message, so a misbehaving peer cannot make the helper buffer without end.
// resolved's largest results (many records, each with its raw form) stay far below it.
const MaxMessage = 4 << 20

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("resolved monitor closed")

// ResourceKey is a question: class, type and name.
type ResourceKey struct {
	Class uint16 `json:"class"`
	Type  uint16 `json:"type"`
	Name  string `json:"name"`
}

// ResourceRecord is the part of resolved's JSON record this package reads; the wire form ("raw") is
// preferred because only it carries the TTL.
type ResourceRecord struct {
	Key     ResourceKey `json:"key"`
	Address []byte      `json:"-"`    // A/AAAA: the address bytes (sent as an array of integers)
	Name    string      `json:"name"` // CNAME target
}

// UnmarshalJSON reads "address" as an array of integers (encoding/json would expect base64 for []byte).
func (r *ResourceRecord) UnmarshalJSON(b []byte) error {
	var v struct {
		Key     ResourceKey `json:"key"`
		Address []int       `json:"address"`
		Name    string      `json:"name"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Key, r.Name, r.Address = v.Key, v.Name, nil
	for _, x := range v.Address {
		if x < 0 || x > 255 {
			return fmt.Errorf("address byte %d out of range", x)
		}
		r.Address = append(r.Address, byte(x))
	}
	return nil
}

// AnswerRR is one record of a result.
type AnswerRR struct {
	RR      *ResourceRecord `json:"rr"`
	Raw     string          `json:"raw"` // base64 of the record in DNS wire format
	Ifindex int             `json:"ifindex"`
}

// Result is one completed lookup as resolved reports it.
type Result struct {
	Ready              bool          `json:"ready"` // the first reply of newer resolved versions; no lookup
	State              string        `json:"state"` // "success", "rcode-failure", "errno", "timeout", …
	Rcode              int           `json:"rcode"`
	Errno              int           `json:"errno"`
	Question           []ResourceKey `json:"question"`
	CollectedQuestions []ResourceKey `json:"collectedQuestions"`
	Answer             []AnswerRR    `json:"answer"`
}

// DefaultTTL is used for an answer record that comes without its wire form (which carries the TTL): short,
// so a mapping of unknown lifetime is not trusted for long.
const DefaultTTL = 10 * time.Second

// Records turns a successful result into name -> address records: the CNAME chain is followed from the
// question, as for captured answers (dns.Records). Failed lookups give none.
func (r Result) Records() []dns.Record {
	if r.State != "success" || len(r.Question) == 0 {
		return nil
	}
	var rrs []mdns.RR
	for _, a := range r.Answer {
		if rr := a.record(); rr != nil {
			rrs = append(rrs, rr)
		}
	}
	var out []dns.Record
	seen := map[string]bool{}
	for _, q := range r.Question {
		if q.Class != mdns.ClassINET || seen[dns.Normalize(q.Name)] {
			continue
		}
		seen[dns.Normalize(q.Name)] = true
		out = append(out, dns.Records(q.Name, rrs)...)
	}
	return out
}

// record decodes one answer: from its wire form when that parses, else from the JSON fields.
func (a AnswerRR) record() mdns.RR {
	if raw, err := base64.StdEncoding.DecodeString(a.Raw); err == nil && len(raw) > 0 {
		if rr, _, err := mdns.UnpackRR(raw, 0); err == nil && rr != nil {
			return rr
		}
	}
	if a.RR == nil {
		return nil
	}
	k := a.RR.Key
	h := mdns.RR_Header{Name: mdns.Fqdn(k.Name), Rrtype: k.Type, Class: k.Class, Ttl: uint32(DefaultTTL / time.Second)}
	switch k.Type {
	case mdns.TypeA:
		if ip, ok := netip.AddrFromSlice(a.RR.Address); ok && ip.Is4() {
			return &mdns.A{Hdr: h, A: ip.AsSlice()}
		}
	case mdns.TypeAAAA:
		if ip, ok := netip.AddrFromSlice(a.RR.Address); ok && ip.Is6() {
			return &mdns.AAAA{Hdr: h, AAAA: ip.AsSlice()}
		}
	case mdns.TypeCNAME:
		if a.RR.Name != "" {
			return &mdns.CNAME{Hdr: h, Target: mdns.Fqdn(a.RR.Name)}
		}
	}
	return nil
}

// VarlinkError is an error reply from the service.
type VarlinkError struct {
	Name       string          // e.g. "org.varlink.service.MethodNotFound", "io.systemd.System"
	Parameters json.RawMessage //
}

func (e *VarlinkError) Error() string {
	return fmt.Sprintf("systemd-resolved refused the monitor subscription: %s %s", e.Name, e.Parameters)
}

// Monitor is a subscription to resolved's query results.
type Monitor struct {
	conn   net.Conn
	r      *bufio.Reader
	closed chan struct{}
	once   sync.Once
}

// Dial connects to the monitor socket at path and subscribes. ctx bounds the connection and the call.
func Dial(ctx context.Context, path string) (*Monitor, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd-resolved's monitor at %s (is systemd-resolved running?): %w", path, err)
	}
	m := &Monitor{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), closed: make(chan struct{})}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	call, _ := json.Marshal(struct {
		Method     string         `json:"method"`
		Parameters map[string]any `json:"parameters"`
		More       bool           `json:"more"`
	}{Method, map[string]any{}, true})
	if _, err := conn.Write(append(call, 0)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to systemd-resolved's monitor: %w", err)
	}
	conn.SetWriteDeadline(time.Time{})
	return m, nil
}

// Next blocks until resolved reports the next lookup and returns it; the initial {"ready": true} reply is
// returned too (Result.Ready), so the caller knows the subscription is live. It returns ErrClosed after
// Close, a *VarlinkError if resolved refused, and io.EOF if resolved ended the subscription (it restarted:
// dial again).
func (m *Monitor) Next() (Result, error) {
	raw, err := m.readMessage()
	if err != nil {
		select {
		case <-m.closed:
			return Result{}, ErrClosed
		default:
		}
		return Result{}, err
	}
	var reply struct {
		Parameters json.RawMessage `json:"parameters"`
		Continues  bool            `json:"continues"`
		Error      string          `json:"error"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return Result{}, fmt.Errorf("malformed message from systemd-resolved's monitor: %w", err)
	}
	if reply.Error != "" {
		return Result{}, &VarlinkError{Name: reply.Error, Parameters: reply.Parameters}
	}
	var res Result
	if len(reply.Parameters) > 0 {
		if err := json.Unmarshal(reply.Parameters, &res); err != nil {
			return Result{}, fmt.Errorf("malformed result from systemd-resolved's monitor: %w", err)
		}
	}
	return res, nil
}

// readMessage reads up to the next NUL, refusing messages over MaxMessage.
func (m *Monitor) readMessage() ([]byte, error) {
	var msg []byte
	for {
		chunk, err := m.r.ReadSlice(0)
		if len(msg)+len(chunk) > MaxMessage {
			return nil, fmt.Errorf("message from systemd-resolved's monitor exceeds %d bytes", MaxMessage)
		}
		msg = append(msg, chunk...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(msg, []byte{0}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(msg) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// Close ends the subscription and unblocks Next.
func (m *Monitor) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.conn.Close()
	})
	return err
}

// Run keeps a subscription at path alive until ctx ends, calling fn for every lookup result (not for the
// ready reply). When resolved goes away it dials again after retry (doubling up to a minute), so a restarted
// resolved is followed. status, if not nil, is told of every connect (nil) and every failure. Run returns
// ctx's error, or a *VarlinkError if resolved refuses the subscription (retrying would not help).
func Run(ctx context.Context, path string, retry time.Duration, fn func(Result), status func(error)) error {
	if retry <= 0 {
		retry = time.Second
	}
	report := func(err error) {
		if status != nil {
			status(err)
		}
	}
	wait := retry
	for {
		m, err := Dial(ctx, path)
		if err == nil {
			report(nil)
			wait = retry
			err = m.follow(ctx, fn)
			var ve *VarlinkError
			if errors.As(err, &ve) {
				report(err)
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		report(err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// follow reads results until the connection ends or ctx does; it closes m.
func (m *Monitor) follow(ctx context.Context, fn func(Result)) error {
	stop := context.AfterFunc(ctx, func() { m.Close() })
	defer stop()
	defer m.Close()
	for {
		res, err := m.Next()
		if err != nil {
			return err
		}
		if !res.Ready {
			fn(res)
		}
	}
}
