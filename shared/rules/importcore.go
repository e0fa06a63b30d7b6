package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ImportOptions say who imports and when.
type ImportOptions struct {
	// Owner is the importing user's uid for a user import (every rule covers only that user's processes,
	// and Little Snitch's owner "me" means this user); nil for a system import.
	Owner *uint32
	// Now is the creation time of the rules.
	Now time.Time
	// ListThreshold: a Little Snitch blocklist key (denied-/allowed-remote-*) with more entries than this
	// becomes a named list plus one rule. 0 means DefaultListThreshold.
	ListThreshold int
}

// DefaultListThreshold is where a block list stops being rules and becomes a named list. It is well below
// api.MaxRulesPerCall, so that no file import is ever refused for having too many rules.
const DefaultListThreshold = 200

// MaxReportLines bounds the report: one line per reason, not per rule.
const MaxReportLines = 40

// FlaggedNotePrefix starts the note of a rule imported disabled because a narrowing condition was lost
// (what was lost follows), so that apps can show such a rule as flagged.
const FlaggedNotePrefix = "[import: disabled, lost "

// NamedList is a list an import creates: the rules refer to it as "list:" + Name. Entries are host names
// (Exact: only that name; otherwise the name and every name under it), addresses or networks.
type NamedList struct {
	Name    string
	Exact   bool
	Entries []string
	Source  string // where the entries came from, for the report and the list's header
}

// ImportResult is everything one import makes, with its report.
type ImportResult struct {
	Rules  []Rule
	Lists  []NamedList
	Report ImportReport
}

// outcome is what became of one source rule.
type outcome int

const (
	outExact    outcome = iota // imported with its full meaning
	outReported                // imported in part (the part kept is exact), or imported disabled and flagged
	outRefused                 // not imported
)

// reason collects the source rules that share one report message.
type reason struct {
	out   outcome
	msg   string
	count int
	where []string
}

// tally aggregates per-rule outcomes into counts and one report line per reason.
type tally struct {
	files, in, exact, reported, refused int
	reasons                             map[string]*reason
	order                               []string
	worst                               map[string]outcome // per source rule key: its worst outcome
	seen                                []string
}

func newTally() *tally {
	return &tally{reasons: map[string]*reason{}, worst: map[string]outcome{}}
}

// rule registers a source rule (key unique within the import) as exact until told otherwise.
func (t *tally) rule(key string) {
	if _, ok := t.worst[key]; !ok {
		t.worst[key] = outExact
		t.seen = append(t.seen, key)
		t.in++
	}
}

// note records a reason for one source rule at where ("file:line:col"); a rule's outcome is the worst of its
// notes.
func (t *tally) note(key string, out outcome, where, msg string) {
	t.rule(key)
	if out > t.worst[key] {
		t.worst[key] = out
	}
	k := fmt.Sprint(int(out), msg)
	r := t.reasons[k]
	if r == nil {
		r = &reason{out: out, msg: msg}
		t.reasons[k] = r
		t.order = append(t.order, k)
	}
	r.count++
	if len(r.where) < 3 {
		r.where = append(r.where, where)
	}
}

// info records a remark about the import as a whole (not counted against any rule).
func (t *tally) info(msg string) {
	k := "i" + msg
	if t.reasons[k] == nil {
		t.reasons[k] = &reason{out: -1, msg: msg}
		t.order = append(t.order, k)
	}
}

func (t *tally) report(imported, lists int) ImportReport {
	rep := ImportReport{Imported: imported, Files: t.files, RulesIn: t.in, Lists: lists}
	for _, k := range t.seen {
		switch t.worst[k] {
		case outExact:
			rep.Exact++
		case outReported:
			rep.Reported++
		case outRefused:
			rep.Refused++
		}
	}
	order := append([]string(nil), t.order...)
	// Refusals first, then what was changed, then remarks: the order a reader acts on them.
	sort.SliceStable(order, func(i, j int) bool { return t.reasons[order[i]].out > t.reasons[order[j]].out })
	for n, k := range order {
		if n == MaxReportLines {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("… and %d more kinds of problem", len(order)-n))
			break
		}
		r := t.reasons[k]
		var b strings.Builder
		switch r.out {
		case outRefused:
			fmt.Fprintf(&b, "not imported (%d %s): ", r.count, plural(r.count, "rule", "rules"))
		case outReported:
			fmt.Fprintf(&b, "imported in part or disabled (%d %s): ", r.count, plural(r.count, "rule", "rules"))
		}
		b.WriteString(r.msg)
		if len(r.where) > 0 {
			b.WriteString(" — at ")
			b.WriteString(strings.Join(r.where, ", "))
			if r.count > len(r.where) {
				b.WriteString(", …")
			}
		}
		rep.Skipped = append(rep.Skipped, b.String())
	}
	return rep
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Summary is the one line an import prints.
func (r ImportReport) Summary() string {
	return fmt.Sprintf("%d %s, %d source %s: %d imported exactly, %d reported, %d refused; %d Tattle %s, %d named %s",
		r.Files, plural(r.Files, "file", "files"), r.RulesIn, plural(r.RulesIn, "rule", "rules"), r.Exact, r.Reported, r.Refused,
		r.Imported, plural(r.Imported, "rule", "rules"), r.Lists, plural(r.Lists, "list", "lists"))
}

// lineCol turns a byte offset into "file:line:col" (1-based), which editors jump to.
func lineCol(file string, data []byte, off int64) string {
	return newPositions(file, data).at(off)
}

// positions turns offsets into "file:line:col" quickly, for reports on files with many rules.
type positions struct {
	file  string
	size  int64
	lines []int64 // offset of the first byte of each line
}

func newPositions(file string, data []byte) *positions {
	p := &positions{file: file, size: int64(len(data)), lines: []int64{0}}
	for i, c := range data {
		if c == '\n' {
			p.lines = append(p.lines, int64(i+1))
		}
	}
	return p
}

func (p *positions) at(off int64) string {
	off = max(0, min(off, p.size))
	line := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	return fmt.Sprintf("%s:%d:%d", p.file, line+1, off-p.lines[line]+1)
}

// arrayOffsets returns the byte offset of each element of the array under the top-level key, so reports
// can name the line and column of a rule. It returns nil when the layout is not the expected one.
func arrayOffsets(data []byte, key string) []int64 {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		if k != key {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil
		}
		var offs []int64
		for dec.More() {
			off := dec.InputOffset()
			for off < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[off]) >= 0 {
				off++
			}
			offs = append(offs, off)
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return offs
			}
		}
		return offs
	}
	return nil
}

// listName makes a named list's name from parts: [a-z0-9-], at most 64 bytes.
func listName(parts ...string) string {
	var out []string
	for _, p := range parts {
		if s := Slug(p, 40); s != "" {
			out = append(out, s)
		}
	}
	s := strings.Join(out, "-")
	if len(s) > 64 {
		s = strings.Trim(s[:64], "-")
	}
	if s == "" {
		s = "imported"
	}
	return s
}
