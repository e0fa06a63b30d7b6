package rules

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Prefixes of the Application field.
const (
	appFlatpak  = "flatpak:"
	appSnap     = "snap:"
	appAppImage = "appimage:"
)

// Prefixes of the Remote field.
const (
	remoteHost     = "host:"
	remoteDomain   = "domain:"
	remoteWildcard = "wildcard:"
	remoteList     = "list:"
)

const appForms = `use "any", an absolute path like "/usr/bin/curl", "flatpak:org.example.App", "snap:name" or "appimage:/path/App.AppImage"`

// parseApplication splits an Application value into its kind and value; msg says what is wrong, if anything.
func parseApplication(s string) (kind AppKind, value, msg string) {
	switch {
	case s == Any:
		return AppAny, "", ""
	case s == "":
		return 0, "", "is empty; " + appForms
	case strings.HasPrefix(s, "/"):
		return AppPath, s, checkPath(s)
	case strings.HasPrefix(s, appFlatpak):
		v := s[len(appFlatpak):]
		return AppFlatpak, v, checkFlatpakID(v)
	case strings.HasPrefix(s, appSnap):
		v := s[len(appSnap):]
		return AppSnap, v, checkSnapName(v)
	case strings.HasPrefix(s, appAppImage):
		v := s[len(appAppImage):]
		if !strings.HasPrefix(v, "/") {
			return AppImage, v, fmt.Sprintf("%s does not name an AppImage file by its absolute path; write it like \"appimage:/home/me/Apps/App.AppImage\"", quote(s))
		}
		return AppImage, v, checkPath(v)
	case !strings.Contains(s, ":") && !strings.Contains(s, "/"):
		return 0, "", fmt.Sprintf("%s is not an absolute path; write the program's full path, for example \"/usr/bin/%s\"", quote(s), s)
	}
	return 0, "", fmt.Sprintf("%s is not an application; %s", quote(s), appForms)
}

// checkPath accepts absolute, clean paths: the helper compares paths as strings with what the kernel reports,
// which never contains "//", "/./" or "/../", so such a rule would silently never match.
func checkPath(p string) string {
	if len(p) > MaxPathLen {
		return fmt.Sprintf("is a path of %d bytes; paths have at most %d", len(p), MaxPathLen)
	}
	if !utf8.ValidString(p) {
		return "is not valid UTF-8; Tattle can only name files whose paths are UTF-8"
	}
	for _, c := range p {
		if unicode.IsControl(c) {
			return fmt.Sprintf("contains the control character %U; Tattle cannot name such files", c)
		}
	}
	if p == "/" {
		return `"/" is a directory, not a program; give the program's path`
	}
	if c := path.Clean(p); c != p {
		return fmt.Sprintf("%s is not written plainly; write %q", quote(p), c)
	}
	return ""
}

// checkFlatpakID follows flatpak's own rules for application ids, so that a rule can only name an id that
// can exist.
func checkFlatpakID(id string) string {
	const how = `; flatpak ids look like "org.example.App" (three or more parts of letters, digits and '_', '-' only in the last)`
	if id == "" {
		return "has no flatpak id" + how
	}
	if len(id) > 255 {
		return fmt.Sprintf("has a flatpak id of %d bytes; flatpak ids have at most 255", len(id))
	}
	parts := strings.Split(id, ".")
	if len(parts) < 3 {
		return fmt.Sprintf("%s is not a flatpak id%s", quote(id), how)
	}
	for i, part := range parts {
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return fmt.Sprintf("%s is not a flatpak id%s", quote(id), how)
		}
		for j := 0; j < len(part); j++ {
			c := part[j]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' && i == len(parts)-1
			if !ok {
				return fmt.Sprintf("%s is not a flatpak id%s", quote(id), how)
			}
		}
	}
	return ""
}

