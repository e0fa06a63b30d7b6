package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
)

// Helper is what tattlectl needs of tattled; *client.Client implements it, tests use a fake.
type Helper interface {
	Status(ctx context.Context) (api.Status, error)
	SetMode(ctx context.Context, mode string) error
	Learn(ctx context.Context, seconds uint32) error
	Rules(ctx context.Context) ([]api.Rule, error)
	AddRules(ctx context.Context, rs []api.Rule) ([]string, error)
	RemoveRules(ctx context.Context, ids []string) error
	SetEnabled(ctx context.Context, id string, enabled bool) error
	ImportFiles(ctx context.Context, req api.ImportRequest) (api.ImportSummary, []string, error)
	Approve(ctx context.Context, ids []string) error
	Export(ctx context.Context, format string) ([]byte, []string, error)
	Problems(ctx context.Context) ([]api.Problem, error)
	Flows(ctx context.Context) ([]api.Flow, error)
	History(ctx context.Context, q api.HistoryQuery) ([]api.HistoryEntry, error)
	Traffic(ctx context.Context, since, until time.Time, bucket time.Duration) ([]api.TrafficBucket, error)
	Close() error
}

// env is everything a command touches outside its arguments, so that tests can supply their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	connect        func(interactive bool) (Helper, error)
	now            func() time.Time
	uid            int
	getwd          func() (string, error)
	lookPath       func(file string) (string, error)
	lstat          func(name string) (os.FileInfo, error)
	userName       func(uid uint32) string // "" when unknown
	readFile       func(name string) ([]byte, error)
	readDir        func(name string) ([]string, error) // names of the regular files in a directory
	writeFile      func(name string, data []byte) error
	terminal       bool       // stdout is a terminal (monitor redraws in place)
	termRows       func() int // rows of the terminal, 0 when unknown
	noInteractive  bool       // --no-interactive, before the command
	// dialClient connects a full client (the agent exports an object on its connection).
	dialClient func(interactive bool) (*client.Client, error)
	// startAuthAgent starts a polkit authentication agent for this process (agent command); it returns
	// the function that stops it.
	startAuthAgent func() (stop func())
}

func systemEnv() *env {
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		connect: func(interactive bool) (Helper, error) {
			c, err := client.Connect(client.Options{Interactive: interactive})
			switch {
			case err != nil:
				return nil, err
			case interactive:
				return agentHelper{Helper: c, stop: startTTYAgent()}, nil
			}
			return c, nil
		},
		dialClient: func(interactive bool) (*client.Client, error) {
			return client.Connect(client.Options{Interactive: interactive})
		},
		startAuthAgent: startProcessTTYAgent,
		now:            time.Now,
		uid:            os.Getuid(),
		getwd:          os.Getwd,
		lookPath:       exec.LookPath,
		lstat:          os.Lstat,
		userName:       cachedUserNames(),
		readFile:       os.ReadFile,
		readDir: func(name string) ([]string, error) {
			ents, err := os.ReadDir(name)
			if err != nil {
				return nil, err
			}
			var out []string
			for _, e := range ents {
				if e.Type().IsRegular() {
					out = append(out, e.Name())
				}
			}
			return out, nil
		},
		writeFile: func(name string, data []byte) error {
			return os.WriteFile(name, data, 0o644)
		},
	}
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		e.terminal = true
		e.termRows = func() int {
			ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ)
			if err != nil {
				return 0
			}
			return int(ws.Row)
		}
	}
	return e
}

// cachedUserNames looks user names up once per uid (monitor asks every refresh).
func cachedUserNames() func(uint32) string {
	var mu sync.Mutex
	names := map[uint32]string{}
	return func(uid uint32) string {
		mu.Lock()
		defer mu.Unlock()
		if n, ok := names[uid]; ok {
			return n
		}
		n := ""
		if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
			n = u.Username
		}
		names[uid] = n
		return n
	}
}

