package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

func cmdRulesList(ctx context.Context, e *env, args []string) error {
	return show(ctx, e, "rules list", "a table", args, Helper.Rules, writeRulesJSON,
		func(_ context.Context, _ Helper, rs []api.Rule) error { return writeRulesTable(e.stdout, rs, e) })
}

// addOptions are the flags of "rules add".
type addOptions struct {
	allow, deny   bool
	app           string
	via           string
	remote        string
	port          string
	protocol      string
	duration      string
	until         string
	user          bool
	id            string
	note          string
	noInteractive bool
}

func parseAdd(e *env, args []string) (addOptions, error) {
	var o addOptions
	fs := newFlagSet("rules add")
	fs.BoolVar(&o.allow, "allow", false, "allow the connections the rule matches")
	fs.BoolVar(&o.deny, "deny", false, "deny the connections the rule matches")
	fs.StringVar(&o.app, "app", rules.Any, "match connections made by the program at `PATH` (or flatpak:ID, snap:NAME, appimage:PATH, any)")
	fs.StringVar(&o.via, "via", "", "match only when the interpreter --app runs the script at `PATH` (python3 via tool.py)")
	fs.StringVar(&o.remote, "remote", rules.Any, "match connections to `REMOTE`: any, an address, a network, host:NAME, domain:NAME, wildcard:*.NAME or list:NAME")
	fs.StringVar(&o.port, "port", rules.Any, "match connections to remote `PORT`: 443, a range like 8000-8100, or any")
	fs.StringVar(&o.protocol, "protocol", rules.Any, "match connections over `PROTOCOL`: tcp, udp or any")
	fs.StringVar(&o.duration, "duration", "", "keep the rule for `DURATION`: forever, until-restart, until-time, until-quit or once (default forever)")
	fs.StringVar(&o.until, "until", "", "end an until-time rule at `TIME` (RFC 3339) or after a duration from now (2h)")
	fs.BoolVar(&o.user, "user", false, "cover only your own processes instead of every user's")
	fs.StringVar(&o.id, "id", "", "give the rule this `ID` (default: made from the rule, with a random suffix)")
	fs.StringVar(&o.note, "note", "", "keep `TEXT` as a note for people reading the rule")
	fs.BoolVar(&o.noInteractive, "no-interactive", false, "never ask for a password")
	pos, err := parseFlags(e, "rules add", fs, args)
	if err != nil {
		return o, err
	}
	if len(pos) > 0 {
		return o, usagef("unexpected argument %q; every part of the rule is given with a flag", pos[0])
	}
	if o.allow == o.deny {
		return o, usagef("give exactly one of --allow and --deny")
	}
	return o, nil
}

// buildRule turns the flags of "rules add" into a validated rule. notes are things worth telling the user
// that do not stop the rule (a symlinked program, a path that does not exist yet).
func buildRule(o addOptions, e *env) (r rules.Rule, notes []string, err error) {
	now := e.now().Truncate(time.Second)
	r = rules.Rule{
		ID: o.id, Direction: rules.DirectionOutgoing, Remote: o.remote, Port: o.port, Protocol: o.protocol,
		Action: rules.ActionAllow, Duration: o.duration, Enabled: true, Note: o.note, Created: now, Modified: now,
	}
	if o.deny {
		r.Action = rules.ActionDeny
	}
	if r.Application, notes, err = resolveApp(o.app, e); err != nil {
		return r, nil, err
	}
	if o.via != "" {
		if r.Via, err = absPath(o.via, e); err != nil {
			return r, nil, err
		}
		if r.Via != o.via {
			notes = append(notes, fmt.Sprintf("--via %s is %s", o.via, r.Via))
		}
	}
	if o.until != "" {
		if r.Until, err = parseUntil(o.until, now); err != nil {
			return r, nil, err
		}
	}
	if r.Duration == "" {
		r.Duration = rules.DurationForever
		if o.until != "" {
			r.Duration = rules.DurationUntilTime
		}
	}
	if o.user {
		uid := uint32(e.uid)
		r.Owner = &uid
	}
	if r.ID == "" {
		r.ID = generateID(r)
	}
	if err := r.Validate(); err != nil {
		return r, nil, fieldUsageError(err)
	}
	return r, notes, nil
}

// flagOf names the flag that sets each rule field, for messages.
var flagOf = map[string]string{
	"id": "--id", "application": "--app", "via": "--via", "owner": "--user", "remote": "--remote", "port": "--port",
	"protocol": "--protocol", "action": "--allow/--deny", "duration": "--duration", "until": "--until",
	"note": "--note",
}

