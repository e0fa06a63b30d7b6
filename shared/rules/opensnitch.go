package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// osOperator is an OpenSnitch rule condition. Type "list" ANDs the conditions in List.
type osOperator struct {
	Type      string       `json:"type"`
	Operand   string       `json:"operand"`
	Sensitive bool         `json:"sensitive"`
	Data      string       `json:"data"`
	List      []osOperator `json:"list"`
}

type osRule struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Enabled     bool       `json:"enabled"`
	Precedence  bool       `json:"precedence"`
	Action      string     `json:"action"`
	Duration    string     `json:"duration"`
	Operator    osOperator `json:"operator"`
}

var osTopKeys = map[string]bool{
	"created": true, "updated": true, "name": true, "description": true, "enabled": true, "precedence": true,
	"nolog": true, "action": true, "duration": true, "operator": true,
}

// maxOperatorDepth bounds nested "list" operators; real rules nest one level.
const maxOperatorDepth = 16

// ImportOpenSnitch converts one OpenSnitch rule file into a Tattle rule. OpenSnitch ANDs the conditions of a
// rule; those that map are: "simple" on process.path, dest.host, dest.ip, dest.port, protocol and user.id,
// "network" on dest.network, and "list" operators of those. A "regexp" that is only a plain anchored
// string (^/usr/bin/curl$), or the usual "this domain and its subdomains" pattern (^(.*\.)?example\.com$),
// maps too. Actions: allow; deny and reject become deny. Durations: always -> forever, once -> once,
// "until restart" -> until-restart, and Go durations like "30s", "5m", "1h" -> until-time now+d.
//
// A rule with any condition that cannot be mapped (other regular expressions, blocklist directories,
// command lines, environment variables, interfaces, source addresses, hashes, …) is skipped whole, with the
// reason in the report: dropping one condition of an AND would widen the rule. The id is "os-<name>". The
// error is for input that is not an OpenSnitch rule at all.
func ImportOpenSnitch(name string, data []byte, now time.Time) ([]Rule, ImportReport, error) {
	top, err := decodeTop(name, data)
	if err != nil {
		return nil, ImportReport{}, err
	}
	var src osRule
	if err := json.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &src); err != nil {
		return nil, ImportReport{}, &FieldError{File: name, Index: -1, Msg: "is not an OpenSnitch rule: a field has the wrong type", Err: err}
	}
	if _, ok := top["operator"]; !ok {
		return nil, ImportReport{}, &FieldError{File: name, Index: -1, Field: "operator", Msg: "is missing; this is not an OpenSnitch rule"}
	}
	im := newImporter(name, now)
	where := "rule"
	if src.Name != "" {
		where = fmt.Sprintf("rule %q", short(src.Name))
	}
	for _, key := range sortedKeys(top) {
		if !osTopKeys[key] {
			im.skip("%s: key %q is not part of the OpenSnitch format this importer knows; ignored", where, short(key))
		}
	}
	skip := func(format string, args ...any) ([]Rule, ImportReport, error) {
		im.skip("%s: %s; rule skipped", where, fmt.Sprintf(format, args...))
		return im.result()
	}

	r := Rule{ID: osID(src.Name, name), Application: Any, Remote: Any, Port: Any, Protocol: Any, Enabled: src.Enabled}
	switch strings.ToLower(src.Action) {
	case ActionAllow:
		r.Action = ActionAllow
	case ActionDeny, "reject":
		r.Action = ActionDeny
	default:
		return skip("its action %q is not allow, deny or reject", short(src.Action))
	}
	switch d := strings.ToLower(strings.TrimSpace(src.Duration)); d {
	case "always", "":
		r.Duration = DurationForever
	case "once":
		r.Duration = DurationOnce
	case "until restart":
		r.Duration = DurationUntilRestart
	default:
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return skip("its duration %q is not understood", short(src.Duration))
		}
		r.Duration, r.Until = DurationUntilTime, im.now.Add(dur)
	}

	var c osConds
	if msg := c.collect(&src.Operator, 0); msg != "" {
		return skip("%s", msg)
	}
	if c.app != "" {
		r.Application = c.app
	}
	r.Owner = c.owner
	if c.remote != "" {
		r.Remote = c.remote
	}
	if c.port != "" {
		r.Port = c.port
	}
	if c.proto != "" {
		r.Protocol = c.proto
		// OpenSnitch says "tcp6"/"udp6" for IPv6; Tattle's protocol covers both families. The address family
		// is kept when the rule's remote pins it; otherwise the rule now covers both and the report says so.
		if c.protoFamily != "" && !remotePinsFamily(r.Remote, c.protoFamily == "6") {
			im.skip("%s: OpenSnitch's protocol %q covers only IPv%s; the imported rule covers %s over IPv4 and IPv6",
				where, c.protoSource, c.protoFamily, strings.ToUpper(c.proto))
		}
	}
	if src.Precedence {
		im.skip("%s: its \"precedence\" flag is not kept; Tattle ranks rules by how specific they are (see PRECEDENCE.md)", where)
	}
	r.Note = cleanNote(src.Description)
	if r.Note == "" && src.Name != "" {
		r.Note = cleanNote("Imported from OpenSnitch rule " + strconv.Quote(short(src.Name)))
	}
	if err := im.add(r, where); err != nil {
		return nil, ImportReport{}, err
	}
	return im.result()
}

