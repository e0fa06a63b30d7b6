package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

const historyPage = 100

func cmdHistory(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("history")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	since := fs.Duration("since", 24*time.Hour, "show attempts of the last `DURATION`")
	var q api.HistoryQuery
	fs.StringVar(&q.App, "app", "", "only this executable (`PATH`)")
	fs.StringVar(&q.Host, "host", "", "only destinations whose name or address contains `TEXT`")
	fs.StringVar(&q.Text, "search", "", "only entries whose executable, script, name or address contains `TEXT`")
	fs.StringVar(&q.Verdict, "verdict", "", "only allow, deny or undecided")
	page := fs.Uint("page", 1, "page `N` of 100 entries, newest first")
	if err := noArgs(e, "history", fs, args); err != nil {
		return err
	}
	switch q.Verdict {
	case "", "allow", "deny", "undecided":
	default:
		return usagef("--verdict %q: use allow, deny or undecided", q.Verdict)
	}
	if *page < 1 {
		return usagef("--page: pages count from 1")
	}
	if *since <= 0 {
		return usagef("--since: give a positive duration such as 24h")
	}
	q.Since = e.now().Add(-*since).UnixMilli()
	q.Offset, q.Limit = uint32((*page-1)*historyPage), historyPage
	return fetchAndWrite(ctx, e, *asJSON,
		func(h Helper, ctx context.Context) ([]api.HistoryEntry, error) { return h.History(ctx, q) },
		writeHistoryJSON,
		func(_ context.Context, _ Helper, entries []api.HistoryEntry) error {
			return writeHistoryTable(e, entries, *page)
		})
}

func writeHistoryJSON(w io.Writer, entries []api.HistoryEntry) error {
	type entryJSON struct {
		Time     string `json:"time"`
		Exe      string `json:"exe"`
		Via      string `json:"via,omitempty"`
		UID      uint32 `json:"uid"`
		Dest     string `json:"destination"`
		Host     string `json:"host,omitempty"`
		Protocol string `json:"protocol"`
		Verdict  string `json:"verdict"`
		RuleID   string `json:"rule_id,omitempty"`
	}
	out := make([]entryJSON, 0, len(entries))
	for _, x := range entries {
		out = append(out, entryJSON{msTime(x.Time), x.Exe, x.Via, x.UID, x.Dest, x.Host, x.Protocol, x.Verdict, x.RuleID})
	}
	return writeJSONLine(w, out)
}

// writeHistoryTable prints one page of history, with a pointer to the next page when this one is full.
func writeHistoryTable(e *env, entries []api.HistoryEntry, page uint) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tAPPLICATION\tUSER\tDESTINATION\tHOST\tPROTO\tVERDICT\tRULE")
	now := e.now()
	for _, x := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", seenLabel(x.Time, now), cell(appLabel(x.Exe, x.Via)),
			cell(e.userLabel(x.UID)), cell(x.Dest), cell(x.Host), cell(x.Protocol), cell(x.Verdict), cell(x.RuleID))
	}
	if len(entries) == historyPage {
		fmt.Fprintf(tw, "… more: --page %d\n", page+1)
	}
	return tw.Flush()
}

func cmdTraffic(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("traffic")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	since := fs.Duration("since", 24*time.Hour, "show the last `DURATION`")
	bucket := fs.Duration("bucket", time.Hour, "sum over spans of `DURATION`")
	if err := noArgs(e, "traffic", fs, args); err != nil {
		return err
	}
	if *since <= 0 || *bucket < time.Second {
		return usagef("--since must be positive and --bucket at least 1s")
	}
	if *since / *bucket > 10000 {
		return usagef("--since %v in buckets of %v: more than 10000 rows; use a wider --bucket", *since, *bucket)
	}
	return fetchAndWrite(ctx, e, *asJSON,
		func(h Helper, ctx context.Context) ([]api.TrafficBucket, error) {
			return h.Traffic(ctx, e.now().Add(-*since), time.Time{}, *bucket)
		},
		writeTrafficJSON,
		func(_ context.Context, _ Helper, bs []api.TrafficBucket) error { return writeTrafficTable(e, bs) })
}

func writeTrafficJSON(w io.Writer, bs []api.TrafficBucket) error {
	type bucketJSON struct {
		Start    string `json:"start"`
		Sent     uint64 `json:"sent_bytes"`
		Received uint64 `json:"received_bytes"`
	}
	out := make([]bucketJSON, 0, len(bs))
	for _, b := range bs {
		out = append(out, bucketJSON{msTime(b.Start), b.Sent, b.Received})
	}
	return writeJSONLine(w, out)
}

func writeTrafficTable(e *env, bs []api.TrafficBucket) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tSENT\tRECEIVED")
	now := e.now()
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", seenLabel(b.Start, now), byteLabel(b.Sent), byteLabel(b.Received))
	}
	return tw.Flush()
}
