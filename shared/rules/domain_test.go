package rules

import "testing"

func TestRegistrableDomain(t *testing.T) {
	for host, want := range map[string]string{
		"www.example.co.uk":    "example.co.uk",
		"example.co.uk":        "example.co.uk",
		"foo.github.io":        "foo.github.io",
		"a.b.foo.github.io":    "foo.github.io",
		"www.example.com":      "example.com",
		"WWW.Example.COM.":     "example.com",
		"www.example.test":     "example.test",
		"co.uk":                "co.uk",
		"localhost":            "localhost",
		"":                     "",
		"deep.sub.mozilla.org": "mozilla.org",
	} {
		if got := RegistrableDomain(host); got != want {
			t.Errorf("RegistrableDomain(%q) = %q, want %q", host, got, want)
		}
	}
}
