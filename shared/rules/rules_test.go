package rules

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func uid(u uint32) *uint32 { return &u }

// goodRule is a valid rule that test cases change one field of.
func goodRule() Rule {
	return Rule{
		ID:          "curl-example",
		Application: "/usr/bin/curl",
		Direction:   DirectionOutgoing,
		Remote:      "domain:example.com",
		Port:        "443",
		Protocol:    ProtocolTCP,
		Action:      ActionAllow,
		Duration:    DurationForever,
		Enabled:     true,
		Created:     t0,
		Modified:    t0,
	}
}

func TestValidateAcceptsEveryForm(t *testing.T) {
	for _, mod := range []func(*Rule){
		func(r *Rule) {},
		func(r *Rule) { r.ID = "A.b_c-9" },
		func(r *Rule) { r.ID = strings.Repeat("x", 64) },
		func(r *Rule) { r.Application = "any" },
		func(r *Rule) { r.Application = "flatpak:org.mozilla.firefox" },
		func(r *Rule) { r.Application = "flatpak:io.github.some_user.My-App" },
		func(r *Rule) { r.Application = "snap:firefox" },
		func(r *Rule) { r.Application = "snap:firefox_beta" },
		func(r *Rule) { r.Application = "appimage:/home/me/Apps/Tool-1.2.AppImage" },
		func(r *Rule) { r.Owner = uid(0) },
		func(r *Rule) { r.Owner = uid(1000) },
		func(r *Rule) { r.Direction = "" },
		func(r *Rule) { r.Remote = "any" },
		func(r *Rule) { r.Remote = "192.0.2.1" },
		func(r *Rule) { r.Remote = "2001:db8::1" },
		func(r *Rule) { r.Remote = "10.0.0.0/8" },
		func(r *Rule) { r.Remote = "2001:db8::/32" },
		func(r *Rule) { r.Remote = "192.0.2.1/32" },
		func(r *Rule) { r.Remote = "host:Example.COM." },
		func(r *Rule) { r.Remote = "host:_dmarc.example.com" },
		func(r *Rule) { r.Remote = "domain:com" },
		func(r *Rule) { r.Remote = "wildcard:*.cdn.example.*" },
		func(r *Rule) { r.Remote = "list:ads.trackers_v2" },
		func(r *Rule) { r.Port = "any" },
		func(r *Rule) { r.Port = "1" },
		func(r *Rule) { r.Port = "65535" },
		func(r *Rule) { r.Port = "8000-8100" },
		func(r *Rule) { r.Port = "53-53" },
		func(r *Rule) { r.Protocol = "udp" },
		func(r *Rule) { r.Protocol = "any" },
		func(r *Rule) { r.Action = "deny" },
		func(r *Rule) { r.Duration = "once" },
		func(r *Rule) { r.Duration = "until-quit" },
		func(r *Rule) { r.Duration = "until-restart" },
		func(r *Rule) { r.Duration, r.Until = "until-time", t0.Add(time.Hour) },
		func(r *Rule) { r.Note = "tab\tis fine; so is ünïcödé ✓" },
		func(r *Rule) { r.Note = strings.Repeat("é", 512) },
		func(r *Rule) { r.Created, r.Modified = time.Time{}, time.Time{} },
	} {
		r := goodRule()
		mod(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, c := range []struct {
		field string
		mod   func(*Rule)
		want  string // part of the message
	}{
		{"id", func(r *Rule) { r.ID = "" }, "empty"},
		{"id", func(r *Rule) { r.ID = strings.Repeat("x", 65) }, "65 characters"},
		{"id", func(r *Rule) { r.ID = "has space" }, "' '"},
		{"id", func(r *Rule) { r.ID = ".." }, "not a usable id"},
		{"application", func(r *Rule) { r.Application = "" }, "empty"},
		{"application", func(r *Rule) { r.Application = "curl" }, "/usr/bin/curl"},
		{"application", func(r *Rule) { r.Application = "/usr/bin/../bin/curl" }, `"/usr/bin/curl"`},
		{"application", func(r *Rule) { r.Application = "/usr//bin/curl" }, "not written plainly"},
		{"application", func(r *Rule) { r.Application = "/" }, "directory"},
		{"application", func(r *Rule) { r.Application = "/usr/bin/cu\nrl" }, "control character"},
		{"application", func(r *Rule) { r.Application = "/usr/bin/\xffcurl" }, "UTF-8"},
		{"application", func(r *Rule) { r.Application = "/" + strings.Repeat("a", 4095) }, "4096 bytes"},
		{"application", func(r *Rule) { r.Application = "flatpak:firefox" }, "flatpak id"},
		{"application", func(r *Rule) { r.Application = "flatpak:org.my-corp.App" }, "flatpak id"},
		{"application", func(r *Rule) { r.Application = "flatpak:org.1example.App" }, "flatpak id"},
		{"application", func(r *Rule) { r.Application = "snap:Firefox" }, "snap name"},
		{"application", func(r *Rule) { r.Application = "snap:a" }, "snap name"},
		{"application", func(r *Rule) { r.Application = "snap:my--snap" }, "snap name"},
		{"application", func(r *Rule) { r.Application = "snap:123" }, "snap name"},
		{"application", func(r *Rule) { r.Application = "appimage:Tool.AppImage" }, "absolute path"},
		{"application", func(r *Rule) { r.Application = "exe:/bin/sh" }, "not an application"},
		{"owner", func(r *Rule) { r.Owner = uid(^uint32(0)) }, "not a user id"},
		{"direction", func(r *Rule) { r.Direction = "incoming" }, "not filtered yet"},
		{"direction", func(r *Rule) { r.Direction = "out" }, `"out"`},
		{"remote", func(r *Rule) { r.Remote = "" }, "empty"},
		{"remote", func(r *Rule) { r.Remote = "example.com" }, `"host:example.com"`},
		{"remote", func(r *Rule) { r.Remote = "300.1.2.3" }, "not a valid IP address"},
		{"remote", func(r *Rule) { r.Remote = "fe80::1%eth0" }, "zone"},
		{"remote", func(r *Rule) { r.Remote = "::ffff:192.0.2.1" }, "192.0.2.1"},
		{"remote", func(r *Rule) { r.Remote = "10.1.2.3/8" }, "10.0.0.0/8"},
		{"remote", func(r *Rule) { r.Remote = "10.0.0.0/33" }, "not a valid network"},
		{"remote", func(r *Rule) { r.Remote = "host:" }, "no name"},
		{"remote", func(r *Rule) { r.Remote = "host:a..b" }, "empty label"},
		{"remote", func(r *Rule) { r.Remote = "host:192.0.2.1" }, "IP address"},
		{"remote", func(r *Rule) { r.Remote = "host:bücher.example" }, "xn--"},
		{"remote", func(r *Rule) { r.Remote = "host:*.example.com" }, "wildcard:"},
		{"remote", func(r *Rule) { r.Remote = "host:" + strings.Repeat("a", 64) + ".com" }, "63"},
		{"remote", func(r *Rule) { r.Remote = "host:" + strings.Repeat("abc.", 64) + "com" }, "1-253"},
		{"remote", func(r *Rule) { r.Remote = "domain:exa mple.com" }, "' '"},
		{"remote", func(r *Rule) { r.Remote = "wildcard:img*.example.com" }, "whole labels"},
		{"remote", func(r *Rule) { r.Remote = "wildcard:www.example.com" }, "no *"},
		{"remote", func(r *Rule) { r.Remote = "wildcard:*.*" }, "no fixed label"},
		{"remote", func(r *Rule) { r.Remote = "list:" }, "list name"},
		{"remote", func(r *Rule) { r.Remote = "list:a/b" }, "not a list name"},
		{"port", func(r *Rule) { r.Port = "" }, "empty"},
		{"port", func(r *Rule) { r.Port = "70000" }, `"70000" is out of range 1-65535`},
		{"port", func(r *Rule) { r.Port = "0" }, "out of range"},
		{"port", func(r *Rule) { r.Port = "99999999999999999999999" }, "out of range"},
		{"port", func(r *Rule) { r.Port = "0443" }, "not a port"},
		{"port", func(r *Rule) { r.Port = "+443" }, "not a port"},
		{"port", func(r *Rule) { r.Port = "https" }, "not a port"},
		{"port", func(r *Rule) { r.Port = "100-90" }, `"90-100"`},
		{"port", func(r *Rule) { r.Port = "1-2-3" }, "not a port"},
		{"port", func(r *Rule) { r.Port = "80-" }, "not a port"},
		{"protocol", func(r *Rule) { r.Protocol = "" }, "empty"},
		{"protocol", func(r *Rule) { r.Protocol = "icmp" }, "not supported"},
		{"protocol", func(r *Rule) { r.Protocol = "TCP" }, "not supported"},
		{"action", func(r *Rule) { r.Action = "" }, "empty"},
		{"action", func(r *Rule) { r.Action = "ask" }, "not an action"},
		{"duration", func(r *Rule) { r.Duration = "" }, "empty"},
		{"duration", func(r *Rule) { r.Duration = "always" }, "not a duration"},
		{"until", func(r *Rule) { r.Duration = "until-time" }, "missing"},
		{"until", func(r *Rule) { r.Until = t0 }, "only applies"},
		{"until", func(r *Rule) { r.Duration, r.Until = "until-time", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "9999"},
		{"note", func(r *Rule) { r.Note = strings.Repeat("x", 1025) }, "1025 bytes"},
		{"note", func(r *Rule) { r.Note = "line\nbreak" }, "control character"},
		{"note", func(r *Rule) { r.Note = "esc\x1b[31m" }, "control character"},
		{"note", func(r *Rule) { r.Note = "bad \xff" }, "UTF-8"},
		{"created", func(r *Rule) { r.Created = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, "cannot be stored"},
		{"modified", func(r *Rule) { r.Modified = time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC) }, "cannot be stored"},
	} {
		r := goodRule()
		c.mod(&r)
		err := r.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: %+v: got %v, want a *FieldError", c.field, r, err)
			continue
		}
		if fe.Field != c.field || !strings.Contains(err.Error(), `field "`+c.field+`"`) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %q (field %q), want field %q and %q", c.field, err, fe.Field, c.field, c.want)
		}
		if fe.Index != -1 {
			t.Errorf("%s: index %d, want -1", c.field, fe.Index)
		}
		if len(err.Error()) > 600 {
			t.Errorf("%s: message of %d bytes; long values must be shortened", c.field, len(err.Error()))
		}
	}
}

func TestValidateErrorNamesRuleOnlyByUsableID(t *testing.T) {
	r := goodRule()
	r.Port = "70000"
	if got, want := r.Validate().Error(), `rule "curl-example": field "port": "70000" is out of range 1-65535`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	r.ID = strings.Repeat("x", 100)
	if got := r.Validate().Error(); strings.Contains(got, "xxxx") || !strings.HasPrefix(got, `field "id"`) {
		t.Errorf("an invalid id is repeated in the message: %q", got)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	e := &FieldError{File: "/etc/tattle/rules.d/10-admin.json", Index: 2, RuleID: "block-ads", Field: "port", Msg: `"70000" is out of range 1-65535`}
	if got, want := e.Error(), `/etc/tattle/rules.d/10-admin.json: rule 3 (id "block-ads"): field "port": "70000" is out of range 1-65535`; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	cause := errors.New("boom")
	e = &FieldError{File: "f.json", Index: -1, Err: cause}
	if e.Error() != "f.json: boom" || !errors.Is(e, cause) {
		t.Errorf("got %q, unwraps to cause: %v", e.Error(), errors.Is(e, cause))
	}
}

func TestCompile(t *testing.T) {
	r := goodRule()
	r.Direction = ""
	r.Remote = "host:WWW.Example.com."
	r.Port = "8000-8100"
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.AppKind != AppPath || c.AppValue != "/usr/bin/curl" || c.RemoteKind != RemoteHost || c.Name != "www.example.com" ||
		c.PortLo != 8000 || c.PortHi != 8100 || c.Proto != "tcp" || c.Rule.Direction != "outgoing" {
		t.Errorf("got %+v", c)
	}
	for remote, want := range map[string]Compiled{
		"any":                  {RemoteKind: RemoteAny},
		"192.0.2.1":            {RemoteKind: RemoteIP, Prefix: mustPrefix("192.0.2.1/32")},
		"192.0.2.1/32":         {RemoteKind: RemoteIP, Prefix: mustPrefix("192.0.2.1/32")},
		"2001:db8::1":          {RemoteKind: RemoteIP, Prefix: mustPrefix("2001:db8::1/128")},
		"10.0.0.0/8":           {RemoteKind: RemoteCIDR, Prefix: mustPrefix("10.0.0.0/8")},
		"domain:Example.com":   {RemoteKind: RemoteDomain, Name: "example.com"},
		"wildcard:*.CDN.com":   {RemoteKind: RemoteWildcard, Name: "*.cdn.com"},
		"list:Ads":             {RemoteKind: RemoteList, Name: "Ads"},
		"host:printer":         {RemoteKind: RemoteHost, Name: "printer"},
		"domain:example.co.uk": {RemoteKind: RemoteDomain, Name: "example.co.uk"},
	} {
		r.Remote = remote
		c, err := Compile(r)
		if err != nil {
			t.Errorf("%s: %v", remote, err)
			continue
		}
		if c.RemoteKind != want.RemoteKind || c.Prefix != want.Prefix || c.Name != want.Name {
			t.Errorf("%s: got %v %v %q, want %v %v %q", remote, c.RemoteKind, c.Prefix, c.Name, want.RemoteKind, want.Prefix, want.Name)
		}
		if c.Prefix.IsValid() && c.Prefix.Addr().Is4In6() {
			t.Errorf("%s: IPv4 became IPv4-mapped", remote)
		}
	}
	for app, want := range map[string][2]string{
		"any":                          {"any", ""},
		"flatpak:org.mozilla.firefox":  {"flatpak", "org.mozilla.firefox"},
		"snap:firefox":                 {"snap", "firefox"},
		"appimage:/opt/Tool.AppImage":  {"appimage", "/opt/Tool.AppImage"},
		"/usr/lib/firefox/firefox-bin": {"path", "/usr/lib/firefox/firefox-bin"},
	} {
		r := goodRule()
		r.Application = app
		c, err := Compile(r)
		if err != nil || c.AppKind.String() != want[0] || c.AppValue != want[1] {
			t.Errorf("%s: got %v %q %v, want %v", app, c.AppKind, c.AppValue, err, want)
		}
	}
	r = goodRule()
	r.Port = "any"
	r.Protocol = "any"
	if c, _ := Compile(r); c.PortLo != 0 || c.PortHi != 0 || c.Proto != "any" {
		t.Errorf("any port/protocol compiled to %d-%d %q", c.PortLo, c.PortHi, c.Proto)
	}
	r.Port = "99999"
	if _, err := Compile(r); err == nil {
		t.Error("Compile accepted an invalid rule")
	}
}

// equalRules reports whether two rules are the same, comparing times as instants.
func equalRules(a, b Rule) bool {
	if (a.Owner == nil) != (b.Owner == nil) || a.Owner != nil && *a.Owner != *b.Owner {
		return false
	}
	if !a.Until.Equal(b.Until) || !a.Created.Equal(b.Created) || !a.Modified.Equal(b.Modified) {
		return false
	}
	a.Owner, b.Owner = nil, nil
	a.Until, b.Until, a.Created, b.Created, a.Modified, b.Modified = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func equalFiles(a, b *File) bool {
	if a.Version != b.Version || a.Name != b.Name || len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		if !equalRules(a.Rules[i], b.Rules[i]) {
			return false
		}
	}
	return true
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