// userLabel shows a uid as its user name, or the number when it has none.
func (e *env) userLabel(uid uint32) string {
	if n := e.userName(uid); n != "" {
		return n
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// withHelper connects to the helper for one command, runs use on the connection and closes it. Commands that
// change state (change) allow interactive authorization unless the user said --no-interactive (before the
// command or after it). Errors come back as the client made them: report turns them into what failed and what
// to do.
func (e *env) withHelper(change, noInteractive bool, use func(Helper) error) error {
	h, err := e.connect(change && !noInteractive && !e.noInteractive)
	if err != nil {
		return err
	}
	defer h.Close()
	return use(h)
}

// show runs a read-only command whose one flag is --json: it fetches a value from the helper and prints it as
// JSON or as textForm (see fetchAndWrite).
func show[T any](ctx context.Context, e *env, name, textForm string, args []string,
	fetch func(Helper, context.Context) (T, error), writeJSON func(io.Writer, T) error,
	writeText func(context.Context, Helper, T) error) error {
	fs := newFlagSet(name)
	asJSON := fs.Bool("json", false, "print JSON instead of "+textForm)
	if err := noArgs(e, name, fs, args); err != nil {
		return err
	}
	return fetchAndWrite(ctx, e, *asJSON, fetch, writeJSON, writeText)
}

// fetchAndWrite is the end of a read-only command: it fetches a value from the helper and prints it as JSON
// or, through writeText (given the open connection, for follow-up queries), as text.
func fetchAndWrite[T any](ctx context.Context, e *env, asJSON bool,
	fetch func(Helper, context.Context) (T, error), writeJSON func(io.Writer, T) error,
	writeText func(context.Context, Helper, T) error) error {
	return e.withHelper(false, false, func(h Helper) error {
		v, err := fetch(h, ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(e.stdout, v)
		}
		return writeText(ctx, h, v)
	})
}

// command is one subcommand: its name, synopsis and summary for help, and the function that runs it.
type command struct {
	name     string // "rules add"
	synopsis string // arguments after the name
	summary  string
	run      func(ctx context.Context, e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"status", "[--json]", "show the helper's version, backend, mode, rule count and problems", cmdStatus},
		{"rules list", "[--json]", "list the rules you may see", cmdRulesList},
		{"rules add", "(--allow|--deny) [--app PATH|any] [--remote R] [--port P] [--protocol tcp|udp|any] [--duration D [--until T]] [--user] [--id ID] [--note TEXT]", "add a rule and print its id", cmdRulesAdd},
		{"rules remove", "ID...", "remove rules", cmdRulesRemove},
		{"rules enable", "ID...", "switch rules on", cmdRulesEnable},
		{"rules approve", "ID...", "approve imported rules (shown as not approved until then); asks your password", cmdRulesApprove},
		{"rules learned", "[--json] | approve (--all|--app PATH) | discard (--all|--app PATH)", "review the rules learning mode proposed: list them by program, approve (enable) or discard them", cmdRulesLearned},
		{"rules disable", "ID...", "switch rules off (they stay, doing nothing)", cmdRulesDisable},
		{"rules import", "[--format tattle|lsrules|opensnitch] [--user] [--dry-run] [--lists DIR] FILE|DIR|-", "import rules from Tattle, Little Snitch or OpenSnitch files", cmdRulesImport},
		{"rules export", "[--format tattle|lsrules] [FILE|-]", "write the rules you may see to FILE (default: standard output)", cmdRulesExport},
		{"monitor", "[--json] [--interval 1s] [--once]", "show the connections programs make, refreshed until Ctrl-C", cmdMonitor},
		{"history", "[--json] [--since 24h] [--app PATH] [--host TEXT] [--verdict allow|deny|undecided] [--page N]", "show past connection attempts and their verdicts", cmdHistory},
		{"traffic", "[--json] [--since 24h] [--bucket 1h]", "show the bytes sent and received over time", cmdTraffic},
		{"agent", "[--json] [--replace]", "answer questions about your programs' connections in this terminal", cmdAgent},
		{"mode", "[alert|silent-allow|silent-deny]", "show or set what happens to connections no rule decides", cmdMode},
		{"learn", "DURATION", "learning mode for DURATION (\"10m\"): allow everything, propose a rule per connection, then back to alert", cmdLearn},
		{"version", "", "print tattlectl's version", cmdVersion},
	}
}

const exitHelp = "Exit status: 0 success, 1 the operation failed, 2 usage error, 3 tattled is not reachable, 4 access denied."

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: tattlectl [--no-interactive] COMMAND [ARGUMENTS]\n\n")
	fmt.Fprintf(w, "Shows and changes what Tattle's firewall helper (tattled) enforces, over the system bus.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nOptions:\n  --no-interactive  never ask for a password; fail with \"access denied\" instead\n")
	fmt.Fprintf(w, "  --version         print the version\n\n")
	fmt.Fprintf(w, "Run 'tattlectl COMMAND --help' for a command's options.\n%s\n", exitHelp)
}

// run is the whole program: it parses args, runs the command and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	global := newFlagSet("tattlectl")
	global.BoolVar(&e.noInteractive, "no-interactive", false, "")
	showVersion := global.Bool("version", false, "")
	err := global.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(e.stdout)
		return exitOK
	case err != nil:
		return report(e.stderr, &usageError{msg: err.Error()})
	case *showVersion:
		return report(e.stderr, cmdVersion(ctx, e, nil))
	}
	args = global.Args()
	if len(args) == 0 {
		printUsage(e.stderr)
		return exitUsage
	}
	if args[0] == "help" {
		if len(args) == 1 {
			printUsage(e.stdout)
			return exitOK
		}
		args = append(args[1:], "--help")
	}
	if len(args) == 2 && len(subcommands(args[0])) > 0 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
		printUsage(e.stdout) // "tattlectl rules --help"
		return exitOK
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		return report(e.stderr, err)
	}
	err = cmd.run(ctx, e, rest)
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = cmd.name
	}
	return report(e.stderr, err)
}

