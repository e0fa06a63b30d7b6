package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ImportReport says what an import or export could not carry over, rule by rule, in plain words. A rule that
// was carried over in part (say, one of its five hosts was malformed) is counted in Imported and explained
// in Skipped.
type ImportReport struct {
	Imported int      // Tattle rules made
	Skipped  []string // one line per reason (not per rule), naming where in the source it applies
	Files    int      // source files read
	RulesIn  int      // source rules (each entry of a blocklist key counts as one)
	Exact    int      // source rules imported with their whole meaning
	Reported int      // source rules imported in part, or imported disabled and flagged
	Refused  int      // source rules not imported
	Lists    int      // named lists made
}

// maxImportRules bounds one import. Source rules expand (one Little Snitch rule with ten hosts and three port
// ranges is thirty Tattle rules), so a small file could otherwise ask for millions.
const maxImportRules = 100000

// importer collects converted rules, checks each one, and keeps the report.
type importer struct {
	file  string
	now   time.Time
	rules []Rule
	ids   map[string]bool
	rep   ImportReport
}

func newImporter(file string, now time.Time) *importer {
	return &importer{file: file, now: now.Round(0), ids: map[string]bool{}}
}

func (im *importer) skip(format string, args ...any) {
	im.rep.Skipped = append(im.rep.Skipped, fmt.Sprintf(format, args...))
}

// add completes r (direction, times) and keeps it if it validates; otherwise the report says why not.
// It fails only when the import as a whole grows too large.
func (im *importer) add(r Rule, where string) error {
	if len(im.rules) >= maxImportRules {
		return im.tooMany()
	}
	r.Direction = DirectionOutgoing
	r.Created, r.Modified = im.now, im.now
	if err := r.Validate(); err != nil {
		im.skip("%s: cannot be imported: %v", where, err)
		return nil
	}
	if im.ids[r.ID] {
		im.skip("%s: cannot be imported: the id %q is already taken by another imported rule", where, r.ID)
		return nil
	}
	im.ids[r.ID] = true
	im.rules = append(im.rules, r)
	return nil
}

func (im *importer) tooMany() error {
	return &FieldError{File: im.file, Index: -1,
		Msg: fmt.Sprintf("would make more than %d rules; split the source, or load large block lists as a named list and use one \"list:NAME\" rule", maxImportRules)}
}

func (im *importer) result() ([]Rule, ImportReport, error) {
	im.rep.Imported = len(im.rules)
	return im.rules, im.rep, nil
}

// decodeTop reads a JSON object's members, refusing broken JSON and trailing data with the position.
func decodeTop(file string, data []byte) (map[string]json.RawMessage, error) {
	p := &parser{name: file, data: data}
	if len(data) > MaxFileSize {
		return nil, p.fail(-1, "", fmt.Sprintf("is %d bytes, more than the %d this importer reads", len(data), MaxFileSize), nil)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // editors on other systems add one; it carries no meaning
	p.data = data
	p.dec = json.NewDecoder(bytes.NewReader(data))
	var top map[string]json.RawMessage
	if err := p.dec.Decode(&top); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok {
			return nil, p.fail(-1, "", "is not a JSON object {...}", err)
		}
		return nil, p.jsonError(-1, err)
	}
	if top == nil {
		return nil, p.fail(-1, "", "is not a JSON object {...}", nil)
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, p.fail(-1, "", "has more data after the JSON object; a file holds one object", err)
	}
	return top, nil
}

// Slug makes an id part from free text: lower-case letters and digits, other runs become one '-', at most
// max bytes.
func Slug(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
			if b.Len() >= max {
				break
			}
		} else {
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// groupSlug names an imported group for rule ids: its own name, else the file's, else "group".
func groupSlug(groupName, file string) string {
	if s := Slug(groupName, 24); s != "" {
		return s
	}
	base := filepath.Base(file)
	if s := Slug(strings.TrimSuffix(base, filepath.Ext(base)), 24); s != "" {
		return s
	}
	return "group"
}

// cleanNote turns source text into a valid note: UTF-8, line breaks and other control characters as spaces,
// cut to MaxNoteLen bytes.
func cleanNote(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(c rune) rune {
		if c != '\t' && unicode.IsControl(c) {
			return ' '
		}
		return c
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > MaxNoteLen {
		cut := MaxNoteLen - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// short shows source text in a report line, cut and on one line.
func short(s string) string {
	s = cleanNote(s)
	if len(s) > 80 {
		cut := 80
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// remoteForHost maps a host name from another firewall to a Tattle remote: an address stays an address,
// a name becomes kind+name. The message says why it cannot be mapped.
func remoteForHost(h, kind string) (string, string) {
	h = strings.TrimSpace(h)
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		if a.Zone() != "" {
			return "", fmt.Sprintf("%q has an interface zone, which Tattle rules do not use", h)
		}
		return a.String(), ""
	}
	remote := kind + strings.ToLower(strings.TrimSuffix(h, ".")) // one spelling per name, so duplicates fold
	if _, msg := parseRemote(remote); msg != "" {
		return "", fmt.Sprintf("%q: %s", h, msg)
	}
	return remote, ""
}

// remotesForAddress maps an address, a network (host bits are ignored, as the source firewalls do) or an
// inclusive range "a-b" (covered exactly by networks) to Tattle remotes.
func remotesForAddress(s string) ([]string, string) {
	s = strings.TrimSpace(s)
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, errA := netip.ParseAddr(strings.TrimSpace(lo))
		b, errB := netip.ParseAddr(strings.TrimSpace(hi))
		if errA != nil || errB != nil || a.Zone() != "" || b.Zone() != "" {
			return nil, fmt.Sprintf("%q is not an address range", s)
		}
		a, b = a.Unmap(), b.Unmap()
		if a.Is4() != b.Is4() || b.Less(a) {
			return nil, fmt.Sprintf("%q is not an address range (mixed families, or the end comes before the start)", s)
		}
		var out []string
		for _, p := range rangePrefixes(a, b) {
			out = append(out, prefixRemote(p))
		}
		return out, ""
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return nil, fmt.Sprintf("%q is not a network", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Sprintf("%q mixes IPv4 and IPv6", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return []string{prefixRemote(p.Masked())}, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return nil, fmt.Sprintf("%q is not an address", s)
	}
	return []string{a.Unmap().String()}, ""
}

func prefixRemote(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// rangePrefixes covers the inclusive range [a, b] (same family) with the fewest networks: at each step the
// largest aligned block that starts at a and stays within b.
func rangePrefixes(a, b netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || b.Less(lastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last == b || !last.Next().IsValid() {
			return out
		}
		a = last.Next()
	}
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 1 << (7 - i%8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom16(b)
}