// fieldUsageError says which flag a validation error is about: `--port: "99999" is out of range 1-65535`.
func fieldUsageError(err error) error {
	var fe *rules.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	msg := fe.Msg
	if msg == "" && fe.Err != nil {
		msg = fe.Err.Error()
	}
	if f, ok := flagOf[fe.Field]; ok {
		return usagef("%s: %s", f, msg)
	}
	return usagef("rule field %q: %s", fe.Field, msg)
}

// resolveApp makes --app absolute: relative paths against the working directory, bare program names through
// PATH (as a shell would run them). Prefixed forms and "any" pass through; Validate judges the result.
func resolveApp(app string, e *env) (string, []string, error) {
	var notes []string
	switch {
	case app == rules.Any, app == "":
		return app, nil, nil
	case strings.HasPrefix(app, "appimage:") && !strings.HasPrefix(app, "appimage:/"):
		abs, err := absPath(strings.TrimPrefix(app, "appimage:"), e)
		return "appimage:" + abs, nil, err
	case strings.HasPrefix(app, "flatpak:"), strings.HasPrefix(app, "snap:"), strings.HasPrefix(app, "appimage:"):
		return app, nil, nil
	case !strings.Contains(app, "/"):
		p, err := e.lookPath(app)
		if err != nil {
			return "", nil, usagef("--app: %q is not a program in PATH; give its path, like /usr/bin/%s or ./%s", app, app, app)
		}
		abs, err := absPath(p, e)
		if err != nil {
			return "", nil, err
		}
		notes = append(notes, fmt.Sprintf("--app %s is %s", app, abs))
		app = abs
	default:
		abs, err := absPath(app, e)
		if err != nil {
			return "", nil, err
		}
		app = abs
	}
	fi, err := e.lstat(app)
	switch {
	case errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("%s does not exist (yet); the rule applies to it once it does", app))
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		if target, err := filepath.EvalSymlinks(app); err == nil {
			notes = append(notes, fmt.Sprintf("%s is a symbolic link to %s; programs are known by the file they run, so you may want --app %s", app, target, target))
		}
	}
	return app, notes, nil
}

func absPath(p string, e *env) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	wd, err := e.getwd()
	if err != nil {
		return "", fmt.Errorf("cannot make %q absolute: %w", p, err)
	}
	return filepath.Join(wd, p), nil
}

// parseUntil reads --until: an RFC 3339 time, or a duration from now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "+")); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, usagef(`--until: %q is not a time; write it like 2030-01-01T00:00:00Z (RFC 3339) or as a duration from now like 2h or 90m`, s)
}

// generateID makes a readable id from the rule ("deny-curl-example-com-443-k7q2mx"): the random suffix keeps
// it unique, the rest lets people tell rules apart in a list.
func generateID(r rules.Rule) string {
	parts := []string{r.Action}
	app := r.Application
	if i := strings.LastIndexAny(app, "/:"); i >= 0 {
		app = app[i+1:]
	}
	parts = append(parts, rules.Slug(app, 20))
	if r.Remote != rules.Any {
		remote := r.Remote
		if _, after, ok := strings.Cut(remote, ":"); ok && !strings.Contains(after, ":") {
			remote = after // drop "host:", "domain:"...; but not from IPv6 addresses
		}
		parts = append(parts, rules.Slug(remote, 20))
	}
	if r.Port != rules.Any {
		parts = append(parts, rules.Slug(r.Port, 11))
	}
	var id []string
	for _, p := range parts {
		if p != "" {
			id = append(id, p)
		}
	}
	return strings.Join(append(id, randomSuffix(6)), "-")
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789" // no 0/o, 1/l: ids get read aloud and retyped
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func cmdRulesAdd(ctx context.Context, e *env, args []string) error {
	o, err := parseAdd(e, args)
	if err != nil {
		return err
	}
	r, notes, err := buildRule(o, e)
	if err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(e.stderr, "tattlectl: note: %s\n", n)
	}
	return e.withHelper(true, o.noInteractive, func(h Helper) error {
		ids, err := h.AddRules(ctx, []api.Rule{api.FromRule(r, "", false)})
		if err != nil {
			return err
		}
		for _, id := range ids {
			fmt.Fprintln(e.stdout, id)
		}
		return nil
	})
}

// idArgs parses the commands that take rule ids.
func idArgs(e *env, name string, args []string) (ids []string, noInteractive bool, err error) {
	fs := newFlagSet(name)
	fs.BoolVar(&noInteractive, "no-interactive", false, "never ask for a password")
	ids, err = parseFlags(e, name, fs, args)
	if err == nil && len(ids) == 0 {
		err = usagef("give the id of at least one rule ('tattlectl rules list' shows them)")
	}
	return ids, noInteractive, err
}

// changeRules runs a command that changes the rules given by id: it connects for a change (asking a password
// unless --no-interactive) and applies change to the ids.
func changeRules(ctx context.Context, e *env, name string, args []string,
	change func(Helper, context.Context, []string) error) error {
	ids, ni, err := idArgs(e, name, args)
	if err != nil {
		return err
	}
	return e.withHelper(true, ni, func(h Helper) error { return change(h, ctx, ids) })
}

