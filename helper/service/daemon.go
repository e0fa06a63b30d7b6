package service

import (
	"github.com/godbus/dbus/v5"
	"net/netip"
	"time"

	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/ruleset"
	"github.com/tattlefw/tattle/shared/api"
)

// daemonIface implements io.github.tattlefw.Tattle1.Daemon.
type daemonIface struct{ s *Service }

func (i daemonIface) Status() (api.Status, *dbus.Error) {
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
	if ks, err := i.s.enf.Stats(); err == nil {
		st.EventsLost = ks.EventsLost
	}
	return st, nil
}

func (i daemonIface) SetMode(msg dbus.Message, sender dbus.Sender, mode string) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	if err := api.ValidateMode(mode); err != nil {
		return invalid("%v", err)
	}
	if derr := i.s.require(c, api.ActionManageRules, "change the mode"); derr != nil {
		return derr
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
func (i daemonIface) Learn(msg dbus.Message, sender dbus.Sender, seconds uint32) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	if err := api.ValidateLearnSeconds(seconds); err != nil {
		return invalid("%v", err)
	}
	if derr := i.s.require(c, api.ActionManageRules, "start learning mode"); derr != nil {
		return derr
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

func (i monitorIface) Flows(msg dbus.Message, sender dbus.Sender) ([]api.Flow, *dbus.Error) {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return nil, derr
	}
	defer release()
	all, err := i.s.allowed(c, api.ActionMonitorAll, c.interactive)
	if err != nil {
		return nil, failed("check authorization", err)
	}
	flows, err := i.s.enf.Flows()
	if err != nil {
		return nil, failed("read flows", err)
	}
	out := []api.Flow{}
	for _, f := range flows {
		if all || f.UID == c.uid {
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
	}
}

func (i monitorIface) Subscribe(msg dbus.Message, sender dbus.Sender) *dbus.Error {
	c, release, derr := i.s.caller(msg, sender)
	if derr != nil {
		return derr
	}
	defer release()
	all, err := i.s.allowed(c, api.ActionMonitorAll, c.interactive)
	if err != nil {
		return failed("check authorization", err)
	}
	if derr := i.s.monitor.subscribe(subscriber{name: c.sender, uid: c.uid, all: all}); derr != nil {
		return derr
	}
	// A client that left during the polkit check would never be seen leaving: drop it now.
	var has bool
	if err := i.s.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, c.sender).Store(&has); err == nil && !has {
		i.s.monitor.unsubscribe(c.sender)
	}
	return nil
}

func (i monitorIface) Unsubscribe(sender dbus.Sender) *dbus.Error {
	i.s.monitor.unsubscribe(string(sender))
	return nil
}
