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
	if got := m.Tick(); len(got) != 1 || got[0].History[HistoryLen-1] != 4 {
		t.Fatalf("first tick: %+v", got)
	}
	m.Apply([]api.Flow{flow("/bin/a", "192.0.2.1:1", "udp", "allow", 6)})
	a := m.Tick()[0]
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
	if got := m.Tick(); len(got) != 0 {
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