// checkSnapName follows snapd's rules for snap names, with an optional instance key ("name_key") for snaps
// installed in parallel.
func checkSnapName(s string) string {
	const how = `; snap names are 2-40 lower-case letters, digits and single hyphens, like "firefox" (or "firefox_beta" for a parallel install)`
	name, key, hasKey := strings.Cut(s, "_")
	if hasKey {
		if key == "" || len(key) > 10 {
			return fmt.Sprintf("%s is not a snap name%s", quote(s), how)
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return fmt.Sprintf("%s is not a snap name%s", quote(s), how)
			}
		}
	}
	if len(name) < 2 || len(name) > 40 || name[0] == '-' || name[len(name)-1] == '-' || strings.Contains(name, "--") {
		return fmt.Sprintf("%s is not a snap name%s", quote(s), how)
	}
	letter := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return fmt.Sprintf("%s is not a snap name%s", quote(s), how)
		}
	}
	if !letter {
		return fmt.Sprintf("%s is not a snap name%s", quote(s), how)
	}
	return ""
}

// remoteSpec is a parsed Remote value.
type remoteSpec struct {
	kind   RemoteKind
	prefix netip.Prefix // RemoteIP, RemoteCIDR
	name   string       // RemoteHost, RemoteDomain, RemoteWildcard (lower case, no trailing dot), RemoteList
}

const remoteForms = `use "any", an address like "192.0.2.1" or "2001:db8::1", a network like "10.0.0.0/8", "host:example.com", "domain:example.com", "wildcard:*.example.com" or "list:NAME"`

func parseRemote(s string) (remoteSpec, string) {
	switch {
	case s == Any:
		return remoteSpec{kind: RemoteAny}, ""
	case s == "":
		return remoteSpec{}, "is empty; " + remoteForms
	case strings.HasPrefix(s, remoteHost):
		name, msg := checkHostname(s[len(remoteHost):], false)
		return remoteSpec{kind: RemoteHost, name: name}, msg
	case strings.HasPrefix(s, remoteDomain):
		name, msg := checkHostname(s[len(remoteDomain):], false)
		return remoteSpec{kind: RemoteDomain, name: name}, msg
	case strings.HasPrefix(s, remoteWildcard):
		name, msg := checkHostname(s[len(remoteWildcard):], true)
		return remoteSpec{kind: RemoteWildcard, name: name}, msg
	case strings.HasPrefix(s, remoteList):
		name := s[len(remoteList):]
		if msg := checkListName(name); msg != "" {
			return remoteSpec{}, msg
		}
		return remoteSpec{kind: RemoteList, name: name}, ""
	case strings.Contains(s, "/"):
		return parseCIDR(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if strings.Trim(s, "0123456789.") == "" || strings.Contains(s, ":") {
			return remoteSpec{}, fmt.Sprintf("%s is not a valid IP address; %s", quote(s), remoteForms)
		}
		return remoteSpec{}, fmt.Sprintf("%s is not a remote; for a host name write \"host:%s\" (that name only) or \"domain:%s\" (with its subdomains)", quote(s), s, s)
	}
	if msg := checkAddr(a, s); msg != "" {
		return remoteSpec{}, msg
	}
	return remoteSpec{kind: RemoteIP, prefix: netip.PrefixFrom(a, a.BitLen())}, ""
}

// checkAddr refuses address spellings the kernel never reports, which would make a rule that never matches.
func checkAddr(a netip.Addr, s string) string {
	if a.Zone() != "" {
		return fmt.Sprintf("%s has a zone (%%%s); leave it out, rules apply on every interface", quote(s), a.Zone())
	}
	if a.Is4In6() {
		return fmt.Sprintf("%s is an IPv4 address written as IPv6; write it as %s", quote(s), a.Unmap())
	}
	return ""
}

func parseCIDR(s string) (remoteSpec, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return remoteSpec{}, fmt.Sprintf("%s is not a valid network; write networks like \"10.0.0.0/8\" or \"2001:db8::/32\"", quote(s))
	}
	if msg := checkAddr(p.Addr(), s); msg != "" {
		return remoteSpec{}, msg
	}
	if m := p.Masked(); m != p {
		return remoteSpec{}, fmt.Sprintf("%s has bits set after the first %d; write the network as %s", quote(s), p.Bits(), m)
	}
	if p.IsSingleIP() {
		return remoteSpec{kind: RemoteIP, prefix: p}, ""
	}
	return remoteSpec{kind: RemoteCIDR, prefix: p}, ""
}

