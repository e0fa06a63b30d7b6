package hold

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// A held first connection, allowed by its user, is the one a new program makes: its traffic must count for
// that program like any other's, though its SYN leaves from the helper's context when the answer lets it go:
// the socket's record was made at connect(), in the program's own context.
func TestHeldConnectionTrafficIsCounted(t *testing.T) {
	r := newRig(t, "hold-traffic", api.Settings{})
	const sent, received = 2_000_000, 6_000_000
	var ln net.Listener
	r.NS.Inside(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", r.NS.PeerAddr+":0"); err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	t.Cleanup(func() { ln.Close() })
	served := testrig.ServeDownloads(ln, received/sent)
	srv := ln.Addr().String()
	ag := r.StartAgent(t)
	app := testrig.CopyApp(t, testrig.Build(t).Client, testrig.AppDir(t), "held-downloader")
	cmd := exec.Command(app, "-send", fmt.Sprint(sent), "tcp", srv)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	q := ag.Next(t, "question", 10*time.Second).Question
	if q.Exe != app {
		t.Fatalf("question about %s, want %s", q.Exe, app)
	}
	ag.Answer(t, "a")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("downloader: %v: %s", err, out.String())
	}
	var res struct {
		OK             bool
		Sent, Received int64
		TCP            *testrig.TCPStats
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || !res.OK || res.Sent != sent || res.Received != received {
		t.Fatalf("the allowed download moved %+v (%s), want %d out and %d in", res, out.String(), sent, received)
	}
	// The counters see what the sockets handed down, TCP's resent segments included (reordering on the veth
	// makes it resend): the references are the sockets' own TCP_INFO, the client's exactly, the server's as an
	// upper bound of what arrived (tests/enforcement does the same).
	wantTx, maxRx := uint64(sent), uint64(received)
	if res.TCP != nil {
		wantTx = res.TCP.BytesSent
	}
	select {
	case st := <-served:
		maxRx = st.BytesSent
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not report its socket's TCP_INFO")
	}
	okTx := func(tx uint64) bool { return tx == wantTx }
	okRx := func(rx uint64) bool { return rx >= uint64(received) && rx <= maxRx }

	var tx, rx, helperBytes uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		tx, rx, helperBytes = 0, 0, 0
		for _, f := range testrig.MonitorFlows[struct {
			Exe         string `json:"exe"`
			Destination string `json:"destination"`
			Sent        uint64 `json:"sent_bytes"`
			Received    uint64 `json:"received_bytes"`
		}](t, r.TattleBus) {
			switch {
			case f.Exe == app && f.Destination == srv:
				tx, rx = f.Sent, f.Received
			case f.Destination == srv:
				helperBytes += f.Sent + f.Received // counted for another program (the helper, say)
			}
		}
		if okTx(tx) && okRx(rx) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	report.Add(t, "held connection allowed by its user, then %d bytes out and %d in: counted %d sent (%+.3f%%), %d received (%+.3f%%)",
		sent, received, tx, pct(tx, sent), rx, pct(rx, received))
	if !okTx(tx) || !okRx(rx) {
		t.Errorf("the held connection's traffic counted %d sent and %d received, want %d (the client socket's bytes sent) and %d..%d (read, and the server socket's bytes sent)\n%s",
			tx, rx, wantTx, received, maxRx, r.Log)
	}
	if helperBytes != 0 {
		t.Errorf("%d bytes to %s counted for another program than the downloader", helperBytes, srv)
	}
	ag.Quiet(t, time.Second)
}
func pct(got uint64, want int) float64 { return (float64(got) - float64(want)) / float64(want) * 100 }
