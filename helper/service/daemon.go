package service

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/history"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/shared/api"
)

// daemonIface implements io.github.tattlefw.Tattle1.Daemon.
type daemonIface struct{ s *Service }

func (i daemonIface) Status(*call) (api.Status, *dbus.Error) {
	cur := i.s.daemon.Current()
	st := api.Status{
		Version:       i.s.version,
		Backend:       string(i.s.enf.Backend()),
		Mode:          i.s.store.Settings().Mode,
		KernelEntries: uint32(len(cur.Kernel.Defaults) + len(cur.Kernel.Destinations)),
		Problems:      uint32(len(i.s.store.Problems())),
	}
	for _, p := range cur.Placements {
		if p.Where != ruleset.Inactive {
			st.Rules++
		}
	}
	if u := i.s.store.LearnUntil(); !u.IsZero() {
		st.LearnUntil = u.Unix()
	}
	st.Pending = uint32(i.s.daemon.PendingCount())
	st.Holding = i.s.daemon.Holding()
	st.Names = i.s.daemon.NameSource()
	st.Traffic = i.s.enf.TrafficCounting()
	if ks, err := i.s.enf.Stats(); err == nil {
		st.EventsLost = ks.EventsLost
	}
	return st, nil
}

func (i daemonIface) SetMode(c *call, mode string) *dbus.Error {
	if err := api.ValidateMode(mode); err != nil {
		return invalid("%v", err)
	}
	if err := i.s.store.SetMode(mode); err != nil {
		return failed("save the mode", err)
	}
	i.s.props.SetMust(api.DaemonInterface, "Mode", mode)
	i.s.log.Info("mode changed", "mode", mode, "uid", c.uid)
	return nil
}

// Learn starts learning mode for seconds: undecided connections are allowed and proposed as disabled rules;
// then the helper returns to alert by itself. Like SetMode, it needs manage-rules: a program running as the
// user cannot open everything up behind the user's back.
func (i daemonIface) Learn(c *call, seconds uint32) *dbus.Error {
	if err := api.ValidateLearnSeconds(seconds); err != nil {
		return invalid("%v", err)
	}
	until := time.Now().Add(time.Duration(seconds) * time.Second)
	if err := i.s.daemon.Learn(until); err != nil {
		return failed("start learning mode", err)
	}
	i.s.props.SetMust(api.DaemonInterface, "Mode", api.ModeLearn)
	i.s.log.Info("learning mode on", "seconds", seconds, "uid", c.uid)
	return nil
}

// ModeChanged announces a mode the helper set itself (learning's end).
func (s *Service) ModeChanged(mode string) { s.props.SetMust(api.DaemonInterface, "Mode", mode) }

// monitorIface implements io.github.tattlefw.Tattle1.Monitor.
type monitorIface struct{ s *Service }

// The Monitor's methods show the caller's own processes' flows and history, everyone's with monitor-all
// (call.all, from the access table).

func (i monitorIface) Flows(c *call) ([]api.Flow, *dbus.Error) {
	flows, err := i.s.enf.Flows()
	if err != nil {
		return nil, failed("read flows", err)
	}
	out := []api.Flow{}
	for _, f := range flows {
		if c.all || f.UID == c.uid {
			out = append(out, i.s.wireFlow(f))
		}
	}
	return out, nil
}

func (s *Service) wireFlow(f enforce.Flow) api.Flow {
	host, reverse := s.daemon.NamesFor(f.App, f.UID, netip.AddrPortFrom(f.Dest.Addr().Unmap(), f.Dest.Port()))
	return api.Flow{
		Exe: s.daemon.ExePath(f.LastTGID, f.App), Dev: f.App.Dev, Ino: f.App.Ino, UID: f.UID,
		Dest: f.Dest.String(), Host: host, Reverse: reverse, Protocol: f.Proto.String(),
		Attempts: f.Attempts, Allowed: f.Allowed, Denied: f.Denied, Undecided: f.Undecided,
		FirstSeen: f.FirstSeen.UnixMilli(), LastSeen: f.LastSeen.UnixMilli(), LastPID: f.LastTGID,
		Verdict: f.Verdict.String(), RuleID: s.daemon.RuleName(f.RuleID), Via: s.daemon.ViaFor(f.App),
		TxBytes: f.TxBytes, RxBytes: f.RxBytes, TxPackets: f.TxPackets, RxPackets: f.RxPackets,
	}
}

