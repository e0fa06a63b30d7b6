package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/identity"
	"github.com/tattlefw/tattle/shared/rules"
)

// agentPath is where tattlectl exports its agent on its own connection.
const agentPath = dbus.ObjectPath("/io/github/tattlefw/tattlectl/Agent")

const agentKeys = `Answer with keys, then Enter:  a allow   d deny
  scope:     h this host (default)   o this domain   p this port   n any connection
  duration:  1 once   q until the app quits   r until restart   t<time> for a time (t30m, t2h)   f forever (default)
  e.g. "a" allows this host forever, "d n q" denies everything until the app quits.`

// parseAnswer reads one line of keys (or words) into an answer. Scope and duration default to this host and
// forever.
func parseAnswer(line string, now time.Time) (api.Answer, error) {
	ans := api.Answer{Scope: api.ScopeHost, Duration: rules.DurationForever}
	for _, tok := range strings.Fields(strings.ToLower(line)) {
		switch tok {
		case "a", "allow":
			ans.Action = rules.ActionAllow
		case "d", "deny":
			ans.Action = rules.ActionDeny
		case "h", "host":
			ans.Scope = api.ScopeHost
		case "o", "domain":
			ans.Scope = api.ScopeDomain
		case "p", "port":
			ans.Scope = api.ScopePort
		case "n", "any":
			ans.Scope = api.ScopeAny
		case "1", "once":
			ans.Duration, ans.Until = rules.DurationOnce, 0
		case "q", "until-quit":
			ans.Duration, ans.Until = rules.DurationUntilQuit, 0
		case "r", "until-restart":
			ans.Duration, ans.Until = rules.DurationUntilRestart, 0
		case "f", "forever":
			ans.Duration, ans.Until = rules.DurationForever, 0
		default:
			if len(tok) > 1 && tok[0] == 't' {
				d, err := time.ParseDuration(tok[1:])
				if err != nil || d < time.Second || d > 10*365*24*time.Hour {
					return ans, fmt.Errorf("%q: give a time such as t30m or t2h", tok)
				}
				ans.Duration, ans.Until = rules.DurationUntilTime, now.Add(d).Unix()
				continue
			}
			return ans, fmt.Errorf("%q is not a key", tok)
		}
	}
	if ans.Action == "" {
		return ans, errors.New("say a (allow) or d (deny)")
	}
	return ans, nil
}

// askedQuestion is one question waiting for the terminal.
type askedQuestion struct {
	q         api.Question
	answer    chan api.Answer
	cancelled chan struct{}
	once      sync.Once
}

// termAgent implements io.github.tattlefw.Tattle1.Agent for a terminal: questions queue up and are shown one at
// a time.
type termAgent struct {
	ctx     context.Context
	mu      sync.Mutex
	waiting []*askedQuestion
	notify  chan struct{}
	asked   chan askedEvent // the helper said which agent it asks now
}

// askedEvent is an AskedChanged call.
type askedEvent struct {
	Event string `json:"event"` // "asked"
	Here  bool   `json:"here"`
	PID   uint32 `json:"pid"`
	Exe   string `json:"exe"`
	Kind  string `json:"kind"`
}

// AskedChanged: the helper now asks another of this user's agents, or this one again.
func (a *termAgent) AskedChanged(here bool, pid uint32, exe, kind string) *dbus.Error {
	select {
	case a.asked <- askedEvent{Event: "asked", Here: here, PID: pid, Exe: exe, Kind: kind}:
	default: // a burst of changes: the latest few are enough
	}
	return nil
}

func (a *termAgent) Ask(q api.Question) (api.Answer, *dbus.Error) {
	aq := &askedQuestion{q: q, answer: make(chan api.Answer, 1), cancelled: make(chan struct{})}
	a.mu.Lock()
	a.waiting = append(a.waiting, aq)
	a.mu.Unlock()
	a.poke()
	select {
	case ans := <-aq.answer:
		return ans, nil
	case <-aq.cancelled:
		return api.Answer{}, dbus.NewError(api.ErrFailed, []any{"the question was settled elsewhere"})
	case <-a.ctx.Done():
		return api.Answer{}, dbus.NewError(api.ErrFailed, []any{"the agent is stopping"})
	}
}

func (a *termAgent) Cancel(id uint64) *dbus.Error {
	a.mu.Lock()
	for _, aq := range a.waiting {
		if aq.q.ID == id {
			aq.once.Do(func() { close(aq.cancelled) })
		}
	}
	a.mu.Unlock()
	a.poke()
	return nil
}

