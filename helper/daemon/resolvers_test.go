package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/resolvers"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// shippedDNS is data/rules.d/dns.json, the factory DNS rules as installed.
func shippedDNS(t *testing.T) []rules.Rule {
	t.Helper()
	p := filepath.Join("..", "..", "data", "rules.d", "dns.json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := rules.Parse(p, data)
	if err != nil {
		t.Fatal(err)
	}
	return f.Rules
}

// kernelRuleFor is the rule of the entry for addr:53 in the any-application scope, "" if none.
func kernelRuleFor(res ruleset.Result, addr string, proto enforce.Protocol) string {
	a := netip.MustParseAddr(addr)
	d := enforce.Destination{Scope: enforce.Scope{App: identity.Any, UID: identity.AnyUID}, Prefix: netip.PrefixFrom(a, a.BitLen()), Port: 53, Proto: proto}
	if r, ok := res.Kernel.Destinations[d]; ok {
		return res.KernelIDs[r.RuleID]
	}
	return ""
}

// TestResolversRecompileTheFactoryDNSRules: the shipped factory DNS rules compile, through the daemon's seam
// (listAddrs, lookupList), to kernel entries for the resolvers of the file and no others; when the file is
// replaced by a rename, the list's Run calls back and the next compilation has the new resolver's entries and
// none of the old one's, and userspace decides the same.
func TestResolversRecompileTheFactoryDNSRules(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 192.0.2.1\n"), 0o644)
	r, err := resolvers.New(resolvers.Options{Files: []string{conf}, Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	d.UseResolvers(r)
	rs := shippedDNS(t)
	compile := func() ruleset.Result {
		t.Helper()
		res, err := ruleset.CompileOptions(rs, time.Now(), ruleset.Options{Stat: func(string) (identity.Executable, error) {
			return identity.Executable{}, os.ErrNotExist
		}, ListAddrs: d.listAddrs})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	decide := func(res ruleset.Result, addr string) string {
		f := rules.Flow{AppPath: "/usr/bin/python3", Addr: netip.MustParseAddr(addr), Port: 53, Proto: "udp"}
		if w := rules.Decide(res.Active, f, d.lookupList(), time.Now()); w != nil {
			return w.Rule.ID
		}
		return ""
	}
	res := compile()
	for _, c := range []struct {
		addr  string
		proto enforce.Protocol
		want  string
	}{{"192.0.2.1", enforce.UDP, "factory-dns-udp"}, {"192.0.2.1", enforce.TCP, "factory-dns-tcp"}, {"192.0.2.2", enforce.UDP, ""}} {
		if got := kernelRuleFor(res, c.addr, c.proto); got != c.want {
			t.Errorf("%s:53/%v: kernel entry of %q, want %q", c.addr, c.proto, got, c.want)
		}
	}
	for dst, ruling := range res.Kernel.Destinations {
		if id := res.KernelIDs[ruling.RuleID]; (id == "factory-dns-udp" || id == "factory-dns-tcp") && dst.Prefix.Bits() != 32 {
			t.Errorf("%s has an entry for %v: not one resolver", id, dst.Prefix)
		}
	}
	if got := decide(res, "192.0.2.1"); got != "factory-dns-udp" {
		t.Errorf("userspace decides 192.0.2.1:53 by %q", got)
	}
	if got := decide(res, "192.0.2.2"); got != "" {
		t.Errorf("userspace decides 192.0.2.2:53 (not a resolver) by %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan ruleset.Result, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, func() { changed <- compile() })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond) // Run's own first load finds nothing new
	tmp := conf + ".new"
	os.WriteFile(tmp, []byte("# replaced\nnameserver 192.0.2.2\n"), 0o644)
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	select {
	case res = <-changed:
	case <-time.After(3 * time.Second):
		t.Fatal("replacing the file did not recompile within 3 s")
	}
	if got := kernelRuleFor(res, "192.0.2.2", enforce.UDP); got != "factory-dns-udp" {
		t.Errorf("after the change 192.0.2.2:53 has %q", got)
	}
	if got := kernelRuleFor(res, "192.0.2.1", enforce.UDP); got != "" {
		t.Errorf("after the change the old resolver keeps an entry of %q", got)
	}
	if decide(res, "192.0.2.2") != "factory-dns-udp" || decide(res, "192.0.2.1") != "" {
		t.Errorf("after the change userspace decides new %q, old %q", decide(res, "192.0.2.2"), decide(res, "192.0.2.1"))
	}
}

// TestResolversNameIsReserved: no list definition or import takes the built-in list's name.
func TestResolversNameIsReserved(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "resolvers.json"), []byte(`{"location": "/etc/hosts"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "ads.json"), []byte(`{"location": "/etc/hosts"}`), 0o644)
	cfgs, errs := ReadListConfigs(dir, "")
	if len(cfgs) != 1 || cfgs[0].Name != "ads" || len(errs) != 1 || !errors.Is(errs[0], ErrBuiltinList) {
		t.Errorf("configs %+v, errors %v", cfgs, errs)
	}
	d := &Daemon{}
	if !d.HasList(resolvers.ListName) {
		t.Error("HasList(resolvers) is false: an import could make a list of that name")
	}
}