func (i monitorIface) Subscribe(c *call) *dbus.Error {
	if derr := i.s.monitor.subscribe(subscriber{name: c.sender, uid: c.uid, all: c.all}); derr != nil {
		return derr
	}
	// A client that left during the polkit check would never be seen leaving: drop it now.
	var has bool
	if err := i.s.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, c.sender).Store(&has); err == nil && !has {
		i.s.monitor.unsubscribe(c.sender)
	}
	return nil
}

func (i monitorIface) Unsubscribe(c *call) *dbus.Error {
	i.s.monitor.unsubscribe(c.sender)
	return nil
}

// ErrNoHistory is what History and Traffic fail with when the helper keeps no history.
var ErrNoHistory = errors.New("tattled keeps no connection history (started with -history-max-mb 0, or its database could not be opened: see its log)")

// maxHistorySearch bounds each text a History call searches for (a path is at most PATH_MAX).
const maxHistorySearch = 4096

// History answers from the connection history, with the Monitor's rule: one's own processes' entries, all
// of them with monitor-all.
func (i monitorIface) History(c *call, q api.HistoryQuery) ([]api.HistoryEntry, *dbus.Error) {
	// Each row is searched for these: a caller's megabyte of search text would cost every row that much.
	if len(q.App) > maxHistorySearch || len(q.Host) > maxHistorySearch || len(q.Text) > maxHistorySearch || len(q.Verdict) > maxHistorySearch {
		return nil, invalid("history search text longer than %d bytes", maxHistorySearch)
	}
	h := i.s.daemon.History()
	if h == nil {
		return nil, failed("read the history", ErrNoHistory)
	}
	f := history.Filter{App: q.App, Host: q.Host, Text: q.Text, Verdict: q.Verdict, Offset: int(q.Offset), Limit: int(q.Limit)}
	if q.Since > 0 {
		f.Since = time.UnixMilli(q.Since)
	}
	if q.Until > 0 {
		f.Until = time.UnixMilli(q.Until)
	}
	if !c.all {
		uid := c.uid
		f.UID = &uid
	}
	rows, err := h.Query(context.Background(), f)
	if err != nil {
		return nil, failed("read the history", err)
	}
	out := make([]api.HistoryEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, api.HistoryEntry{Time: r.Time.UnixMilli(), Exe: r.App, Via: r.Via, UID: r.UID, Dest: r.Dest,
			Host: r.Host, Protocol: r.Proto, Verdict: r.Verdict, RuleID: r.Rule})
	}
	return out, nil
}

// Traffic sums the history's traffic samples in [since, until) into buckets of bucketSeconds, with the
// Monitor's rule (one's own flows; all with monitor-all).
func (i monitorIface) Traffic(c *call, since, until int64, bucketSeconds uint32) ([]api.TrafficBucket, *dbus.Error) {
	h := i.s.daemon.History()
	if h == nil {
		return nil, failed("read the traffic history", ErrNoHistory)
	}
	var uid *uint32
	if !c.all {
		u := c.uid
		uid = &u
	}
	var to time.Time
	if until > 0 {
		to = time.UnixMilli(until)
	}
	bs, err := h.TrafficBuckets(context.Background(), time.UnixMilli(since), to, time.Duration(bucketSeconds)*time.Second, uid)
	if err != nil {
		return nil, failed("read the traffic history", err)
	}
	out := make([]api.TrafficBucket, 0, len(bs))
	for _, b := range bs {
		out = append(out, api.TrafficBucket{Start: b.Start.UnixMilli(), Sent: b.Tx, Received: b.Rx})
	}
	return out, nil
}