func cmdRulesRemove(ctx context.Context, e *env, args []string) error {
	return changeRules(ctx, e, "rules remove", args, Helper.RemoveRules)
}

func cmdRulesApprove(ctx context.Context, e *env, args []string) error {
	return changeRules(ctx, e, "rules approve", args, Helper.Approve)
}

func cmdRulesEnable(ctx context.Context, e *env, args []string) error {
	return setEnabled(ctx, e, "rules enable", args, true)
}

func cmdRulesDisable(ctx context.Context, e *env, args []string) error {
	return setEnabled(ctx, e, "rules disable", args, false)
}

func setEnabled(ctx context.Context, e *env, name string, args []string, on bool) error {
	return changeRules(ctx, e, name, args, func(h Helper, ctx context.Context, ids []string) error {
		for _, id := range ids {
			if err := h.SetEnabled(ctx, id, on); err != nil {
				return err
			}
		}
		return nil
	})
}

func checkFormat(f string) error {
	if api.ValidateFormat(f) != nil {
		return usagef("--format: %q is not a format; use %s", f, strings.Join(api.Formats(), ", "))
	}
	return nil
}

// importOptions are the flags and argument of "rules import".
type importOptions struct {
	format        string
	user          bool
	dryRun        bool
	listsDir      string
	file          string
	noInteractive bool
}

func parseImport(e *env, args []string) (importOptions, error) {
	var o importOptions
	fs := newFlagSet("rules import")
	fs.StringVar(&o.format, "format", "", "read the file as `FORMAT`: tattle, lsrules (Little Snitch) or opensnitch (default: recognised from the file)")
	fs.BoolVar(&o.user, "user", false, "make the rules cover only your own processes instead of every user's")
	fs.BoolVar(&o.dryRun, "dry-run", false, "show what the import would do, change nothing")
	fs.StringVar(&o.listsDir, "lists", "", "look for OpenSnitch list directories the rules name under `DIR` (by their last path element)")
	fs.BoolVar(&o.noInteractive, "no-interactive", false, "never ask for a password")
	pos, err := parseFlags(e, "rules import", fs, args)
	if err != nil {
		return o, err
	}
	if len(pos) != 1 {
		return o, usagef("give one file to import (or - for standard input)")
	}
	o.file = pos[0]
	if o.format != "" {
		return o, checkFormat(o.format)
	}
	return o, nil
}

func cmdRulesImport(ctx context.Context, e *env, args []string) error {
	o, err := parseImport(e, args)
	if err != nil {
		return err
	}
	req := api.ImportRequest{Format: o.format, System: !o.user, DryRun: o.dryRun}
	if names, derr := e.readDir(o.file); derr == nil && o.file != "-" {
		// A directory: an OpenSnitch rules directory, one rule per *.json file.
		if o.format != "" && o.format != api.FormatOpenSnitch {
			return usagef("%s is a directory; only --format opensnitch reads directories", o.file)
		}
		req.Format = api.FormatOpenSnitch
		sort.Strings(names)
		total := 0
		for _, n := range names {
			if !strings.HasSuffix(n, ".json") {
				continue
			}
			p := filepath.Join(o.file, n)
			data, err := e.readFile(p)
			if err != nil {
				return err
			}
			if total += len(data); total > api.MaxImportSize {
				return fmt.Errorf("%s holds more than the %d MiB one import may be; import it in parts", o.file, api.MaxImportSize>>20)
			}
			req.Files = append(req.Files, api.ImportFile{Name: p, Data: data})
		}
		if len(req.Files) == 0 {
			return fmt.Errorf("%s holds no rule files (*.json); nothing to import", o.file)
		}
	} else {
		data, err := readInput(e, o.file)
		if err != nil {
			return err
		}
		if req.Format == "" {
			if req.Format, err = guessFormat(o.file, data); err != nil {
				return err
			}
		}
		req.Files = []api.ImportFile{{Name: displayName(o.file), Data: data}}
	}
	if req.Format == api.FormatOpenSnitch {
		if req.ListDirs, err = readListDirs(e, req.Files, o.listsDir); err != nil {
			return err
		}
	}
	return e.withHelper(true, o.noInteractive, func(h Helper) error {
		sum, report, err := h.ImportFiles(ctx, req)
		if err != nil {
			return err
		}
		word := "imported"
		if o.dryRun {
			word = "dry run, nothing changed"
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", word, sum.Summary)
		for _, s := range report {
			fmt.Fprintf(e.stderr, "tattlectl: %s\n", oneLine(s))
		}
		if sum.Imported == 0 {
			return fmt.Errorf("nothing was imported from %s", displayName(o.file))
		}
		return nil
	})
}

// readListDirs reads the OpenSnitch list directories the rules name: where they say, else under listsDir
// by their last path element. A directory found nowhere is left out; the helper then reports the rules
// that need it.
func readListDirs(e *env, files []api.ImportFile, listsDir string) ([]api.ImportListDir, error) {
	src := make([]rules.SourceFile, len(files))
	for i, f := range files {
		src[i] = rules.SourceFile{Name: f.Name, Data: f.Data}
	}
	var out []api.ImportListDir
	for _, dir := range rules.OpenSnitchListDirs(src) {
		where := dir
		names, err := e.readDir(where)
		if err != nil && listsDir != "" {
			where = filepath.Join(listsDir, filepath.Base(dir))
			names, err = e.readDir(where)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "tattlectl: list directory %s not found; the rules that use it will be reported\n", dir)
			continue
		}
		d := api.ImportListDir{Path: dir, Files: []api.ImportFile{}}
		sort.Strings(names)
		for _, n := range names {
			data, err := e.readFile(filepath.Join(where, n))
			if err != nil {
				return nil, err
			}
			d.Files = append(d.Files, api.ImportFile{Name: n, Data: data})
		}
		out = append(out, d)
	}
	return out, nil
}

