package rules

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// RegistrableDomain is the domain an answer's "this domain" scope covers for host: its registrable part by the
// public suffix list (www.example.co.uk -> example.co.uk; foo.github.io -> foo.github.io, since github.io is a
// public suffix). A host that is itself a public suffix or has no registrable part (a single label, an
// address) is returned as it is. The helper, tattlectl and the app all use this, so the label a user chose
// and the rule made from it never differ.
func RegistrableDomain(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return d
}
