// Package rulefiles holds the import tests over the rule files in tests/testdata/rulefiles: the figures of
// issue 14 (tests/output/import.txt), OpenSnitch's decisions kept, and imports never widening.
package rulefiles

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/lists"
	"github.com/tattlefw/tattle/shared/rules"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func corpus(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata", "rulefiles"}, parts...)...)
}

// results collects the figures for tests/output/import.txt.
type results struct {
	mu    sync.Mutex
	lines []string
}

var report results

func (r *results) add(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	dir := os.Getenv("TATTLE_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "output")
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "import.txt"), []byte(strings.Join(r.lines, "\n")+"\n"), 0o644)
}

func figures(rep rules.ImportReport) string {
	return fmt.Sprintf("files %d, rules in %d, imported exactly %d, reported %d, refused %d (Tattle rules %d, named lists %d, report lines %d)",
		rep.Files, rep.RulesIn, rep.Exact, rep.Reported, rep.Refused, rep.Imported, rep.Lists, len(rep.Skipped))
}

// osSet reads an OpenSnitch set of the corpus: its rule files and the list directories they name, found
// under the set's lists/ by their last path element (where tattlectl --lists finds them).
func osSet(t *testing.T, dir string) ([]rules.SourceFile, []rules.ListDir) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "rules", "*.json"))
	sort.Strings(names)
	var files []rules.SourceFile
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rules.SourceFile{Name: filepath.Join(filepath.Base(dir), "rules", filepath.Base(n)), Data: data})
	}
	var dirs []rules.ListDir
	for _, d := range rules.OpenSnitchListDirs(files) {
		ld := rules.ListDir{Path: d}
		entries, _ := os.ReadDir(filepath.Join(dir, "lists", filepath.Base(d)))
		for _, e := range entries {
			data, _ := os.ReadFile(filepath.Join(dir, "lists", filepath.Base(d), e.Name()))
			ld.Files = append(ld.Files, rules.SourceFile{Name: e.Name(), Data: data})
		}
		dirs = append(dirs, ld)
	}
	return files, dirs
}

