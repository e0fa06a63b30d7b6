package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ruleFields lists the JSON fields of a rule: whether the field must be present, may be null, and what JSON
// type it takes (for messages).
var ruleFields = map[string]struct {
	required bool
	nullable bool
	want     string
}{
	"id":          {true, false, `a string like "block-ads"`},
	"application": {true, false, `a string like "/usr/bin/curl" or "any"`},
	"owner":       {false, true, "a user id (a whole number from 0 to 4294967294)"},
	"direction":   {false, false, `the string "outgoing"`},
	"remote":      {true, false, `a string like "192.0.2.1", "domain:example.com" or "any"`},
	"port":        {true, false, `a string like "443", "8000-8100" or "any"`},
	"protocol":    {true, false, `a string: "tcp", "udp" or "any"`},
	"action":      {true, false, `a string: "allow" or "deny"`},
	"duration":    {true, false, `a string like "forever"`},
	"until":       {false, true, `a time string like "2030-01-01T00:00:00Z"`},
	"enabled":     {true, false, "true or false"},
	"note":        {false, true, "a string"},
	"created":     {false, false, `a time string like "2024-05-01T12:00:00Z"`},
	"modified":    {false, false, `a time string like "2024-05-01T12:00:00Z"`},
	"via":         {false, false, `an absolute script path like "/home/u/tool.py"`},
	"sha256":      {false, false, "the hex SHA-256 of the application's file (64 lower-case hex digits)"},
	"unapproved":  {false, false, "true or false"},
}

var timeFields = map[string]bool{"until": true, "created": true, "modified": true}