// readInput reads an import file ("-": standard input), refusing more than the helper accepts.
func readInput(e *env, name string) ([]byte, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(e.stdin, api.MaxImportSize+1))
	} else {
		data, err = e.readFile(name)
	}
	if err != nil {
		return nil, err
	}
	if len(data) > api.MaxImportSize {
		return nil, fmt.Errorf("%s is larger than the %d MiB one import may be; split it", displayName(name), api.MaxImportSize>>20)
	}
	return data, nil
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

// exportOptions are the flags and argument of "rules export".
type exportOptions struct {
	format string
	file   string
}

func parseExport(e *env, args []string) (exportOptions, error) {
	var o exportOptions
	fs := newFlagSet("rules export")
	fs.StringVar(&o.format, "format", "", "write `FORMAT`: tattle or lsrules (Little Snitch) (default: lsrules for *.lsrules, else tattle)")
	pos, err := parseFlags(e, "rules export", fs, args)
	if err != nil {
		return o, err
	}
	switch len(pos) {
	case 0:
		o.file = "-"
	case 1:
		o.file = pos[0]
	default:
		return o, usagef("give at most one file to write (- or nothing for standard output)")
	}
	if o.format == "" {
		o.format = api.FormatTattle
		if strings.EqualFold(filepath.Ext(o.file), ".lsrules") {
			o.format = api.FormatLittleSnitch
		}
		return o, nil
	}
	// No OpenSnitch export: OpenSnitch decides by first match in name order over a directory of files, so a
	// faithful export would need Tattle's precedence rewritten as names and flags, and name and list rules as
	// regular expressions and list directories; a blob that decides differently would be worse than none.
	for _, f := range exportFormats {
		if o.format == f {
			return o, nil
		}
	}
	return o, usagef("--format: %q cannot be exported; use %s", o.format, strings.Join(exportFormats, ", "))
}

var exportFormats = []string{api.FormatTattle, api.FormatLittleSnitch}

func cmdRulesExport(ctx context.Context, e *env, args []string) error {
	o, err := parseExport(e, args)
	if err != nil {
		return err
	}
	return e.withHelper(false, false, func(h Helper) error {
		data, skipped, err := h.Export(ctx, o.format)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(e.stderr, "tattlectl: skipped: %s\n", oneLine(s))
		}
		if o.file == "-" {
			_, err = e.stdout.Write(data)
			return err
		}
		return e.writeFile(o.file, data)
	})
}

func cmdMode(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("mode")
	noInteractive := fs.Bool("no-interactive", false, "never ask for a password")
	pos, err := parseFlags(e, "mode", fs, args)
	if err != nil {
		return err
	}
	modes := api.Modes()
	switch {
	case len(pos) > 1:
		return usagef("give one mode: %s", strings.Join(modes, ", "))
	case len(pos) == 1:
		ok := false
		for _, m := range modes {
			ok = ok || pos[0] == m
		}
		if !ok {
			return usagef("%q is not a mode; use %s", pos[0], strings.Join(modes, ", "))
		}
	}
	return e.withHelper(len(pos) == 1, *noInteractive, func(h Helper) error {
		if len(pos) == 1 {
			return h.SetMode(ctx, pos[0])
		}
		st, err := h.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, st.Mode)
		return nil
	})
}

// noArgs parses a command that takes flags only.
func noArgs(e *env, name string, fs *flag.FlagSet, args []string) error {
	pos, err := parseFlags(e, name, fs, args)
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected argument %q", pos[0])
	}
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