// osConds is what the conditions of one OpenSnitch rule add up to.
type osConds struct {
	app, remote, port, proto string
	owner                    *uint32
	protoFamily, protoSource string // "4"/"6" when the source protocol named a family; the source word
}

// collect folds op (and, for lists, its members) into c. The message says why the rule cannot be mapped.
func (c *osConds) collect(op *osOperator, depth int) string {
	if depth > maxOperatorDepth {
		return "its conditions are nested too deeply"
	}
	typ, operand := strings.ToLower(op.Type), op.Operand
	if typ == "list" || operand == "list" {
		for i := range op.List {
			if msg := c.collect(&op.List[i], depth+1); msg != "" {
				return msg
			}
		}
		return ""
	}
	if operand == "true" {
		return ""
	}
	data := op.Data
	switch typ {
	case "simple":
	case "network":
		if operand != "dest.network" {
			return fmt.Sprintf("it matches %s as a network, which Tattle cannot express", short(operand))
		}
	case "regexp":
		lit, domain, ok := literalRegexp(data)
		switch {
		case ok && domain && operand == "dest.host":
			if _, msg := parseRemote(remoteDomain + lit); msg != "" {
				return fmt.Sprintf("its destination domain %q: %s", short(lit), msg)
			}
			return c.set(&c.remote, remoteDomain+strings.ToLower(lit), "destination")
		case ok && !domain:
			data = lit
		default:
			return fmt.Sprintf("it matches %s with the regular expression %q, which Tattle cannot express; make a host, domain or wildcard rule instead", short(operand), short(op.Data))
		}
	case "lists":
		return fmt.Sprintf("it uses the block-list directory %q (%s); load those lists into Tattle and make a \"list:NAME\" rule instead", short(op.Data), short(operand))
	default:
		return fmt.Sprintf("its condition type %q is not understood", short(op.Type))
	}

	switch operand {
	case "process.path":
		if _, _, msg := parseApplication(data); msg != "" || !strings.HasPrefix(data, "/") {
			return fmt.Sprintf("its process path %q is not an absolute path Tattle can use", short(data))
		}
		return c.set(&c.app, data, "process path")
	case "dest.host":
		remote, msg := remoteForHost(data, remoteHost)
		if msg != "" {
			return "its destination host " + msg
		}
		return c.set(&c.remote, remote, "destination")
	case "dest.ip":
		a, err := netip.ParseAddr(strings.TrimSpace(data))
		if err != nil || a.Zone() != "" {
			return fmt.Sprintf("its destination address %q is not an IP address", short(data))
		}
		return c.set(&c.remote, a.Unmap().String(), "destination")
	case "dest.network":
		if typ != "network" {
			return fmt.Sprintf("it compares dest.network as text (%q), which OpenSnitch itself does not match", short(data))
		}
		rs, msg := remotesForAddress(data)
		if msg != "" || len(rs) != 1 || !strings.Contains(data, "/") || strings.Contains(data, "-") {
			return fmt.Sprintf("its destination network %q is not a network", short(data))
		}
		return c.set(&c.remote, rs[0], "destination")
	case "dest.port":
		p := strings.TrimSpace(data)
		// One number only: OpenSnitch compares the port as text, so "80-90" never matched there.
		if _, _, msg := parsePort(p); msg != "" || p == Any || strings.Contains(p, "-") {
			return fmt.Sprintf("its destination port %q is not a port from 1 to 65535", short(data))
		}
		return c.set(&c.port, p, "port")
	case "protocol":
		p := strings.ToLower(strings.TrimSpace(data))
		family := ""
		switch p {
		case "tcp", "udp":
			family = "4" // OpenSnitch reports IPv6 connections as tcp6/udp6
		case "tcp6", "udp6":
			family, p = "6", p[:3]
		default:
			return fmt.Sprintf("its protocol %q is not TCP or UDP, which is all Tattle filters", short(data))
		}
		if msg := c.set(&c.proto, p, "protocol"); msg != "" {
			return msg
		}
		if c.protoFamily != "" && c.protoFamily != family {
			return "it requires two different protocols at once, so it never matches"
		}
		c.protoFamily, c.protoSource = family, strings.ToLower(strings.TrimSpace(data))
		return ""
	case "user.id":
		u, err := strconv.ParseUint(strings.TrimSpace(data), 10, 32)
		if err != nil || u == uint64(^uint32(0)) {
			return fmt.Sprintf("its user id %q is not a user id", short(data))
		}
		v := uint32(u)
		if c.owner != nil && *c.owner != v {
			return "it requires two different users at once, so it never matches"
		}
		c.owner = &v
		return ""
	}
	return fmt.Sprintf("it matches on %s, which Tattle rules cannot express", short(operand))
}