// Parse decodes and validates a rule file strictly: unknown or misspelt fields, fields given twice, wrong JSON
// types, nulls where a value is needed, trailing data, truncated JSON, duplicate rule ids, a version other than
// FormatVersion, more than MaxRulesPerFile rules, input over MaxFileSize and out-of-range values are all
// errors. name is the file name used in messages. Every error is a *FieldError; JSON errors are wrapped in it.
// A missing "direction" is read as "outgoing".
func Parse(name string, data []byte) (*File, error) {
	p := &parser{name: name, data: data}
	f, err := p.parse()
	if err != nil {
		return nil, err
	}
	if err := validateFile(name, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Marshal encodes f as indented JSON with a trailing newline, after validating it as Parse would. Rules with
// an empty direction are written with "outgoing". f is not modified.
func Marshal(f *File) ([]byte, error) {
	if f == nil {
		return nil, &FieldError{Index: -1, Msg: "no rule file to write"}
	}
	if err := validateFile("", f); err != nil {
		return nil, err
	}
	out := File{Version: f.Version, Name: f.Name, Rules: make([]Rule, len(f.Rules))}
	copy(out.Rules, f.Rules)
	for i := range out.Rules {
		if out.Rules[i].Direction == "" {
			out.Rules[i].Direction = DirectionOutgoing
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<", ">" and "&" readable in notes; they are safe in a file
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return nil, &FieldError{Index: -1, Msg: "cannot encode the rules", Err: err}
	}
	if buf.Len() > MaxFileSize {
		return nil, &FieldError{Index: -1,
			Msg: fmt.Sprintf("the rules take %d bytes, more than the %d a rule file may have; split them into several files", buf.Len(), MaxFileSize)}
	}
	return buf.Bytes(), nil
}

type parser struct {
	name string
	data []byte
	dec  *json.Decoder
}

func (p *parser) fail(index int, field, msg string, err error) *FieldError {
	return &FieldError{File: p.name, Index: index, Field: field, Msg: msg, Err: err}
}

func (p *parser) parse() (*File, error) {
	if len(p.data) > MaxFileSize {
		return nil, p.fail(-1, "", fmt.Sprintf("is %d bytes, more than the %d a rule file may have; split it into several files", len(p.data), MaxFileSize), nil)
	}
	if bytes.HasPrefix(p.data, []byte("\xef\xbb\xbf")) {
		return nil, p.fail(-1, "", "starts with a byte-order mark; save the file as UTF-8 without one", nil)
	}
	if !utf8.Valid(p.data) {
		off := 0
		for off < len(p.data) {
			r, n := utf8.DecodeRune(p.data[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return nil, p.fail(-1, "", fmt.Sprintf("is not UTF-8 text (bad byte at %s); save it as UTF-8", p.position(int64(off))), nil)
	}
	p.dec = json.NewDecoder(bytes.NewReader(p.data))
	if err := p.expectDelim(-1, "", '{', "a rule file must be a JSON object like {\"version\": 1, \"rules\": [...]}"); err != nil {
		return nil, err
	}
	f := &File{}
	seen := map[string]bool{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, p.jsonError(-1, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, p.fail(-1, shortKey(key), "appears twice; keep one", nil)
		}
		seen[key] = true
		switch key {
		case "version":
			var raw json.RawMessage
			if err := p.dec.Decode(&raw); err != nil {
				return nil, p.jsonError(-1, err)
			}
			if err := json.Unmarshal(raw, &f.Version); err != nil || bytes.Equal(raw, []byte("null")) {
				return nil, p.fail(-1, "version", fmt.Sprintf("must be the number %d, not %s", FormatVersion, shortJSON(raw)), err)
			}
			if f.Version != FormatVersion {
				// Say so before reading rules written for another format, which would only give confusing errors.
				return nil, validateFile(p.name, f)
			}
		case "name":
			var raw json.RawMessage
			if err := p.dec.Decode(&raw); err != nil {
				return nil, p.jsonError(-1, err)
			}
			if err := json.Unmarshal(raw, &f.Name); err != nil || bytes.Equal(raw, []byte("null")) {
				return nil, p.fail(-1, "name", fmt.Sprintf("must be a string, not %s", shortJSON(raw)), err)
			}
		case "rules":
			rules, err := p.parseRules()
			if err != nil {
				return nil, err
			}
			f.Rules = rules
		default:
			return nil, p.fail(-1, shortKey(key), "is not a rule file field"+suggest(key, []string{"version", "name", "rules"}), nil)
		}
	}
	if _, err := p.dec.Token(); err != nil { // the closing '}'
		return nil, p.jsonError(-1, err)
	}
	end := p.valueStart(p.dec.InputOffset())
	if _, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.jsonError(-1, err)
		}
		return nil, p.fail(-1, "", fmt.Sprintf("has more data after the rule file's closing brace (at %s); a file holds one JSON object", p.position(end)), nil)
	}
	if !seen["version"] {
		return nil, p.fail(-1, "version", fmt.Sprintf("is missing; add \"version\": %d", FormatVersion), nil)
	}
	if !seen["rules"] {
		return nil, p.fail(-1, "rules", `is missing; add "rules": [] with the rules in it`, nil)
	}
	if f.Rules == nil {
		f.Rules = []Rule{}
	}
	return f, nil
}

func (p *parser) parseRules() ([]Rule, error) {
	if err := p.expectDelim(-1, "rules", '[', "must be a list of rules: [{...}, {...}]"); err != nil {
		return nil, err
	}
	rules := []Rule{}
	for i := 0; p.dec.More(); i++ {
		if i >= MaxRulesPerFile {
			return nil, p.fail(i, "", fmt.Sprintf("a rule file may hold at most %d rules; split the rules into several files", MaxRulesPerFile), nil)
		}
		start := p.valueStart(p.dec.InputOffset())
		var raw json.RawMessage
		if err := p.dec.Decode(&raw); err != nil {
			return nil, p.jsonError(i, err)
		}
		r, err := p.parseRule(i, raw, start)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	if _, err := p.dec.Token(); err != nil { // the closing ']'
		return nil, p.jsonError(len(rules), err)
	}
	return rules, nil
}

// parseRule decodes one rule. A first pass over the tokens catches what encoding/json lets through (fields
// given twice, fields differing only in case, nulls, malformed times); the second decodes into Rule with
// unknown fields disallowed and maps type errors to the field.
func (p *parser) parseRule(i int, raw json.RawMessage, start int64) (Rule, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return Rule{}, p.jsonError(i, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Rule{}, p.fail(i, "", fmt.Sprintf("must be a JSON object {...}, not %s", jsonKind(tok)), nil)
	}
	seen := map[string]bool{}
	id := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Rule{}, p.jsonError(i, err)
		}
		key, _ := tok.(string)
		spec, known := ruleFields[key]
		if !known {
			return Rule{}, p.failRule(i, id, shortKey(key), "is not a rule field"+suggest(key, sortedKeys(ruleFields)), nil)
		}
		if seen[key] {
			return Rule{}, p.failRule(i, id, key, "appears twice in this rule; keep one", nil)
		}
		seen[key] = true
		val, err := dec.Token()
		if err != nil {
			return Rule{}, p.jsonError(i, err)
		}
		switch v := val.(type) {
		case json.Delim:
			return Rule{}, p.failRule(i, id, key, fmt.Sprintf("must be %s, not %s", spec.want, jsonKind(v)), nil)
		case nil:
			if !spec.nullable {
				return Rule{}, p.failRule(i, id, key, fmt.Sprintf("must be %s, not null", spec.want), nil)
			}
		default:
			if timeFields[key] {
				// time.Time reports a wrong JSON type as a parse error, not a type error, so catch it here.
				return Rule{}, p.failRule(i, id, key, fmt.Sprintf("must be %s, not %s", spec.want, jsonKind(v)), nil)
			}
		case string:
			if key == "id" && checkID(v) == "" {
				id = v
			}
			if timeFields[key] {
				var t time.Time
				q, _ := json.Marshal(v)
				if err := t.UnmarshalJSON(q); err != nil {
					return Rule{}, p.failRule(i, id, key, fmt.Sprintf("%s is not a time; write times like \"2024-05-01T12:00:00Z\" (RFC 3339)", quote(v)), err)
				}
			}
		}
	}
	for _, key := range sortedKeys(ruleFields) {
		if ruleFields[key].required && !seen[key] {
			return Rule{}, p.failRule(i, id, key, "is missing; every rule needs it ("+ruleFields[key].want+")", nil)
		}
	}

	var r Rule
	typed := json.NewDecoder(bytes.NewReader(raw))
	typed.DisallowUnknownFields()
	if err := typed.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			spec := ruleFields[field]
			msg := fmt.Sprintf("must be %s, not %s", spec.want, describeTypeError(te))
			if field == "owner" && strings.HasPrefix(te.Value, "number") {
				msg = fmt.Sprintf("%s is not a user id; use a whole number from 0 to 4294967294", strings.TrimPrefix(te.Value, "number "))
			}
			return Rule{}, p.failRule(i, id, field, msg+", at "+p.position(start+te.Offset), err)
		}
		return Rule{}, p.fail(i, "", "cannot be read", err)
	}
	if r.Direction == "" {
		r.Direction = DirectionOutgoing
	}
	return r, nil
}

func (p *parser) failRule(i int, id, field, msg string, err error) *FieldError {
	fe := p.fail(i, field, msg, err)
	fe.RuleID = id
	return fe
}

func (p *parser) expectDelim(index int, field string, want json.Delim, msg string) error {
	tok, err := p.dec.Token()
	if err != nil {
		return p.jsonError(index, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return p.fail(index, field, fmt.Sprintf("%s; found %s", msg, jsonKind(tok)), nil)
	}
	return nil
}

// jsonError turns a decoding error into a FieldError that says where the input went wrong.
func (p *parser) jsonError(index int, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return p.fail(index, "", fmt.Sprintf("the JSON ends early, at %s; the file is truncated or a bracket is missing", p.position(int64(len(p.data)))), err)
	case errors.As(err, &se):
		return p.fail(index, "", fmt.Sprintf("invalid JSON at %s: %v; fix the syntax there", p.position(se.Offset), se), err)
	}
	return p.fail(index, "", "cannot be read", err)
}

// position describes a byte offset as a line and column, which editors can jump to.
func (p *parser) position(off int64) string {
	if off < 0 {
		off = 0
	}
	if off > int64(len(p.data)) {
		off = int64(len(p.data))
	}
	before := p.data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d (byte %d)", line, col, off)
}

// valueStart skips the whitespace and separators between the decoder's offset and the next value.
func (p *parser) valueStart(off int64) int64 {
	for off < int64(len(p.data)) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "a list"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

func describeTypeError(te *json.UnmarshalTypeError) string {
	v := te.Value
	switch {
	case strings.HasPrefix(v, "number"):
		return "a number"
	case v == "string":
		return "a string"
	case v == "bool":
		return "a boolean"
	case v == "array":
		return "a list"
	case v == "object":
		return "an object"
	}
	return v
}

// shortJSON shows a raw JSON value in a message, shortened.
func shortJSON(raw json.RawMessage) string {
	return shortKey(string(raw))
}

// suggest offers the field the user probably meant: a case-insensitive match, or else the list of fields.
func suggest(key string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf("; did you mean %q? Field names are lower case", k)
		}
	}
	return "; the fields are " + strings.Join(known, ", ")
}

// shortKey cuts an unknown field name for messages; a hostile file may use a megabyte-long one.
func shortKey(key string) string {
	if len(key) <= 64 {
		return key
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return key[:cut] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