// findCommand picks the command named by the first one or two words of args.
func findCommand(args []string) (*command, []string, error) {
	if len(args) >= 2 {
		for i := range commands {
			if commands[i].name == args[0]+" "+args[1] {
				return &commands[i], args[2:], nil
			}
		}
	}
	for i := range commands {
		if commands[i].name == args[0] {
			return &commands[i], args[1:], nil
		}
	}
	if subs := subcommands(args[0]); len(subs) > 0 {
		if len(args) == 1 {
			return nil, nil, &usageError{msg: fmt.Sprintf("%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))}
		}
		return nil, nil, &usageError{msg: fmt.Sprintf("%q is not a subcommand of %s; use one of %s", args[1], args[0], strings.Join(subs, ", "))}
	}
	return nil, nil, &usageError{msg: fmt.Sprintf("%q is not a command", args[0])}
}

// subcommands lists the second words of the commands that start with word ("rules": list, add...).
func subcommands(word string) []string {
	var subs []string
	for _, c := range commands {
		if after, ok := strings.CutPrefix(c.name, word+" "); ok {
			subs = append(subs, after)
		}
	}
	return subs
}

func lookupCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	panic("no command " + name)
}

// errHelpShown ends a command after it printed its help on request.
var errHelpShown = errors.New("help shown")

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by run, help by parseFlags
	return fs
}

// parseFlags parses a command's arguments, allowing flags after positional arguments too ("rules remove a b
// --no-interactive"); everything after "--" is positional. --help prints the command's help to stdout.
func parseFlags(e *env, name string, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(e.stdout, lookupCommand(name), fs)
			return nil, errHelpShown
		}
		if err != nil {
			return nil, &usageError{cmd: name, msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: tattlectl %s %s\n\n%s.\n", c.name, c.synopsis, strings.ToUpper(c.summary[:1])+c.summary[1:])
	if extra := commandNotes[c.name]; extra != "" {
		fmt.Fprintf(w, "\n%s\n", extra)
	}
	var opts []string
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if isBoolFlag(f) {
			arg = ""
		}
		line := "--" + f.Name
		if arg != "" {
			line += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		opts = append(opts, fmt.Sprintf("  %-26s %s", line, usage))
	})
	if len(opts) > 0 {
		fmt.Fprintf(w, "\nOptions:\n%s\n", strings.Join(opts, "\n"))
	}
	fmt.Fprintf(w, "\n%s\n", exitHelp)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

var commandNotes = map[string]string{
	"rules add": `A rule without --user covers every user's processes (a system rule) and needs an administrator's
permission; with --user it covers only your own processes.
--app takes an absolute path, a path relative to the current directory ("./app"), a program name looked up
in PATH ("curl"), "flatpak:ID", "snap:NAME", "appimage:PATH" or "any".
--remote takes "any", an address, a network ("10.0.0.0/8"), "host:NAME", "domain:NAME" (with subdomains),
"wildcard:*.NAME" or "list:NAME".
--duration is forever, until-restart, until-time (with --until), until-quit or once. --until takes an RFC 3339
time ("2030-01-01T00:00:00Z") or a duration from now ("2h", "30m") and implies --duration until-time.`,
	"rules import": `Without --format the format is recognised from the file's name and content. Without --user the rules
are system rules (for every user; needs an administrator's permission); with --user they cover only your own
processes (and Little Snitch's owner "me" means you). A directory is an OpenSnitch rules directory
(/etc/opensnitchd/rules): its rules are imported together, in OpenSnitch's order, with the list directories
their "lists" rules name (looked for under --lists DIR by name when they are not where the rules say).
An import is all or nothing; --dry-run shows what it would do and changes nothing. It prints one summary
line, then one line per reason something was not imported exactly; it fails when nothing was imported.`,
	"learn": `While learning, every connection no rule decides is allowed unasked, and each program's destination
(host or address, port, protocol) becomes a proposed rule, disabled until you approve it with
'tattlectl rules learned approve'. At the end the mode returns to alert by itself. Needs an
administrator's permission. DURATION is 1s to 24h.`,
	"rules learned": `Lists the proposals of learning mode grouped by program. "approve" enables the proposals of every program
(--all) or of one (--app PATH, the program's path or its script's); "discard" removes them. Both ask your
password (an administrator's for system programs' proposals).`,
	"monitor": `Shows your own processes' connections; an administrator sees everyone's. --json prints one JSON array per
refresh, one line each.`,
}

func cmdVersion(_ context.Context, e *env, args []string) error {
	if _, err := parseFlags(e, "version", newFlagSet("version"), args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tattlectl %s\n", version)
	return nil
}
