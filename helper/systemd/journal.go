package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// Identifier is the SYSLOG_IDENTIFIER of the helper's journal entries (journalctl -t tattled).
const Identifier = "tattled"

// LogHandler returns the handler for the helper's log: structured journal entries when systemd connected
// stderr to the journal (JOURNAL_STREAM names it) and the journal's socket answers, else fallback. Records the
// journal refuses go to fallback too, so none is lost.
func LogHandler(level slog.Leveler, fallback slog.Handler) slog.Handler {
	if stream, err := journal.StderrIsJournalStream(); err != nil || !stream || !journal.Enabled() {
		return fallback
	}
	return NewJournalHandler(level, journal.Send, fallback)
}

// SendFunc writes one journal entry (journal.Send).
type SendFunc func(message string, priority journal.Priority, fields map[string]string) error

// JournalHandler is a slog.Handler writing each record as one journal entry: the message as MESSAGE, the
// level as PRIORITY, the source as CODE_FILE/CODE_LINE/CODE_FUNC, and every attribute as its own field
// (upper case, groups joined with _: "pin_dir" -> PIN_DIR), so `journalctl -o json` and field matches such as
// `journalctl BACKEND=lsm` see them.
type JournalHandler struct {
	level    slog.Leveler
	send     SendFunc
	fallback slog.Handler
	prefix   string            // of the open groups, "GROUP_"
	fields   map[string]string // from WithAttrs
}

// NewJournalHandler returns a handler that writes through send, and through fallback what send refuses.
func NewJournalHandler(level slog.Leveler, send SendFunc, fallback slog.Handler) *JournalHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &JournalHandler{level: level, send: send, fallback: fallback, fields: map[string]string{}}
}

// Enabled implements slog.Handler.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle implements slog.Handler.
func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	fields := make(map[string]string, len(h.fields)+r.NumAttrs()+4)
	for k, v := range h.fields {
		fields[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(fields, h.prefix, a)
		return true
	})
	fields["SYSLOG_IDENTIFIER"] = Identifier
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		fields["CODE_FILE"], fields["CODE_LINE"], fields["CODE_FUNC"] = f.File, strconv.Itoa(f.Line), f.Function
	}
	if err := h.send(r.Message, priority(r.Level), fields); err != nil {
		if h.fallback == nil {
			return fmt.Errorf("write to the journal: %w", err)
		}
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := h.clone()
	for _, a := range attrs {
		addField(n.fields, n.prefix, a)
	}
	if h.fallback != nil {
		n.fallback = h.fallback.WithAttrs(attrs)
	}
	return n
}

// WithGroup implements slog.Handler.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := h.clone()
	n.prefix += fieldName(name) + "_"
	if h.fallback != nil {
		n.fallback = h.fallback.WithGroup(name)
	}
	return n
}

func (h *JournalHandler) clone() *JournalHandler {
	n := *h
	n.fields = make(map[string]string, len(h.fields))
	for k, v := range h.fields {
		n.fields[k] = v
	}
	return &n
}

func addField(fields map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		for _, g := range a.Value.Group() {
			addField(fields, p, g)
		}
		return
	}
	fields[prefix+fieldName(a.Key)] = a.Value.String()
}

// fieldName makes a journal field name of an attribute key: upper-case letters, digits and underscores, not
// starting with an underscore (those are the journal's own trusted fields) or a digit, at most 64 bytes.
func fieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "F_" + s
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// StderrHandler is the plain handler for logging without the journal.
func StderrHandler(level slog.Leveler) slog.Handler {
	return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
}
