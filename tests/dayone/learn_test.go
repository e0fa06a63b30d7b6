package dayone

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/holdrig"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// learnedGroup is one program of `tattlectl rules learned --json`.
type learnedGroup struct {
	Application string `json:"application"`
	Rules       []struct {
		ID         string  `json:"id"`
		Owner      *uint32 `json:"owner"`
		Remote     string  `json:"remote"`
		Port       string  `json:"port"`
		Protocol   string  `json:"protocol"`
		Enabled    bool    `json:"enabled"`
		Learned    bool    `json:"learned"`
		Unapproved bool    `json:"unapproved"`
	} `json:"rules"`
}

func learned(t *testing.T, r *holdrig.Rig, uid uint32) map[string]learnedGroup {
	t.Helper()
	out, errOut, code := r.Ctl(t, uid, "rules", "learned", "--json")
	if code != 0 {
		t.Fatalf("rules learned --json: %d %s", code, errOut)
	}
	var gs []learnedGroup
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		t.Fatalf("rules learned --json: %v\n%s", err, out)
	}
	m := map[string]learnedGroup{}
	for _, g := range gs {
		m[g.Application] = g
	}
	return m
}

func status(t *testing.T, r *holdrig.Rig) api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.API.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLearningMode (issue 10, must-show 5): learning for 5 s allows three new programs unasked and proposes
// exactly what each did as a disabled rule; approving one program's enables it (then decided in the kernel,
// unasked); the mode ends by itself and the next unknown program, and an unapproved one, are asked again.
func TestLearningMode(t *testing.T) {
	r := ring.NewRig(t, "dayone-learn", apiSettings(30))
	ag := r.StartAgent(t)
	u := testrig.TestUser(t)
	dir := testrig.AppDir(t)
	client := testrig.Build(t).Client
	apps := map[string]string{}
	for _, n := range []string{"learn-a", "learn-b", "learn-c", "learn-d"} {
		apps[n] = testrig.CopyApp(t, client, dir, n)
	}
	tcp1, udp1, tcp2 := r.NS.TCPServer(t), r.NS.UDPServer(t), r.NS.TCPServer(t)

	// Starting it is an administrator's: the user (a program running as the user) cannot.
	_, errOut, code := r.Ctl(t, u.UID, "--no-interactive", "learn", "5s")
	report.Add(t, "%s: tattlectl learn 5s: exit %d, %q", u, code, strings.TrimSpace(errOut))
	if code != 4 || status(t, r).Mode != api.ModeAlert {
		t.Fatalf("an ordinary user started learning mode: exit %d, mode %s", code, status(t, r).Mode)
	}

	out, errOut, code := r.Ctl(t, 0, "learn", "5s")
	started := time.Now()
	if code != 0 {
		t.Fatalf("tattlectl learn 5s: %d %s", code, errOut)
	}
	st := status(t, r)
	report.Add(t, "tattlectl learn 5s: %q; status: mode %s, until %ds from now", strings.TrimSpace(out), st.Mode,
		st.LearnUntil-started.Unix())
	if st.Mode != api.ModeLearn || st.LearnUntil < started.Unix()+4 || st.LearnUntil > started.Unix()+6 {
		t.Fatalf("status while learning: %+v", st)
	}

	// Three new programs (one of them run by the ordinary user) connect: all allowed, nobody asked.
	type run struct {
		app, proto, addr string
		uid              uint32
	}
	runs := []run{{"learn-a", "tcp", tcp1, 0}, {"learn-b", "udp", udp1, 0}, {"learn-c", "tcp", tcp2, u.UID}}
	for _, x := range runs {
		for range 2 { // twice: still one proposal
			res := testrig.RunApp(t, apps[x.app], testrig.RunOpts{UID: x.uid}, x.proto, x.addr)
			if !res.OK || (x.proto == "udp" && !res.Echoed) {
				t.Fatalf("%s %s %s while learning: %+v", x.app, x.proto, x.addr, res)
			}
		}
	}
	ag.Quiet(t, 500*time.Millisecond)
	report.Add(t, "learning: 3 new programs (tcp, udp, tcp as %s) connected twice each: all allowed, no question", u.Name)

	// Each is proposed once, as exactly what it did: its executable, user, address, port, protocol; disabled.
	groups := learned(t, r, 0)
	for _, x := range runs {
		g := groups[apps[x.app]]
		host, port, _ := net.SplitHostPort(x.addr)
		if len(g.Rules) != 1 {
			t.Fatalf("%s: %d proposals, want 1: %+v", x.app, len(g.Rules), g)
		}
		p := g.Rules[0]
		ownerOK := (x.uid == 0 && p.Owner == nil) || (x.uid != 0 && p.Owner != nil && *p.Owner == x.uid)
		if p.Remote != host || p.Port != port || p.Protocol != x.proto || p.Enabled || !p.Learned || !p.Unapproved || !ownerOK {
			t.Fatalf("%s: proposal %+v, want remote %s port %s %s owner %d, disabled, learned", x.app, p, host, port, x.proto, x.uid)
		}
	}
	report.Add(t, "tattlectl rules learned --json: %d programs of the test proposed, 1 rule each (remote, port, protocol as connected; disabled, learned)", len(runs))

	// Approving needs the owner's password: the user's program cannot approve its own proposal unasked.
	_, errOut, code = r.Ctl(t, u.UID, "--no-interactive", "rules", "learned", "approve", "--app", apps["learn-c"])
	if code != 4 || learned(t, r, 0)[apps["learn-c"]].Rules[0].Enabled {
		t.Fatalf("the user approved a proposal without authenticating: exit %d %s", code, errOut)
	}
	report.Add(t, "%s: rules learned approve --app learn-c without a password: exit %d; still disabled", u, code)

	// Approve learn-a's: enabled, no longer a proposal.
	out, errOut, code = r.Ctl(t, 0, "rules", "learned", "approve", "--app", apps["learn-a"])
	if code != 0 {
		t.Fatalf("approve learn-a: %d %s", code, errOut)
	}
	approved := groups[apps["learn-a"]].Rules[0].ID
	listed := listJSON(t, r)[approved]
	after := learned(t, r, 0)
	report.Add(t, "rules learned approve --app learn-a: %q; rule %s enabled %v, still proposed: %v; learn-b and learn-c still proposed: %v",
		strings.TrimSpace(out), approved, listed.Enabled, len(after[apps["learn-a"]].Rules) > 0,
		len(after[apps["learn-b"]].Rules) == 1 && len(after[apps["learn-c"]].Rules) == 1)
	if !listed.Enabled || len(after[apps["learn-a"]].Rules) != 0 || len(after[apps["learn-b"]].Rules) != 1 {
		t.Fatalf("after approving learn-a: rule %+v, proposals %+v", listed, after)
	}

	// The mode ends by itself, at its time.
	deadline := started.Add(9 * time.Second)
	for status(t, r).Mode != api.ModeAlert {
		if time.Now().After(deadline) {
			t.Fatalf("still %s 9 s after learn 5s", status(t, r).Mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ended := time.Since(started)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	set, err := r.API.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	report.Add(t, "mode back to %s by itself %.1f s after learn 5s (settings: %s)", status(t, r).Mode, ended.Seconds(), set.Mode)
	if ended < 4500*time.Millisecond || set.Mode != api.ModeAlert {
		t.Fatalf("learning ended after %v, settings mode %s", ended, set.Mode)
	}

	// learn-a: allowed by its approved rule, in the kernel, unasked.
	res := testrig.RunApp(t, apps["learn-a"], testrig.RunOpts{}, "tcp", tcp1)
	ag.Quiet(t, 500*time.Millisecond)
	flows, err := r.API.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byRule := ""
	for _, f := range flows {
		if f.Exe == apps["learn-a"] && f.Dest == tcp1 {
			byRule = f.RuleID + " " + f.Verdict
		}
	}
	report.Add(t, "after learning: learn-a connects: ok %v in %v, no question; its flow: %s", res.OK, res.Elapsed(), byRule)
	if !res.OK || !strings.HasPrefix(byRule, approved+" ") {
		t.Fatalf("learn-a after approval: %+v, flow %q (want rule %s)", res, byRule, approved)
	}

	// A program learned but not approved, and a new one: asked.
	for _, x := range []run{{"learn-b", "udp", udp1, 0}, {"learn-d", "tcp", tcp1, 0}} {
		done := make(chan testrig.Result, 1)
		go func() { done <- testrig.RunApp(t, apps[x.app], testrig.RunOpts{}, x.proto, x.addr) }()
		ev := ag.Next(t, "question", 10*time.Second)
		if ev.Question.Exe != apps[x.app] || strconv.Itoa(int(ev.Question.Port)) != x.addr[strings.LastIndex(x.addr, ":")+1:] {
			t.Fatalf("question %+v, want %s to %s", ev.Question, x.app, x.addr)
		}
		ag.Answer(t, "d 1")
		res := <-done
		report.Add(t, "after learning: %s (%s) to %s is asked (question %d), answered deny once: ok %v", x.app,
			map[bool]string{true: "learned, not approved", false: "unknown"}[x.app == "learn-b"], x.addr, ev.Question.ID, res.OK)
		if res.OK && x.proto == "tcp" {
			t.Errorf("%s connected after deny", x.app)
		}
	}

	// Switching a proposal on is approving it (the same authorization): it is no longer a proposal.
	idB := groups[apps["learn-b"]].Rules[0].ID
	if _, errOut, code := r.Ctl(t, 0, "rules", "enable", idB); code != 0 {
		t.Fatalf("rules enable %s: %d %s", idB, code, errOut)
	}
	left := learned(t, r, 0)
	report.Add(t, "tattlectl rules enable %s (learn-b's proposal): enabled %v, still proposed %v", idB,
		listJSON(t, r)[idB].Enabled, len(left[apps["learn-b"]].Rules) > 0)
	if !listJSON(t, r)[idB].Enabled || len(left[apps["learn-b"]].Rules) != 0 {
		t.Fatalf("after enabling learn-b's proposal: %+v", left[apps["learn-b"]])
	}
}
