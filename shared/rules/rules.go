package rules

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Rule is one user- or admin-made decision about outgoing connections. The string fields hold the same text
// that is stored in rule files, so that a rule reads the same in a file, on D-Bus and in the UI; Compile turns
// it into the form that is evaluated.
type Rule struct {
	ID          string `json:"id"`          // [A-Za-z0-9._-]{1,64}, not "." or ".."; unique within a file
	Application string `json:"application"` // "any", "/usr/bin/curl", "flatpak:org.example.App", "snap:name", "appimage:/abs/path.AppImage"
	// Via is the script an interpreter runs (absolute path), for an Application that is an interpreter: the
	// rule covers that interpreter's processes started on that script only. Empty: the program itself, with
	// no script (python3 -c, a REPL; for a program that is no interpreter, its every process).
	Via string `json:"via,omitempty"`
	// SHA256 is the content the rule was made for (hex SHA-256 of the Application's file, an AppImage's too), set for rules made
	// by answering a question: when the file no longer holds it (changed in place, replaced) the rule rests
	// and the program is asked about again, unless the new file is its package's.
	SHA256    string    `json:"sha256,omitempty"`
	Owner     *uint32   `json:"owner,omitempty"` // uid whose processes the rule covers; nil: every user (a system rule)
	Direction string    `json:"direction"`       // "outgoing"; "" is read as "outgoing"
	Remote    string    `json:"remote"`          // "any", an address, a CIDR, "host:", "domain:", "wildcard:" or "list:"; see RemoteKind
	Port      string    `json:"port"`            // "any", "443" or "8000-8100"
	Protocol  string    `json:"protocol"`        // "any", "tcp" or "udp"
	Action    string    `json:"action"`          // "allow" or "deny"
	Duration  string    `json:"duration"`        // "once", "until-quit", "until-restart", "until-time" or "forever"
	Until     time.Time `json:"until,omitzero"`  // end of an "until-time" rule; zero otherwise
	Enabled   bool      `json:"enabled"`
	Note      string    `json:"note,omitempty"` // free text for people, at most MaxNoteLen bytes
	// Unapproved marks a rule that arrived from outside the app (an import, a rule group): it is in force,
	// and shown as "not approved" until its owner approves it in the app, with authentication.
	Unapproved bool `json:"unapproved,omitempty"`
	// Learned marks a rule proposed by learning mode: stored disabled (and unapproved) until its owner
	// approves it, which enables it. Set by the helper only.
	Learned  bool      `json:"learned,omitempty"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
}

// File is one rule file (a rule group).
type File struct {
	Version int    `json:"version"`        // FormatVersion
	Name    string `json:"name,omitempty"` // group name shown in the UI, optional
	Rules   []Rule `json:"rules"`
}

const (
	// FormatVersion is the only rule file version this package reads and writes. A later format gets a new
	// number so that an older Tattle refuses it instead of misreading it.
	FormatVersion = 1
	// MaxRulesPerFile bounds one file; bigger rule sets belong in several files or in named lists.
	MaxRulesPerFile = 10000
	// MaxFileSize bounds what Parse reads, so that a broken or hostile file cannot exhaust the helper's memory.
	MaxFileSize = 16 << 20
	// MaxNoteLen is the longest note, in bytes.
	MaxNoteLen = 1024
	// MaxIDLen is the longest rule id.
	MaxIDLen = 64
	// MaxNameLen is the longest group name, in bytes.
	MaxNameLen = 256
	// MaxPathLen is the longest executable path (PATH_MAX, counting the terminating NUL).
	MaxPathLen = 4095
)

// The words rule fields are made of.
const (
	Any = "any" // Application, Remote, Port, Protocol: no restriction

	DirectionOutgoing = "outgoing"

	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"

	ActionAllow = "allow"
	ActionDeny  = "deny"

	DurationOnce         = "once"          // for one connection; the helper drops the rule once it has decided one
	DurationUntilQuit    = "until-quit"    // until the application exits; the helper drops it then
	DurationUntilRestart = "until-restart" // until the helper restarts; never written to disk
	DurationUntilTime    = "until-time"    // until Until; Matches ignores it from then on
	DurationForever      = "forever"
)

// FieldError says which file, rule and field a problem is in. Every error from Parse, Marshal, Validate and
// Compile is one, so callers can point at the spot (errors.As). Error counts rules from 1, as people do,
// while Index counts from 0.
type FieldError struct {
	File   string // file name, "" when the problem is not about a file
	Index  int    // 0-based position of the rule in the file; -1 when not about one rule
	RuleID string // id of the rule, when it has a usable one
	Field  string // JSON field name, "" when not about one field
	Msg    string // what is wrong and what to do
	Err    error  // underlying cause (a JSON decoding error, say), if any
}

func (e *FieldError) Error() string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.File)
	switch {
	case e.Index >= 0 && e.RuleID != "":
		sep()
		fmt.Fprintf(&b, "rule %d (id %q)", e.Index+1, e.RuleID)
	case e.Index >= 0:
		sep()
		fmt.Fprintf(&b, "rule %d", e.Index+1)
	case e.RuleID != "":
		sep()
		fmt.Fprintf(&b, "rule %q", e.RuleID)
	}
	if e.Field != "" {
		sep()
		fmt.Fprintf(&b, "field %q", e.Field)
	}
	msg := e.Msg
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if msg != "" {
		sep()
		b.WriteString(msg)
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Validate checks every field of r. The error is a *FieldError naming the first field at fault, with Index -1
// (the rule is not known to be in a file); Parse fills in the file and position.
func (r *Rule) Validate() error {
	id := ""
	if checkID(r.ID) == "" {
		id = r.ID
	}
	fail := func(field, msg string) error {
		return &FieldError{Index: -1, RuleID: id, Field: field, Msg: msg}
	}
	if msg := checkID(r.ID); msg != "" {
		return fail("id", msg)
	}
	kind, _, msg := parseApplication(r.Application)
	if msg != "" {
		return fail("application", msg)
	}
	if r.Via != "" {
		if kind != AppPath {
			return fail("via", fmt.Sprintf("names a script, which only an interpreter given by its path runs (application is %s); remove via or give the interpreter's path", quote(r.Application)))
		}
		if !strings.HasPrefix(r.Via, "/") {
			return fail("via", fmt.Sprintf("%s is not an absolute path; give the script's full path, like \"/home/me/bin/tool.py\"", quote(r.Via)))
		}
		if msg := checkPath(r.Via); msg != "" {
			return fail("via", msg)
		}
	}
	if r.Owner != nil && *r.Owner == ^uint32(0) {
		// (uid_t)-1 is no user; the kernel maps use it to mean "any uid", so accepting it would turn a user's
		// rule into a system rule.
		return fail("owner", "4294967295 is not a user id; leave owner out for a rule that covers every user")
	}
	if r.SHA256 != "" {
		if kind != AppPath && kind != AppImage {
			return fail("sha256", "is the content of an executable or AppImage file, which only an application given by its path has; remove sha256")
		}
		if len(r.SHA256) != 64 || strings.Trim(r.SHA256, "0123456789abcdef") != "" {
			return fail("sha256", fmt.Sprintf("%s is not a SHA-256 (64 lower-case hex digits); remove it to match the program whatever it holds", quote(r.SHA256)))
		}
	}
	switch r.Direction {
	case "", DirectionOutgoing:
	case "incoming":
		return fail("direction", `incoming connections are not filtered yet; use "outgoing"`)
	default:
		return fail("direction", fmt.Sprintf(`%s is not a direction; use "outgoing"`, quote(r.Direction)))
	}
	if _, msg := parseRemote(r.Remote); msg != "" {
		return fail("remote", msg)
	}
	if _, _, msg := parsePort(r.Port); msg != "" {
		return fail("port", msg)
	}
	switch r.Protocol {
	case Any, ProtocolTCP, ProtocolUDP:
	case "":
		return fail("protocol", `is empty; use "tcp", "udp" or "any"`)
	default:
		return fail("protocol", fmt.Sprintf(`%s is not supported; use "tcp", "udp" or "any"`, quote(r.Protocol)))
	}
	switch r.Action {
	case ActionAllow, ActionDeny:
	case "":
		return fail("action", `is empty; use "allow" or "deny"`)
	default:
		return fail("action", fmt.Sprintf(`%s is not an action; use "allow" or "deny"`, quote(r.Action)))
	}
	switch r.Duration {
	case DurationOnce, DurationUntilQuit, DurationUntilRestart, DurationForever:
		if !r.Until.IsZero() {
			return fail("until", fmt.Sprintf(`is set, but only applies to duration "until-time" (this rule's is %q); remove it or change the duration`, r.Duration))
		}
	case DurationUntilTime:
		if r.Until.IsZero() {
			return fail("until", `is missing; a rule with duration "until-time" needs the time it ends, like "2030-01-01T00:00:00Z"`)
		}
	case "":
		return fail("duration", `is empty; use "forever", "until-time", "until-restart", "until-quit" or "once"`)
	default:
		return fail("duration", fmt.Sprintf(`%s is not a duration; use "forever", "until-time", "until-restart", "until-quit" or "once"`, quote(r.Duration)))
	}
	if msg := checkTime(r.Until); msg != "" {
		return fail("until", msg)
	}
	if msg := checkText(r.Note, MaxNoteLen, "notes"); msg != "" {
		return fail("note", msg)
	}
	if msg := checkTime(r.Created); msg != "" {
		return fail("created", msg)
	}
	if msg := checkTime(r.Modified); msg != "" {
		return fail("modified", msg)
	}
	return nil
}

