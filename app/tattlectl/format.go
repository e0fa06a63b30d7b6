package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/shared/rules"
)

// statusJSON is the --json form of "status".
type statusJSON struct {
	Version       string `json:"version"`
	Backend       string `json:"backend"`
	Mode          string `json:"mode"`
	Rules         uint32 `json:"rules"`
	KernelEntries uint32 `json:"kernel_entries"`
	Problems      uint32 `json:"problems"`
	EventsLost    uint64 `json:"events_lost"`
	Pending       uint32 `json:"pending"`
	Holding       string `json:"holding"`
	Names         string `json:"names"`
	Traffic       string `json:"traffic"`
	LearnUntil    int64  `json:"learn_until,omitempty"`
}

func writeStatusJSON(w io.Writer, st api.Status) error {
	return writeJSONLine(w, statusJSON(st))
}

// writeStatus prints the status for people; problems are the helper's refused rule files, when known.
func writeStatus(w io.Writer, st api.Status, problems []api.Problem) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Version:\t%s\n", cell(st.Version))
	fmt.Fprintf(tw, "Backend:\t%s\n", cell(st.Backend))
	if st.LearnUntil != 0 {
		fmt.Fprintf(tw, "Mode:\t%s (until %s)\n", cell(st.Mode), time.Unix(st.LearnUntil, 0).Format("15:04:05"))
	} else {
		fmt.Fprintf(tw, "Mode:\t%s\n", cell(st.Mode))
	}
	fmt.Fprintf(tw, "Rules:\t%d\n", st.Rules)
	fmt.Fprintf(tw, "Kernel entries:\t%d\n", st.KernelEntries)
	fmt.Fprintf(tw, "Problems:\t%d\n", st.Problems)
	fmt.Fprintf(tw, "Events lost:\t%d\n", st.EventsLost)
	fmt.Fprintf(tw, "Holding:\t%s\n", cell(st.Holding))
	fmt.Fprintf(tw, "Host names:\t%s\n", cell(st.Names))
	fmt.Fprintf(tw, "Traffic:\t%s\n", cell(st.Traffic))
	fmt.Fprintf(tw, "Questions open:\t%d\n", st.Pending)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintf(w, "  %s: %s\n", oneLine(p.File), oneLine(p.Error))
	}
	return nil
}

// ruleJSON is a rule in "rules list --json": the rule file format (shared/rules) plus where it lives.
type ruleJSON struct {
	rules.Rule
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only"`
	Factory  bool   `json:"factory"` // shipped with Tattle: can be disabled, not removed
}