// set records one condition; a second, different condition on the same thing cannot be expressed (two
// destinations ANDed is either contradictory or an address-and-name pair Tattle has no form for).
func (c *osConds) set(slot *string, v, what string) string {
	if *slot != "" && *slot != v {
		return fmt.Sprintf("it requires two %s conditions at once (%q and %q), which Tattle cannot express", what, short(*slot), short(v))
	}
	*slot = v
	return ""
}

// literalRegexp recognizes the regular expressions that say no more than a plain string: ^literal$ (ok,
// !domain), and ^(.*\.)?literal$ / ^(.+\.)?literal$, the usual way to write "a domain and its subdomains" in
// OpenSnitch (ok, domain). Anything else is not ok.
func literalRegexp(expr string) (lit string, domain, ok bool) {
	for _, p := range []string{`^(.*\.)?`, `^(.+\.)?`, `^([a-z0-9-]+\.)*`, `^(.*\.)*`} {
		if rest, found := strings.CutPrefix(expr, p); found {
			if s, ok := anchoredLiteral("^" + rest); ok && s != "" {
				return s, true, true
			}
			return "", false, false
		}
	}
	s, ok := anchoredLiteral(expr)
	return s, false, ok && s != ""
}

// anchoredLiteral returns the string an expression of the form ^literal$ matches.
func anchoredLiteral(expr string) (string, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", false
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) != 3 || re.Sub[0].Op != syntax.OpBeginText || re.Sub[2].Op != syntax.OpEndText {
		return "", false
	}
	lit := re.Sub[1]
	if lit.Op != syntax.OpLiteral || lit.Flags&syntax.FoldCase != 0 {
		return "", false
	}
	return string(lit.Rune), true
}

// remotePinsFamily reports whether a remote already limits a rule to one address family.
func remotePinsFamily(remote string, v6 bool) bool {
	spec, msg := parseRemote(remote)
	if msg != "" || spec.kind != RemoteIP && spec.kind != RemoteCIDR {
		return false
	}
	return spec.prefix.Addr().Is6() == v6
}

// osID derives a stable id from the rule's name (or file name), adding a hash when the name had to be cut or
// changed so that different names keep different ids.
func osID(ruleName, file string) string {
	src := ruleName
	if src == "" {
		base := filepath.Base(file)
		src = strings.TrimSuffix(base, filepath.Ext(base))
	}
	s := Slug(src, 40)
	if s == "" {
		s = "rule"
	}
	if s != src {
		h := fnv.New32a()
		h.Write([]byte(src))
		s = fmt.Sprintf("%s-%08x", s, h.Sum32())
	}
	return "os-" + s
}