// validateFile checks what Parse and Marshal both require of a whole file.
func validateFile(name string, f *File) error {
	if f.Version != FormatVersion {
		return &FieldError{File: name, Index: -1, Field: "version",
			Msg: fmt.Sprintf("version %d is not supported; this Tattle reads version %d files (upgrade Tattle, or write the file for version %d)", f.Version, FormatVersion, FormatVersion)}
	}
	if msg := checkText(f.Name, MaxNameLen, "group names"); msg != "" {
		return &FieldError{File: name, Index: -1, Field: "name", Msg: msg}
	}
	if len(f.Rules) > MaxRulesPerFile {
		return &FieldError{File: name, Index: MaxRulesPerFile,
			Msg: fmt.Sprintf("a rule file may hold at most %d rules; split the rules into several files", MaxRulesPerFile)}
	}
	seen := make(map[string]int, len(f.Rules))
	for i := range f.Rules {
		if err := f.Rules[i].Validate(); err != nil {
			fe := err.(*FieldError)
			fe.File, fe.Index = name, i
			return fe
		}
		if j, dup := seen[f.Rules[i].ID]; dup {
			return &FieldError{File: name, Index: i, RuleID: f.Rules[i].ID, Field: "id",
				Msg: fmt.Sprintf("rule %d has the same id; give every rule in a file its own id", j+1)}
		}
		seen[f.Rules[i].ID] = i
	}
	return nil
}