func writeRulesJSON(w io.Writer, rs []api.Rule) error {
	out := make([]ruleJSON, 0, len(rs))
	for _, wr := range rs {
		r, ok := wr.ToRule()
		if !ok {
			return fmt.Errorf("tattled sent rule %q with owner %d, which is not a user id", wr.ID, wr.Owner)
		}
		out = append(out, ruleJSON{Rule: r, Source: wr.Source, ReadOnly: wr.ReadOnly, Factory: wr.Factory})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeRulesTable(w io.Writer, rs []api.Rule, e *env) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENABLED\tACTION\tAPPLICATION\tREMOTE\tPORT\tPROTO\tOWNER\tDURATION\tSOURCE")
	for _, r := range rs {
		enabled := "yes"
		if !r.Enabled {
			enabled = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(r.ID), enabled, cell(r.Action),
			cell(appLabel(r.Application, r.Via)), cell(r.Remote), cell(r.Port), cell(r.Protocol), ownerLabel(r.Owner, e),
			durationLabel(r, e.now().Location()), sourceLabel(r))
	}
	return tw.Flush()
}

// appLabel shows an interpreter with its script as "python3 via /home/u/tool.py".
func appLabel(app, via string) string {
	if via == "" {
		return app
	}
	return app + " via " + via
}

func ownerLabel(owner int64, e *env) string {
	switch {
	case owner == api.NoOwner:
		return "system"
	case owner >= 0 && owner <= int64(^uint32(0)):
		return cell(e.userLabel(uint32(owner)))
	}
	return fmt.Sprintf("invalid (%d)", owner)
}

func durationLabel(r api.Rule, loc *time.Location) string {
	if r.Duration == rules.DurationUntilTime && r.Until != 0 {
		return "until " + time.Unix(r.Until, 0).In(loc).Format("2006-01-02 15:04")
	}
	return cell(r.Duration)
}

// sourceLabel: "user" for rules made through the helper ("imported, not approved" until an imported one is
// approved), "Factory (FILE)" for a factory group's (shipped with Tattle: disable, not remove), the file for an
// administrator's read-only group.
func sourceLabel(r api.Rule) string {
	if r.Unapproved {
		return "imported, NOT APPROVED"
	}
	if r.Factory {
		return "Factory (" + cell(filepath.Base(r.Source)) + ")"
	}
	if !r.ReadOnly {
		return "user"
	}
	if r.Source == "" {
		return "file"
	}
	return cell(r.Source)
}

// flowJSON is a flow in "monitor --json".
type flowJSON struct {
	Exe         string `json:"exe"`
	Via         string `json:"via,omitempty"`
	Dev         uint64 `json:"dev"`
	Ino         uint64 `json:"ino"`
	UID         uint32 `json:"uid"`
	User        string `json:"user,omitempty"`
	Destination string `json:"destination"`
	Host        string `json:"host,omitempty"`
	Reverse     string `json:"reverse_name,omitempty"`
	Protocol    string `json:"protocol"`
	Attempts    uint64 `json:"attempts"`
	Allowed     uint64 `json:"allowed"`
	Denied      uint64 `json:"denied"`
	Undecided   uint64 `json:"undecided"`
	Verdict     string `json:"verdict"`
	RuleID      string `json:"rule_id,omitempty"`
	FirstSeen   string `json:"first_seen,omitempty"` // RFC 3339, UTC, milliseconds
	LastSeen    string `json:"last_seen,omitempty"`
	LastPID     uint32 `json:"last_pid,omitempty"`
	TxBytes     uint64 `json:"sent_bytes"`
	RxBytes     uint64 `json:"received_bytes"`
	TxPackets   uint64 `json:"sent_packets"`
	RxPackets   uint64 `json:"received_packets"`
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// writeFlowsJSON prints one snapshot as one line.
func writeFlowsJSON(w io.Writer, flows []api.Flow, e *env) error {
	out := make([]flowJSON, 0, len(flows))
	for _, f := range flows {
		out = append(out, flowJSON{
			Exe: f.Exe, Via: f.Via, Dev: f.Dev, Ino: f.Ino, UID: f.UID, User: e.userName(f.UID), Destination: f.Dest, Host: f.Host, Reverse: f.Reverse,
			Protocol: f.Protocol, Attempts: f.Attempts, Allowed: f.Allowed, Denied: f.Denied, Undecided: f.Undecided,
			Verdict: f.Verdict, RuleID: f.RuleID, FirstSeen: msTime(f.FirstSeen), LastSeen: msTime(f.LastSeen),
			LastPID: f.LastPID, TxBytes: f.TxBytes, RxBytes: f.RxBytes, TxPackets: f.TxPackets, RxPackets: f.RxPackets,
		})
	}
	return writeJSONLine(w, out)
}

// writeFlowsTable prints flows in the order given; max > 0 cuts the table to that many rows and says how
// many were left out.
func writeFlowsTable(w io.Writer, flows []api.Flow, e *env, max int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APPLICATION\tUSER\tDESTINATION\tPROTO\tATTEMPTS\tALLOWED\tDENIED\tUNDECIDED\tSENT\tRECEIVED\tVERDICT\tLAST SEEN")
	now := e.now()
	shown := flows
	if max > 0 && len(flows) > max {
		shown = flows[:max-1]
	}
	for _, f := range shown {
		exe := f.Exe
		if exe == "" {
			exe = fmt.Sprintf("(unknown, inode %d:%d)", f.Dev, f.Ino)
		}
		exe = appLabel(exe, f.Via)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", cell(exe), cell(e.userLabel(f.UID)), cell(destLabel(f)),
			cell(f.Protocol), f.Attempts, f.Allowed, f.Denied, f.Undecided, byteLabel(f.TxBytes), byteLabel(f.RxBytes),
			cell(f.Verdict), seenLabel(f.LastSeen, now))
	}
	if len(shown) < len(flows) {
		fmt.Fprintf(tw, "… %d more\n", len(flows)-len(shown))
	}
	return tw.Flush()
}

// byteLabel shows a byte count in binary units: 0 B, 512 B, 1.5 KiB, 20.0 MiB.
func byteLabel(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, units := float64(n)/1024, []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// seenLabel shows a time as the clock time today, else with the date.
func seenLabel(ms int64, now time.Time) string {
	if ms == 0 {
		return "-"
	}
	t := time.UnixMilli(ms).In(now.Location())
	y1, m1, d1 := t.Date()
	y2, m2, d2 := now.Date()
	if y1 == y2 && m1 == m2 && d1 == d2 {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// cell makes a value safe for one table cell: no tabs, line breaks or terminal escapes from the helper or the
// rule files it read, and "-" for nothing.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return '?'
		}
		return c
	}, s)
}

// oneLine is cell for a message line.
func oneLine(s string) string {
	return strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, s)
}

// destLabel shows a destination with the host name the program looked up, when known.
func destLabel(f api.Flow) string {
	if ap, err := netip.ParseAddrPort(f.Dest); err == nil && ap.Port() == api.DNSPort {
		return api.DNSServerLabel(ap.Addr().String())
	}
	switch {
	case f.Host != "":
		return f.Host + " (" + f.Dest + ")"
	case f.Reverse != "":
		return f.Dest + " (reverse name " + f.Reverse + ")"
	}
	return f.Dest
}
