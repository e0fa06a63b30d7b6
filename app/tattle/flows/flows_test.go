package flows

import (
	"testing"

	"github.com/tattlefw/tattle/shared/api"
)

func flow(exe, dest, proto, verdict string, attempts uint64) api.Flow {
	return api.Flow{Exe: exe, Dev: 1, Ino: 2, UID: 1000, Dest: dest, Protocol: proto, Verdict: verdict,
		Attempts: attempts, Allowed: attempts, LastSeen: int64(attempts) * 1000}
}

func TestApplyIsIncremental(t *testing.T) {
	m := New()
	ch := m.Apply([]api.Flow{
		flow("/usr/bin/curl", "192.0.2.1:443", "tcp", "allow", 1),
		flow("/usr/bin/curl", "192.0.2.2:443", "tcp", "allow", 2),
		flow("/usr/bin/wget", "192.0.2.1:80", "tcp", "deny", 1),
	})
	if len(ch.NewApps) != 2 || len(ch.NewDests) != 3 || len(ch.ChangedDests) != 0 {
		t.Fatalf("first batch: %d new apps, %d new dests, %d changed; want 2, 3, 0", len(ch.NewApps), len(ch.NewDests), len(ch.ChangedDests))
	}
	curl := m.App(AppKey{Exe: "/usr/bin/curl", Dev: 1, Ino: 2, UID: 1000})
	if curl.Attempts != 3 || curl.Dests != 2 {
		t.Fatalf("curl totals: %+v", curl)
	}
	// The same snapshot again changes nothing.
	ch = m.Apply([]api.Flow{flow("/usr/bin/curl", "192.0.2.1:443", "tcp", "allow", 1)})
	if len(ch.NewApps)+len(ch.NewDests)+len(ch.ChangedDests)+len(ch.ChangedApps) != 0 {
		t.Fatalf("an unchanged flow produced changes: %+v", ch)
	}
	// Growth counts once.
	ch = m.Apply([]api.Flow{flow("/usr/bin/curl", "192.0.2.1:443", "tcp", "allow", 5)})
	if len(ch.ChangedDests) != 1 || len(ch.ChangedApps) != 1 || curl.Attempts != 7 {
		t.Fatalf("after growth: %+v, curl attempts %d want 7", ch, curl.Attempts)
	}
	// A flow that restarted from zero (helper restart) counts its new attempts only.
	m.Apply([]api.Flow{flow("/usr/bin/curl", "192.0.2.1:443", "tcp", "allow", 1)})
	if curl.Attempts != 8 {
		t.Fatalf("after a counter reset: curl attempts %d want 8", curl.Attempts)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d", m.Len())
	}
}

func TestHistoryAndSparkline(t *testing.T) {
	m := New()
	m.Apply([]api.Flow{flow("/bin/a", "192.0.2.1:1", "udp", "allow", 4)})
	if got, _ := m.Tick(); len(got) != 1 || got[0].History[HistoryLen-1] != 4 {
		t.Fatalf("first tick: %+v", got)
	}
	m.Apply([]api.Flow{flow("/bin/a", "192.0.2.1:1", "udp", "allow", 6)})
	h, _ := m.Tick()
	a := h[0]
	if a.History[HistoryLen-2] != 4 || a.History[HistoryLen-1] != 2 {
		t.Fatalf("history tail = %v", a.History[HistoryLen-3:])
	}
	img := Sparkline(a.History, 60, 16, [3]byte{1, 2, 3})
	opaque := func(x, y int) bool { return img[(y*60+x)*4+3] == 255 }
	// The last column (2 of peak 4) is about half as tall as the one before (4: full height).
	if !opaque(59, 15) || opaque(59, 0) || !opaque(58, 0) {
		t.Errorf("sparkline bars wrong: last column bottom %v top %v, previous top %v", opaque(59, 15), opaque(59, 0), opaque(58, 0))
	}
	if opaque(0, 15) {
		t.Errorf("an idle sample has a bar")
	}
	// Idle applications stop costing work once their history has scrolled out.
	for i := 0; i < HistoryLen; i++ {
		m.Tick()
	}
	if got, _ := m.Tick(); len(got) != 0 {
		t.Errorf("an idle application's history still changes: %d", len(got))
	}
}

func TestFilter(t *testing.T) {
	m := New()
	m.Apply([]api.Flow{
		flow("/usr/bin/curl", "192.0.2.1:443", "tcp", "allow", 1),
		flow("/usr/bin/wget", "192.0.2.9:80", "tcp", "deny", 1),
		flow("/usr/bin/nc", "[2001:db8::1]:53", "udp", "undecided", 1),
	})
	key := func(exe, dest, proto string) *Dest {
		return m.Dest(DestKey{App: AppKey{Exe: exe, Dev: 1, Ino: 2, UID: 1000}, Dest: dest, Protocol: proto})
	}
	curl, wget, nc := key("/usr/bin/curl", "192.0.2.1:443", "tcp"), key("/usr/bin/wget", "192.0.2.9:80", "tcp"), key("/usr/bin/nc", "[2001:db8::1]:53", "udp")
	if nc.Addr != "2001:db8::1" || nc.Port != 53 {
		t.Errorf("split dest: %q %d", nc.Addr, nc.Port)
	}
	cases := []struct {
		f    Filter
		want [3]bool
	}{
		{ShowAll, [3]bool{true, true, true}},
		{Filter{Allowed: true}, [3]bool{true, false, false}},
		{Filter{Denied: true, Asked: true}, [3]bool{false, true, true}},
		{Filter{Text: "WGET", Allowed: true, Denied: true, Asked: true}, [3]bool{false, true, false}},
		{Filter{Text: "udp", Allowed: true, Denied: true, Asked: true}, [3]bool{false, false, true}},
		{Filter{Text: "192.0.2.1:", Allowed: true, Denied: true, Asked: true}, [3]bool{true, false, false}},
	}
	for _, c := range cases {
		got := [3]bool{c.f.Matches(curl), c.f.Matches(wget), c.f.Matches(nc)}
		if got != c.want {
			t.Errorf("filter %+v: %v, want %v", c.f, got, c.want)
		}
	}
	// A host name learned from a question is searchable and belongs to that flow only.
	if got := m.LearnHost(curl.Key, "example.com"); len(got) != 1 || curl.Host != "example.com" || wget.Host != "" {
		t.Fatalf("LearnHost: %v, curl %q wget %q", got, curl.Host, wget.Host)
	}
	if !(Filter{Text: "example", Allowed: true}).Matches(curl) {
		t.Errorf("the learned host is not searchable")
	}
}

