package client

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
)

// WatchFlows subscribes to the helper's FlowsChanged signals (Monitor.Subscribe) and delivers each batch of
// changed flows on the returned channel until ctx ends; then it unsubscribes and closes the channel. Batches
// are never dropped: a reader that falls behind slows down only this client's signal queue.
func (c *Client) WatchFlows(ctx context.Context) (<-chan []api.Flow, error) {
	sigs, stop, err := c.helperSignals(ctx, api.MonitorInterface, "FlowsChanged", 64)
	if err != nil {
		return nil, err
	}
	if err := c.call(ctx, api.MonitorInterface+".Subscribe", false, nil); err != nil {
		stop()
		return nil, err
	}
	out := make(chan []api.Flow, 16)
	fromHelper := c.helperSender(ctx)
	go func() {
		defer close(out)
		defer func() {
			stop()
			// ctx is over; unsubscribe with a short call of its own.
			uctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
			defer cancel()
			c.call(uctx, api.MonitorInterface+".Unsubscribe", false, nil)
		}()
		eachHelperSignal(ctx, sigs, fromHelper, api.MonitorInterface+".FlowsChanged", func(s *dbus.Signal) bool {
			var flows []api.Flow
			if len(s.Body) != 1 || dbus.Store(s.Body, &flows) != nil {
				return true
			}
			select {
			case out <- flows:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	return out, nil
}

// helperSignals matches the helper's signal iface.member on its object and delivers the connection's signals
// on sigs (buffered for size) until stop; the receiver still filters, as sigs gets every signal of the
// connection.
func (c *Client) helperSignals(ctx context.Context, iface, member string, size int) (sigs chan *dbus.Signal, stop func(), err error) {
	opts := []dbus.MatchOption{
		dbus.WithMatchSender(api.BusName),
		dbus.WithMatchObjectPath(api.ObjectPath),
		dbus.WithMatchInterface(iface),
		dbus.WithMatchMember(member),
	}
	if err := c.conn.AddMatchSignalContext(ctx, opts...); err != nil {
		return nil, nil, callError(ctx, "org.freedesktop.DBus.AddMatch", err, c.opts.Timeout)
	}
	sigs = make(chan *dbus.Signal, size)
	c.conn.Signal(sigs)
	return sigs, func() {
		c.conn.RemoveSignal(sigs)
		c.conn.RemoveMatchSignal(opts...)
	}, nil
}

// eachHelperSignal calls each for every signal name (interface.member) on the helper's object that the helper
// itself sent (fromHelper, from helperSender), until ctx ends, sigs is closed or each returns false: sigs
// gets every signal of the connection, from anyone, so each watcher filters the same way.
func eachHelperSignal(ctx context.Context, sigs <-chan *dbus.Signal, fromHelper func(sender string) bool, name string, each func(*dbus.Signal) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-sigs:
			if !ok {
				return
			}
			if s.Name != name || s.Path != api.ObjectPath || !fromHelper(s.Sender) {
				continue
			}
			if !each(s) {
				return
			}
		}
	}
}

// helperSender returns a test of a signal's sender: whether it is the helper. Signals may be sent by anyone
// on the bus, unicast to this connection past any match rule, so a signal counts only from the helper's own
// unique name (asked again when a signal comes from another: the helper may have restarted).
func (c *Client) helperSender(ctx context.Context) func(sender string) bool {
	owner := c.helperOwner(ctx)
	return func(sender string) bool {
		if sender != owner {
			owner = c.helperOwner(ctx)
		}
		return owner != "" && sender == owner
	}
}

// helperOwner is the unique bus name of the running helper, "" when none runs.
func (c *Client) helperOwner(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var owner string
	c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, api.BusName).Store(&owner)
	return owner
}

// Resubscribe asks a restarted helper for FlowsChanged again (a helper forgets its subscribers when it
// stops); the channel WatchFlows returned keeps delivering.
func (c *Client) Resubscribe(ctx context.Context) error {
	return c.call(ctx, api.MonitorInterface+".Subscribe", false, nil)
}

// History reads the connection history (Monitor.History): the caller's own processes' entries, everyone's
// with monitor-all; newest first, one page as q says.
func (c *Client) History(ctx context.Context, q api.HistoryQuery) ([]api.HistoryEntry, error) {
	var out []api.HistoryEntry
	err := c.call(ctx, api.MonitorInterface+".History", false, []any{&out}, q)
	return out, err
}

// Traffic reads the history's traffic in buckets (Monitor.Traffic); until 0 means now.
func (c *Client) Traffic(ctx context.Context, since, until time.Time, bucket time.Duration) ([]api.TrafficBucket, error) {
	var out []api.TrafficBucket
	var to int64
	if !until.IsZero() {
		to = until.UnixMilli()
	}
	err := c.call(ctx, api.MonitorInterface+".Traffic", false, []any{&out}, since.UnixMilli(), to, uint32(bucket/time.Second))
	return out, err
}