// checkHostname validates a host name (or, with wild, a wildcard pattern) and returns it lower-cased without
// a trailing dot. Names must be ASCII: DNS carries internationalized names in their xn-- form, so that is the
// form connections are attributed to.
func checkHostname(s string, wild bool) (string, string) {
	if s == "" {
		return "", `has no name after the prefix; write for example "host:example.com"`
	}
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return "", fmt.Sprintf("%s is not a host name; names have 1-253 characters", quote(s))
	}
	stars, literals := 0, 0
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "", fmt.Sprintf("%s has an empty label (two dots in a row, or a leading dot); write names like \"example.com\"", quote(s))
		}
		if label == "*" && wild {
			stars++
			continue
		}
		if len(label) > 63 {
			return "", fmt.Sprintf("%s has a label longer than 63 characters, which DNS does not allow", quote(s))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			case c == '*' && wild:
				return "", fmt.Sprintf("%s uses * inside a label; * stands for whole labels only, as in \"wildcard:*.example.com\"", quote(s))
			case c == '*':
				return "", fmt.Sprintf("%s contains *; for a pattern write \"wildcard:%s\"", quote(s), s)
			case c >= utf8.RuneSelf:
				return "", fmt.Sprintf("%s is not ASCII; write internationalized names in their xn-- form", quote(s))
			default:
				return "", fmt.Sprintf("%s contains %q, which host names cannot", quote(s), rune(c))
			}
		}
		literals++
	}
	if wild {
		if stars == 0 {
			return "", fmt.Sprintf("%s has no *; for that name alone write \"host:%s\"", quote(s), name)
		}
		if literals == 0 {
			return "", fmt.Sprintf("%s has no fixed label; a pattern needs at least one, as in \"*.example.com\"", quote(s))
		}
	} else if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Sprintf("%s is an IP address; write it without the prefix, as %q", quote(s), name)
	}
	return strings.ToLower(name), ""
}

func checkListName(name string) string {
	if name == "" || len(name) > 64 {
		return "needs a list name of 1-64 letters, digits, '.', '_' or '-', as in \"list:ads\""
	}
	for i := 0; i < len(name); i++ {
		if !isIDByte(name[i]) {
			return fmt.Sprintf("%s is not a list name; list names use only letters, digits, '.', '_' and '-'", quote(name))
		}
	}
	return ""
}

// parsePort returns the inclusive range a Port value stands for; 0,0 for "any". Numbers must be written
// plainly (no sign, no leading zero) so that every port has one spelling.
func parsePort(s string) (lo, hi uint16, msg string) {
	const how = `use a port from 1 to 65535 like "443", a range like "8000-8100", or "any"`
	if s == Any {
		return 0, 0, ""
	}
	if s == "" {
		return 0, 0, "is empty; " + how
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, msg = parsePortNumber(a, s)
	if msg != "" {
		return 0, 0, msg
	}
	if !isRange {
		return lo, lo, ""
	}
	hi, msg = parsePortNumber(b, s)
	if msg != "" {
		return 0, 0, msg
	}
	if lo > hi {
		return 0, 0, fmt.Sprintf("%s is a range that ends before it starts; write it as \"%d-%d\"", quote(s), hi, lo)
	}
	return lo, hi, ""
}

func parsePortNumber(n, whole string) (uint16, string) {
	if n == "" || len(n) > 1 && n[0] == '0' || strings.Trim(n, "0123456789") != "" {
		return 0, fmt.Sprintf(`%s is not a port; use a port from 1 to 65535 like "443", a range like "8000-8100", or "any"`, quote(whole))
	}
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil || v < 1 || v > 65535 {
		return 0, fmt.Sprintf("%s is out of range 1-65535", quote(whole))
	}
	return uint16(v), ""
}
