// Package history keeps the connection history: one row per decision and periodic byte totals per flow, in an
// embedded SQLite database (modernc.org/sqlite: no cgo) in WAL mode under the helper's state directory.
//
// Writes are queued and committed by one writer goroutine at least every CommitInterval, so a crash (kill -9)
// loses at most the rows of the last interval and never corrupts the file. The database is bounded by the
// retention setting (days) and a size cap; both are enforced incrementally, a bounded number of rows per step,
// so pruning never stalls the writer. Queries (by application, host, time range, verdict, user; paged) use the
// indexes on (app, time) and (time).
package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"
)

// Defaults.
const (
	DefaultCommitInterval = 500 * time.Millisecond
	DefaultMaxBytes       = 256 << 20
	queueSize             = 65536
	pruneBatch            = 5000
	pruneInterval         = 10 * time.Second
	maxPage               = 1000
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("history database closed")

// Decision is one decided (or undecided) connection attempt.
type Decision struct {
	Time    time.Time
	App     string // executable path
	Via     string // script, when an interpreter ran it
	UID     uint32
	Dest    string // address:port
	Host    string // name the application looked up, when known
	Proto   string
	Verdict string // allow, deny, undecided
	Rule    string // rule that decided, when one did
}

// Traffic is a flow's byte totals as sampled at Time.
type Traffic struct {
	Time time.Time
	App  string
	UID  uint32
	Dest string
	Tx   uint64
	Rx   uint64
}

// Options configure Open.
type Options struct {
	// RetentionDays returns the history retention setting; 0 keeps rows until the size cap prunes them.
	RetentionDays  func() int
	MaxBytes       int64         // DefaultMaxBytes when 0
	CommitInterval time.Duration // DefaultCommitInterval when 0
	Logger         *slog.Logger
}

// DB is the history database.
type DB struct {
	db       *sql.DB
	path     string
	opts     Options
	queue    chan any
	dropped  atomic.Uint64
	closed   atomic.Bool
	done     chan struct{}
	stop     context.CancelFunc
	flushReq chan chan struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS decisions (
	id INTEGER PRIMARY KEY,
	t INTEGER NOT NULL,      -- Unix milliseconds
	app TEXT NOT NULL,
	via TEXT NOT NULL DEFAULT '',
	uid INTEGER NOT NULL,
	dest TEXT NOT NULL,
	host TEXT NOT NULL DEFAULT '',
	proto TEXT NOT NULL,
	verdict TEXT NOT NULL,
	rule TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_app_t ON decisions (app, t);
CREATE INDEX IF NOT EXISTS decisions_t ON decisions (t);
CREATE TABLE IF NOT EXISTS traffic (
	id INTEGER PRIMARY KEY,
	t INTEGER NOT NULL,
	app TEXT NOT NULL,
	uid INTEGER NOT NULL,
	dest TEXT NOT NULL,
	tx INTEGER NOT NULL,     -- bytes sent since the previous sample of this flow
	rx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traffic_t ON traffic (t);
`

// Open opens (creating when needed) the database at path and starts its writer; Close stops it.
func Open(path string, o Options) (*DB, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetentionDays == nil {
		o.RetentionDays = func() int { return 0 }
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create history directory: %w", err)
	}
	// auto_vacuum must be chosen before the first table exists; incremental lets pruning give pages back a
	// few at a time.
	dsn := "file:" + path + "?_pragma=auto_vacuum(incremental)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)" +
		"&_pragma=busy_timeout(5000)&_pragma=foreign_keys(off)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open history database %s: %w", path, err)
	}
	// One connection per use is not needed: a small pool lets queries run beside the writer (WAL).
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open history database %s (move it aside if it is damaged): %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &DB{db: db, path: path, opts: o, queue: make(chan any, queueSize), done: make(chan struct{}), stop: cancel,
		flushReq: make(chan chan struct{})}
	go h.writer(ctx)
	return h, nil
}

// Close commits what is queued and closes the database.
func (h *DB) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.stop()
	<-h.done
	return h.db.Close()
}

// Dropped counts rows lost because the write queue was full.
func (h *DB) Dropped() uint64 { return h.dropped.Load() }

// Record queues a decision; it never blocks (a full queue drops the row and counts it).
func (h *DB) Record(d Decision) { h.enqueue(d) }

// RecordTraffic queues a traffic sample.
func (h *DB) RecordTraffic(t Traffic) { h.enqueue(t) }

func (h *DB) enqueue(v any) {
	if h.closed.Load() {
		return
	}
	select {
	case h.queue <- v:
	default:
		h.dropped.Add(1)
	}
}

// Flush waits until everything queued before it is committed.
func (h *DB) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case h.flushReq <- ch:
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		return ErrClosed
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *DB) writer(ctx context.Context) {
	defer close(h.done)
	tick := time.NewTicker(h.opts.CommitInterval)
	defer tick.Stop()
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	var batch []any
	commit := func() {
	drain:
		for {
			select {
			case v := <-h.queue:
				batch = append(batch, v)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := h.write(batch); err != nil {
			h.opts.Logger.Warn("write history", "rows", len(batch), "error", err)
		}
		batch = batch[:0]
	}
	h.Prune(context.Background())
	for {
		select {
		case <-ctx.Done():
			commit()
			return
		case v := <-h.queue:
			batch = append(batch, v)
			if len(batch) >= 10000 {
				commit()
			}
		case <-tick.C:
			commit()
		case ch := <-h.flushReq:
			commit()
			close(ch)
		case <-prune.C:
			commit()
			h.Prune(context.Background())
		}
	}
}

func (h *DB) write(batch []any) error {
	tx, err := h.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	dec, err := tx.Prepare(`INSERT INTO decisions (t, app, via, uid, dest, host, proto, verdict, rule) VALUES (?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	defer dec.Close()
	tr, err := tx.Prepare(`INSERT INTO traffic (t, app, uid, dest, tx, rx) VALUES (?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, v := range batch {
		switch v := v.(type) {
		case Decision:
			_, err = dec.Exec(v.Time.UnixMilli(), v.App, v.Via, v.UID, v.Dest, v.Host, v.Proto, v.Verdict, v.Rule)
		case Traffic:
			_, err = tr.Exec(v.Time.UnixMilli(), v.App, v.UID, v.Dest, int64(v.Tx), int64(v.Rx))
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Prefill writes rows in one transaction, bypassing the queue (tests and imports).
func (h *DB) Prefill(rows []Decision) error {
	batch := make([]any, len(rows))
	for i, r := range rows {
		batch[i] = r
	}
	return h.write(batch)
}

// Size is the database's size in bytes (pages in use and free, without the WAL).
func (h *DB) Size(ctx context.Context) (int64, error) {
	var pages, size int64
	if err := h.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := h.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return 0, err
	}
	return pages * size, nil
}

// Prune removes rows past the retention and, while the file is over its cap, the oldest rows, a batch at a
// time, giving the freed pages back to the file system. Called by the writer; exported for tests.
func (h *DB) Prune(ctx context.Context) {
	if days := h.opts.RetentionDays(); days > 0 {
		cut := time.Now().Add(-time.Duration(days) * 24 * time.Hour).UnixMilli()
		for _, table := range []string{"decisions", "traffic"} {
			for i := 0; i < 20; i++ {
				res, err := h.db.ExecContext(ctx, `DELETE FROM `+table+` WHERE id IN (SELECT id FROM `+table+
					` WHERE t < ? ORDER BY t LIMIT ?)`, cut, pruneBatch)
				if err != nil {
					h.opts.Logger.Warn("prune history", "error", err)
					return
				}
				if n, _ := res.RowsAffected(); n < pruneBatch {
					break
				}
			}
		}
	}
	// The cap leaves room for the WAL: rows go once the main file passes 90% of it.
	limit := h.opts.MaxBytes * 9 / 10
	for i := 0; i < 200; i++ {
		size, err := h.usedBytes(ctx)
		if err != nil || size <= limit {
			break
		}
		for _, table := range []string{"decisions", "traffic"} {
			if _, err := h.db.ExecContext(ctx, `DELETE FROM `+table+` WHERE id IN (SELECT id FROM `+table+
				` ORDER BY id LIMIT ?)`, pruneBatch); err != nil {
				h.opts.Logger.Warn("prune history to its size cap", "error", err)
				return
			}
		}
	}
	h.db.ExecContext(ctx, `PRAGMA incremental_vacuum`)
	h.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
}

// usedBytes is the size of the pages that hold data (the file less its free pages).
func (h *DB) usedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	if err := h.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := h.db.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, err
	}
	if err := h.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return 0, err
	}
	return (pages - free) * size, nil
}

// Filter selects decisions. Zero fields match everything.
type Filter struct {
	App     string // executable path, exact
	Host    string // substring of the host name or the destination
	Text    string // substring of the executable, the script, the host name or the destination
	Verdict string
	UID     *uint32 // only this user's
	Since   time.Time
	Until   time.Time
	Offset  int
	Limit   int // at most maxPage; 100 when 0
}

// Query returns the decisions the filter selects, newest first.
func (h *DB) Query(ctx context.Context, f Filter) ([]Decision, error) {
	var (
		where []string
		args  []any
	)
	if f.App != "" {
		where, args = append(where, "app = ?"), append(args, f.App)
	}
	if f.Host != "" {
		where = append(where, "(instr(host, ?) > 0 OR instr(dest, ?) > 0)")
		args = append(args, f.Host, f.Host)
	}
	if f.Text != "" {
		where = append(where, "(instr(app, ?) > 0 OR instr(via, ?) > 0 OR instr(host, ?) > 0 OR instr(dest, ?) > 0)")
		args = append(args, f.Text, f.Text, f.Text, f.Text)
	}
	if f.Verdict != "" {
		where, args = append(where, "verdict = ?"), append(args, f.Verdict)
	}
	if f.UID != nil {
		where, args = append(where, "uid = ?"), append(args, *f.UID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "t >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "t < ?"), append(args, f.Until.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, maxPage)
	q := `SELECT t, app, via, uid, dest, host, proto, verdict, rule FROM decisions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY t DESC, id DESC LIMIT ? OFFSET ?"
	args = append(args, limit, max(f.Offset, 0))
	rows, err := h.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query history: %w", err)
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		var d Decision
		var t int64
		if err := rows.Scan(&t, &d.App, &d.Via, &d.UID, &d.Dest, &d.Host, &d.Proto, &d.Verdict, &d.Rule); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		d.Time = time.UnixMilli(t)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Bucket is the traffic of one time span.
type Bucket struct {
	Start time.Time
	Tx    uint64
	Rx    uint64
}

// TrafficBuckets sums the traffic samples in [since, until) into buckets of the given width, oldest first;
// uid limits it to one user's flows when not nil.
func (h *DB) TrafficBuckets(ctx context.Context, since, until time.Time, width time.Duration, uid *uint32) ([]Bucket, error) {
	if width < time.Second {
		return nil, fmt.Errorf("traffic bucket %v: use at least one second", width)
	}
	if until.IsZero() {
		until = time.Now()
	}
	if !until.After(since) {
		return nil, fmt.Errorf("traffic range: %v is not after %v", until, since)
	}
	if until.Sub(since)/width > 10000 {
		return nil, fmt.Errorf("traffic range %v in buckets of %v: more than 10000 buckets; use wider ones", until.Sub(since), width)
	}
	w := width.Milliseconds()
	q := `SELECT (t - ?) / ? AS b, sum(tx), sum(rx) FROM traffic WHERE t >= ? AND t < ?`
	args := []any{since.UnixMilli(), w, since.UnixMilli(), until.UnixMilli()}
	if uid != nil {
		q += " AND uid = ?"
		args = append(args, *uid)
	}
	q += " GROUP BY b ORDER BY b"
	rows, err := h.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query traffic: %w", err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var b, tx, rx int64
		if err := rows.Scan(&b, &tx, &rx); err != nil {
			return nil, fmt.Errorf("read traffic: %w", err)
		}
		out = append(out, Bucket{Start: since.Add(time.Duration(b*w) * time.Millisecond), Tx: uint64(tx), Rx: uint64(rx)})
	}
	return out, rows.Err()
}