func BenchmarkApply5000(b *testing.B) {
	fs := make([]api.Flow, 5000)
	for i := range fs {
		fs[i] = flow("/usr/bin/app", "127.0.0.1:"+itoa(30000+i), "tcp", "allow", 1)
	}
	for i := 0; i < b.N; i++ {
		m := New()
		m.Apply(fs)
	}
}

func itoa(i int) string {
	s := ""
	for i > 0 {
		s = string(rune('0'+i%10)) + s
		i /= 10
	}
	return s
}

func trafficFlow(dest string, attempts, tx, rx uint64, lastSeen int64) api.Flow {
	f := flow("/usr/bin/rsync", dest, "tcp", "allow", attempts)
	f.TxBytes, f.RxBytes, f.LastSeen = tx, rx, lastSeen
	return f
}

func TestTrafficTotalsAndRates(t *testing.T) {
	m := New()
	m.Apply([]api.Flow{trafficFlow("192.0.2.1:873", 1, 1000, 50000, 1), trafficFlow("192.0.2.2:873", 1, 10, 20, 1)})
	k := AppKey{Exe: "/usr/bin/rsync", Dev: 1, Ino: 2, UID: 1000}
	a := m.App(k)
	if a.TxBytes != 1010 || a.RxBytes != 50020 {
		t.Fatalf("app totals sent %d received %d, want 1010 and 50020", a.TxBytes, a.RxBytes)
	}
	_, rates := m.Tick()
	if a.TxRate != 1010 || a.RxRate != 50020 || len(rates.ChangedApps) != 1 || len(rates.ChangedDests) != 2 {
		t.Fatalf("first second: rates %d/%d, %d apps and %d flows changed", a.TxRate, a.RxRate, len(rates.ChangedApps), len(rates.ChangedDests))
	}
	// One flow moves 4000 more bytes in the next second; the other is idle.
	m.Apply([]api.Flow{trafficFlow("192.0.2.1:873", 1, 1000, 54000, 2)})
	_, rates = m.Tick()
	d := m.Dest(KeyOf(trafficFlow("192.0.2.1:873", 1, 0, 0, 0)))
	if d.RxRate != 4000 || d.RxBytes != 54000 || a.RxRate != 4000 || a.TxRate != 0 || a.RxBytes != 54020 {
		t.Fatalf("second second: flow rate %d total %d, app rates %d/%d total %d", d.RxRate, d.RxBytes, a.TxRate, a.RxRate, a.RxBytes)
	}
	if len(rates.ChangedDests) != 2 {
		t.Fatalf("both flows' rates changed (4000 and 0), got %d", len(rates.ChangedDests))
	}
	// Quiet: the rates fall to zero once, then nothing changes.
	m.Tick()
	if _, rates = m.Tick(); len(rates.ChangedApps)+len(rates.ChangedDests) != 0 {
		t.Fatalf("an idle model changed rates: %+v", rates)
	}
}

func TestForgetAgesOutIdleFlows(t *testing.T) {
	m := New()
	m.Apply([]api.Flow{trafficFlow("192.0.2.1:873", 2, 10, 10, 1000), trafficFlow("192.0.2.2:873", 3, 10, 10, 5000),
		flow("/usr/bin/old", "192.0.2.9:80", "tcp", "deny", 1)})
	m.Tick()
	m.Tick() // rates back to zero
	g := m.Forget(2000)
	if len(g.Dests) != 2 || len(g.Apps) != 1 || g.Apps[0].Key.Exe != "/usr/bin/old" {
		t.Fatalf("forgot %d flows and %+v; want the rsync flow seen at 1 s and /usr/bin/old's", len(g.Dests), g.Apps)
	}
	a := m.App(AppKey{Exe: "/usr/bin/rsync", Dev: 1, Ino: 2, UID: 1000})
	if a == nil || a.Dests != 1 || a.Attempts != 3 || a.TxBytes != 10 || m.Len() != 1 {
		t.Fatalf("rsync after forgetting one flow: %+v, %d flows", a, m.Len())
	}
	// A flow still moving bytes stays however old its last connection attempt is.
	m.Apply([]api.Flow{trafficFlow("192.0.2.2:873", 3, 5000, 10, 5000)})
	m.Tick()
	if g := m.Forget(10000); len(g.Dests) != 0 {
		t.Fatalf("a flow moving bytes was forgotten: %+v", g.Dests)
	}
	// Seen again after being forgotten, it comes back as a new flow.
	if ch := m.Apply([]api.Flow{flow("/usr/bin/old", "192.0.2.9:80", "tcp", "deny", 2)}); len(ch.NewApps) != 1 || len(ch.NewDests) != 1 {
		t.Fatalf("a forgotten flow seen again: %+v", ch)
	}
}