func (a *termAgent) poke() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// next returns the oldest question still open, dropping cancelled ones, and how many wait behind it.
func (a *termAgent) next() (*askedQuestion, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.waiting[:0]
	for _, aq := range a.waiting {
		select {
		case <-aq.cancelled:
		default:
			kept = append(kept, aq)
		}
	}
	a.waiting = kept
	if len(kept) == 0 {
		return nil, 0
	}
	return kept[0], len(kept) - 1
}

func (a *termAgent) done(aq *askedQuestion) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, cur := range a.waiting {
		if cur == aq {
			a.waiting = append(a.waiting[:i:i], a.waiting[i+1:]...)
			return
		}
	}
}

func cmdAgent(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("agent")
	asJSON := fs.Bool("json", false, "print questions as JSON lines (for scripts); answers are still keys")
	noInteractive := fs.Bool("no-interactive", false, "never ask for a password")
	replace := fs.Bool("replace", false, "take the questions over from your other agents (the desktop app shows this); needs your password")
	pos, err := parseFlags(e, "agent", fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return &usageError{cmd: "agent", msg: "agent takes no arguments"}
	}
	// Before connecting: a process that is not dumpable cannot be traced or have its memory written by its
	// user's other programs, and tattled refuses agents that are dumpable.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("protect the agent from tracing: %w", err)
	}
	interactive := !*noInteractive && !e.noInteractive
	c, err := e.connectClient(interactive)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ag := &termAgent{ctx: ctx, notify: make(chan struct{}, 1), asked: make(chan askedEvent, 8)}
	if err := c.Conn().Export(ag, agentPath, api.AgentInterface); err != nil {
		return fmt.Errorf("export the agent: %w", err)
	}
	if interactive && e.startAuthAgent != nil {
		defer e.startAuthAgent()()
	}
	register := c.RegisterAgent
	if *replace {
		register = c.RegisterAgentReplacing
	}
	if err := register(ctx, agentPath); err != nil {
		return err
	}
	defer c.UnregisterAgent(context.Background(), agentPath)
	if !*asJSON {
		fmt.Fprintf(e.stdout, "Answering questions about %s's connections. Ctrl-D or Ctrl-C ends.\n%s\n", e.userLabel(uint32(e.uid)), agentKeys)
	} else {
		writeJSONLine(e.stdout, map[string]any{"event": "registered"})
	}

	lines := make(chan string)
	go func() {
		// Owned by this command: it ends at EOF, which also ends the command.
		defer close(lines)
		sc := bufio.NewScanner(e.stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	// A helper that stops (restart, crash) forgets its agents: register again with the next one, which the
	// registration call itself starts when the bus activates it.
	helperGone := make(chan *dbus.Signal, 8)
	c.Conn().Signal(helperGone)
	defer c.Conn().RemoveSignal(helperGone)
	if err := c.Conn().AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, api.BusName)); err != nil {
		fmt.Fprintf(e.stderr, "will not notice tattled restarting: %v\n", err)
	}
	var current *askedQuestion
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if current == nil {
			var behind int
			if current, behind = ag.next(); current != nil {
				showQuestion(e.stdout, current.q, behind, *asJSON, e.now())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if current == nil {
				if strings.TrimSpace(line) != "" {
					fmt.Fprintln(e.stderr, "no question is open")
				}
				continue
			}
			ans, err := parseAnswer(line, e.now())
			if err != nil {
				fmt.Fprintf(e.stderr, "%v\n%s\n", err, agentKeys)
				continue
			}
			select {
			case <-current.cancelled:
				fmt.Fprintf(e.stdout, "question %d was settled elsewhere before your answer\n", current.q.ID)
			default:
				current.answer <- ans
				if *asJSON {
					writeJSONLine(e.stdout, map[string]any{"event": "answered", "id": current.q.ID, "answer": ans})
				} else {
					fmt.Fprintf(e.stdout, "answered: %s, %s, %s\n", ans.Action, ans.Scope, ans.Duration)
				}
			}
			ag.done(current)
			current = nil
		case ev := <-ag.asked:
			switch {
			case *asJSON:
				writeJSONLine(e.stdout, ev)
			case ev.Here:
				fmt.Fprintln(e.stdout, "questions are asked here again")
			default:
				fmt.Fprintf(e.stdout, "questions now go to %s (process %d), which took over\n", ev.Exe, ev.PID)
			}
		case <-ag.notify:
			if current != nil {
				select {
				case <-current.cancelled:
					if *asJSON {
						writeJSONLine(e.stdout, map[string]any{"event": "cancelled", "id": current.q.ID})
					} else {
						fmt.Fprintf(e.stdout, "question %d was settled without you (timed out, or decided elsewhere)\n", current.q.ID)
					}
					ag.done(current)
					current = nil
				default:
				}
			}
		case sig := <-helperGone:
			if len(sig.Body) != 3 || sig.Body[0] != api.BusName || sig.Body[2] != "" {
				continue
			}
			if *asJSON {
				writeJSONLine(e.stdout, map[string]any{"event": "helper-stopped"})
			} else {
				fmt.Fprintln(e.stdout, "tattled stopped; registering with the next one")
			}
			if err := reregister(ctx, register); err != nil {
				return err
			}
			if *asJSON {
				writeJSONLine(e.stdout, map[string]any{"event": "registered"})
			}
		case <-tick.C:
		}
	}
}