// tattleLists loads the named lists an import made through helper/lists, as the helper does (the file the
// helper writes: one entry a line), and returns Tattle's lookup over them.
func tattleLists(t *testing.T, nls []rules.NamedList) rules.ListLookup {
	t.Helper()
	dir := t.TempDir()
	var named []*lists.Named
	for _, nl := range nls {
		p := filepath.Join(dir, nl.Name+".list")
		if err := os.WriteFile(p, []byte(strings.Join(nl.Entries, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := lists.New(lists.Config{Name: nl.Name, Location: p, StateDir: dir, Limits: lists.Limits{ExactNames: nl.Exact}})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Refresh(context.Background()); err != nil && len(nl.Entries) > 0 {
			t.Fatalf("list %s: %v", nl.Name, err)
		}
		named = append(named, n)
	}
	set, err := lists.NewSet(named...)
	if err != nil {
		t.Fatal(err)
	}
	return set.Lookup
}

func compileAll(t *testing.T, rs []rules.Rule) []rules.Compiled {
	t.Helper()
	var out []rules.Compiled
	for _, r := range rs {
		c, err := rules.Compile(r)
		if err != nil {
			t.Fatalf("imported rule %s does not compile: %v", r.ID, err)
		}
		out = append(out, c)
	}
	return out
}

// vocab is what random flows are made of: the values the rules and lists talk about, values next to them,
// and values nobody mentions.
type vocab struct {
	apps, hosts []string
	addrs       []netip.Addr
	ports       []uint16
}

func newVocab(rs []rules.Rule, nls []rules.NamedList, extra []string) *vocab {
	v := &vocab{apps: []string{"/usr/bin/other", "/usr/lib/firefox-esr/firefox-esr", "/usr/bin/curl"},
		hosts: []string{"unrelated.test", "www.example.org", "example.org", "a.b.c.test"},
		ports: []uint16{1, 22, 53, 80, 123, 443, 8080, 65535}}
	v.addrs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.200"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.9.9.9")}
	addName := func(n string) {
		v.hosts = append(v.hosts, n, "www."+n, "x.y."+n, "not"+n)
	}
	for _, s := range extra {
		addName(s)
	}
	for _, r := range rs {
		if strings.HasPrefix(r.Application, "/") {
			v.apps = append(v.apps, r.Application)
		}
		c, _ := rules.Compile(r)
		switch c.RemoteKind {
		case rules.RemoteHost, rules.RemoteDomain:
			addName(c.Name)
		case rules.RemoteWildcard:
			addName(strings.ReplaceAll(c.Name, "*", "w"))
		case rules.RemoteIP, rules.RemoteCIDR:
			a := c.Prefix.Addr()
			v.addrs = append(v.addrs, a, a.Next())
		}
		if c.PortHi != 0 {
			v.ports = append(v.ports, c.PortLo, c.PortHi, c.PortHi+1)
		}
	}
	for _, l := range nls {
		for _, e := range l.Entries {
			if p, err := netip.ParsePrefix(e); err == nil {
				v.addrs = append(v.addrs, p.Addr(), p.Addr().Next())
			} else if a, err := netip.ParseAddr(e); err == nil {
				v.addrs = append(v.addrs, a)
			} else {
				addName(e)
			}
		}
	}
	return v
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (v *vocab) flow(r *rand.Rand) (rules.Flow, osmFlow) {
	f := rules.Flow{AppPath: pick(r, v.apps), UID: pick(r, []uint32{0, 1000, 1001}), Port: pick(r, v.ports), Proto: pick(r, []string{"tcp", "udp"})}
	switch r.IntN(4) {
	case 0:
		b := make([]byte, 4)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		f.Addr = netip.AddrFrom4([4]byte(b))
	default:
		f.Addr = pick(r, v.addrs)
	}
	if r.IntN(3) == 0 {
		f.Port = uint16(1 + r.IntN(65535))
	}
	host := ""
	if r.IntN(5) > 1 {
		host = pick(r, v.hosts)
		f.Hostnames = []string{host}
	}
	return f, osmFlow{path: f.AppPath, uid: f.UID, ip: net.IP(f.Addr.AsSlice()), host: host, port: f.Port, proto: f.Proto}
}

func decision(c *rules.Compiled) string {
	if c == nil {
		return ""
	}
	return c.Rule.Action
}

// Issue 14, must show 2: for each OpenSnitch set, 10,000 random flows decided by the independent model of
// OpenSnitch (opensnitch_model_test.go) and by rules.Decide on the imported set agree, for a system import
// and for a user's import (flows of that user). Sets named refused-* are refused whole, with the reason.
func TestOpenSnitchDecisionsPreserved(t *testing.T) {
	sets, _ := filepath.Glob(corpus("opensnitch", "*"))
	sort.Strings(sets)
	if len(sets) < 5 {
		t.Fatalf("corpus has %d OpenSnitch sets", len(sets))
	}
	for _, dir := range sets {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			files, dirs := osSet(t, dir)
			for _, user := range []*uint32{nil, ptr(1000)} {
				res, err := rules.ImportOpenSnitchSet(files, dirs, rules.ImportOptions{Now: t0, Owner: user})
				if err != nil {
					t.Fatal(err)
				}
				who := "system import"
				if user != nil {
					who = "user 1000's import"
				}
				if strings.HasPrefix(name, "refused-") {
					if len(res.Rules) != 0 || res.Report.Refused != res.Report.RulesIn || !strings.Contains(strings.Join(res.Report.Skipped, "\n"), "the set is not imported") {
						t.Fatalf("%s: set not refused: %+v", who, res.Report)
					}
					if user == nil {
						report.add(t, "opensnitch/%s: refused as a whole: %s; reason: %s", name, figures(res.Report), res.Report.Skipped[0])
					}
					continue
				}
				if len(res.Rules) == 0 {
					t.Fatalf("%s: nothing imported: %v", who, res.Report.Skipped)
				}
				model, err := osmLoad(filepath.Join(dir, "rules"), func(d string) string { return filepath.Join(dir, "lists", filepath.Base(d)) })
				if err != nil {
					t.Fatal(err)
				}
				compiled := compileAll(t, res.Rules)
				lookup := tattleLists(t, res.Lists)
				v := newVocab(res.Rules, res.Lists, []string{"example.com", "doubleclick.net", "tracker.example", "cdn.example", "ads1.example", "tracker.example"})
				rng := rand.New(rand.NewPCG(14, uint64(len(name))))
				const n = 10000
				agree, decided := 0, 0
				for i := 0; i < n; i++ {
					f, of := v.flow(rng)
					if user != nil {
						f.UID, of.uid = *user, *user
					}
					want := osmDecide(model, of)
					got := decision(rules.Decide(compiled, f, lookup, t0))
					if want != "" {
						decided++
					}
					if got == want {
						agree++
					} else if n-agree <= 5 {
						t.Errorf("%s: flow %+v (OpenSnitch sees %+v): OpenSnitch %q, Tattle %q", who, f, of, want, got)
					}
				}
				if agree != n {
					t.Errorf("%s: %d of %d flows decided alike", who, agree, n)
				}
				report.add(t, "opensnitch/%s (%s): %s; %d random flows (%d decided by a rule): %d agree (%.2f%%)",
					name, who, figures(res.Report), n, decided, agree, 100*float64(agree)/n)
			}
		})
	}
}

func ptr(u uint32) *uint32 { return &u }

// The Little Snitch corpus imports with the figures written to import.txt, and every file's report is
// one line per reason, with file:line:col.
func TestLittleSnitchCorpus(t *testing.T) {
	files, _ := filepath.Glob(corpus("littlesnitch", "*.lsrules"))
	sort.Strings(files)
	if len(files) < 3 {
		t.Fatalf("corpus has %d Little Snitch files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join("littlesnitch", filepath.Base(f))
		for _, user := range []*uint32{nil, ptr(1000)} {
			res, err := rules.ImportLittleSnitchFile(name, data, rules.ImportOptions{Now: t0, Owner: user})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if res.Report.Exact+res.Report.Reported+res.Report.Refused != res.Report.RulesIn {
				t.Errorf("%s: counts do not add up: %+v", name, res.Report)
			}
			if len(res.Report.Skipped) > rules.MaxReportLines+1 {
				t.Errorf("%s: %d report lines", name, len(res.Report.Skipped))
			}
			for _, line := range res.Report.Skipped {
				if strings.HasPrefix(line, "not imported") && !strings.Contains(line, name+":") {
					t.Errorf("%s: report line without file:line:col: %s", name, line)
				}
			}
			who := "system import"
			if user != nil {
				who = "user 1000's import (--user)"
			}
			report.add(t, "%s (%s): %s", name, who, figures(res.Report))
		}
	}
}