func checkID(id string) string {
	if id == "" {
		return "is empty; give the rule an id of 1-64 letters, digits, '.', '_' or '-'"
	}
	if len(id) > MaxIDLen {
		return fmt.Sprintf("is %d characters long; ids have at most %d", len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return fmt.Sprintf("%s contains %q; ids may use only letters, digits, '.', '_' and '-'", quote(id), rune(id[i]))
		}
	}
	if strings.Trim(id, ".") == "" {
		// The helper may use ids in file names; "." and ".." would name directories.
		return fmt.Sprintf("%s is not a usable id; use at least one letter or digit", quote(id))
	}
	return ""
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkText accepts free text that is safe to show: valid UTF-8 (so it survives JSON unchanged), no control
// characters except tab (no line breaks or terminal escapes in lists and logs).
func checkText(s string, max int, what string) string {
	if len(s) > max {
		return fmt.Sprintf("is %d bytes long; %s may be at most %d bytes", len(s), what, max)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8 text; save it as UTF-8"
	}
	for _, c := range s {
		if c != '\t' && unicode.IsControl(c) {
			return fmt.Sprintf("contains the control character %U; use plain text on one line", c)
		}
	}
	return ""
}

// checkTime refuses times that JSON cannot carry (years outside 0-9999), so that Marshal never fails on a
// rule that validated.
func checkTime(t time.Time) string {
	if _, err := t.MarshalJSON(); err != nil {
		return fmt.Sprintf("%s cannot be stored; use a time between the years 0 and 9999", t.Format(time.RFC3339))
	}
	return ""
}

// quote quotes a value for an error message, shortening long ones: the message is for finding the spot, and a
// 2 MB value would bury it.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
