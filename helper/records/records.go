// Package records writes one structured journald record per decision the helper makes or sees, so that
// journald's forwarding (journal-upload, a syslog forwarder, any agent reading the journal) ships Tattle's
// decisions to whatever a fleet already runs. Records go through a bounded queue to one goroutine: the
// decision path never waits for journald, and a flood overflows the queue into a counter.
package records

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// DefaultQueue is how many records may wait for journald before new ones are dropped (and counted).
const DefaultQueue = 4096

// Decision is one decision as recorded.
type Decision struct {
	Time    time.Time
	App     string // the executable (its identity, named by its path)
	Via     string // the script an interpreter runs, "" for none
	UID     uint32
	Dest    string // address:port
	Host    string // the name the application looked up, "" when not known
	Proto   string
	Verdict string // allow, deny or undecided (held for a question)
	Rule    string // the rule's ID, or why: default, learned, nobody-to-ask, undecided
}

// Options configure a Writer.
type Options struct {
	Queue    int                                                                    // DefaultQueue when 0
	UserName func(uid uint32) string                                                // names users for TATTLE_USER; nil: the UID only
	Log      *slog.Logger                                                           // nil: discarded
	Send     func(message string, p journal.Priority, vars map[string]string) error // nil: journal.Send
}

// Writer queues records and sends them from its Run goroutine.
type Writer struct {
	queue    chan Decision
	userName func(uint32) string
	log      *slog.Logger
	send     func(string, journal.Priority, map[string]string) error

	dropped, sent, failed atomic.Uint64
	users                 sync.Map // uid -> name, looked up once
}

// Available says whether journald listens on this system (its native socket answers).
func Available() bool { return journal.Enabled() }

// New returns a writer; nothing is sent until Run.
func New(o Options) *Writer {
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Send == nil {
		o.Send = journal.Send
	}
	return &Writer{queue: make(chan Decision, o.Queue), userName: o.UserName, log: o.Log, send: o.Send}
}

// Record queues a decision without ever blocking: a full queue drops it and counts it in Dropped.
func (w *Writer) Record(d Decision) {
	select {
	case w.queue <- d:
	default:
		w.dropped.Add(1)
	}
}

// Dropped is how many records a full queue lost.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Sent is how many records journald accepted.
func (w *Writer) Sent() uint64 { return w.sent.Load() }

// Failed is how many records journald refused (its socket gone or full for long).
func (w *Writer) Failed() uint64 { return w.failed.Load() }

// Queued is how many records wait to be sent.
func (w *Writer) Queued() int { return len(w.queue) }

// Run sends queued records until ctx ends; what is still queued then is sent before it returns, so a
// stopping helper's last decisions are not lost.
func (w *Writer) Run(ctx context.Context) {
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case d := <-w.queue:
					w.write(d, &lastWarn)
				default:
					return
				}
			}
		case d := <-w.queue:
			w.write(d, &lastWarn)
		}
	}
}

func (w *Writer) write(d Decision, lastWarn *time.Time) {
	msg, prio, vars := w.Fields(d)
	if err := w.send(msg, prio, vars); err != nil {
		w.failed.Add(1)
		if time.Since(*lastWarn) > time.Minute {
			*lastWarn = time.Now()
			w.log.Warn("a decision record did not reach journald", "error", err, "failed_so_far", w.failed.Load())
		}
		return
	}
	w.sent.Add(1)
}

// Fields is the record of d: its readable MESSAGE, priority and TATTLE_* fields (empty ones left out).
func (w *Writer) Fields(d Decision) (string, journal.Priority, map[string]string) {
	user := w.user(d.UID)
	vars := map[string]string{
		"TATTLE_APP":     d.App,
		"TATTLE_DEST":    d.Dest,
		"TATTLE_PROTO":   d.Proto,
		"TATTLE_VERDICT": d.Verdict,
		"TATTLE_RULE":    d.Rule,
		"TATTLE_UID":     strconv.FormatUint(uint64(d.UID), 10),
		"TATTLE_USER":    user,
		// The attempt's own time: the record's is when journald received it.
		"TATTLE_TIME_USEC":  strconv.FormatInt(d.Time.UnixMicro(), 10),
		"SYSLOG_IDENTIFIER": "tattled",
	}
	if d.Via != "" {
		vars["TATTLE_VIA"] = d.Via
	}
	if d.Host != "" {
		vars["TATTLE_HOST"] = d.Host
	}
	for k, v := range vars {
		if v == "" {
			delete(vars, k)
		}
	}
	who := d.App
	if d.Via != "" {
		who = fmt.Sprintf("%s via %s", d.Via, d.App)
	}
	to := d.Dest
	if d.Host != "" {
		to = fmt.Sprintf("%s (%s)", d.Host, d.Dest)
	}
	var what string
	switch d.Verdict {
	case "allow":
		what = "allowed"
	case "deny":
		what = "denied"
	case "undecided":
		what = "held (no rule decides it)"
	default:
		what = d.Verdict
	}
	msg := fmt.Sprintf("%s %s: %s to %s run by %s, rule %s", d.Proto, what, who, to, user, d.Rule)
	prio := journal.PriInfo
	if d.Verdict == "deny" {
		prio = journal.PriNotice
	}
	return msg, prio, vars
}

func (w *Writer) user(uid uint32) string {
	if v, ok := w.users.Load(uid); ok {
		return v.(string)
	}
	name := strconv.FormatUint(uint64(uid), 10)
	if w.userName != nil {
		name = w.userName(uid)
	}
	w.users.Store(uid, name)
	return name
}