// reregister registers the agent with a new helper, retrying for a while (it may be starting).
func reregister(ctx context.Context, register func(context.Context, dbus.ObjectPath) error) error {
	var err error
	for try := 0; try < 20; try++ {
		if err = register(ctx, agentPath); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("register with the restarted helper: %w", err)
}

func showQuestion(w io.Writer, q api.Question, behind int, asJSON bool, now time.Time) {
	behind += int(q.Waiting) // the helper's own queue for this agent
	if asJSON {
		writeJSONLine(w, map[string]any{"event": "question", "question": q, "waiting": behind})
		return
	}
	dest := q.Addr
	switch {
	case q.Port == api.DNSPort:
		dest = api.DNSServerLabel(q.Addr)
	case q.Host != "":
		dest = q.Host + " (" + q.Addr + ")"
	case q.Reverse != "":
		dest = q.Addr + " (reverse name " + q.Reverse + ", not what the program looked up)"
	}
	kind := ""
	if q.System {
		kind = "System: "
	}
	fmt.Fprintf(w, "\n%sQuestion %d: %s wants to connect\n", kind, q.ID, oneLine(q.Exe))
	fmt.Fprintf(w, "  process:  pid %d (%s), user %s\n", q.PID, oneLine(q.Comm), oneLine(q.User))
	if q.Changed {
		fmt.Fprintf(w, "  changed:  this program's file changed since you made a rule for it\n")
	}
	if q.System {
		fmt.Fprintf(w, "  system:   a system process; your answer makes a rule for all users, after you authenticate\n")
	}
	if q.Via != "" {
		fmt.Fprintf(w, "  via:      %s\n", oneLine(q.Via))
	} else if _, ok := identity.InterpreterNamed(filepath.Base(q.Exe)); ok {
		fmt.Fprintf(w, "  via:      no script: the interpreter itself (a command line, a REPL or standard input)\n")
	}
	fmt.Fprintf(w, "  to:       %s %s %s\n", oneLine(dest), portsLabel(q), q.Protocol)
	if q.Domain != "" {
		fmt.Fprintf(w, "  domain:   o covers any host in %s\n", oneLine(q.Domain))
	}
	left := time.UnixMilli(q.Deadline).Sub(now).Round(time.Second)
	fmt.Fprintf(w, "  if unanswered: %s in %s\n", q.Default, left)
	if behind > 0 {
		fmt.Fprintf(w, "  %d more waiting\n", behind)
	}
	fmt.Fprint(w, "> ")
}

// portsLabel names the ports a question covers: "port 443", or "3,000 ports (22, 80, 443, …)".
func portsLabel(q api.Question) string {
	if q.PortCount <= 1 {
		return fmt.Sprintf("port %d", q.Port)
	}
	shown := q.Ports
	if len(shown) > 8 {
		shown = shown[:8]
	}
	list := make([]string, len(shown))
	for i, p := range shown {
		list[i] = strconv.Itoa(int(p))
	}
	more := ""
	if int(q.PortCount) > len(shown) {
		more = ", …"
	}
	return fmt.Sprintf("%s ports (%s%s)", thousands(q.PortCount), strings.Join(list, ", "), more)
}

// thousands writes n with comma separators (3000 -> "3,000").
func thousands(n uint32) string {
	s := strconv.FormatUint(uint64(n), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// connectClient connects for the agent, which needs the connection itself to export its object.
func (e *env) connectClient(interactive bool) (*client.Client, error) {
	if e.dialClient == nil {
		return nil, errors.New("this build cannot run an agent")
	}
	return e.dialClient(interactive)
}
