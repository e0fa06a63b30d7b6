// Package traytest plays the desktop's part for tests of the tray: a private session bus (a real
// dbus-daemon) and a StatusNotifierWatcher that records the items registering with it, the way a panel's
// watcher (KDE's, GNOME's AppIndicator extension) does.
package traytest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/tattlefw/tattle/app/tray"
	"github.com/tattlefw/tattle/tests/testbus"
)

// SessionBus starts a private session bus (a real dbus-daemon, tests/testbus) that starts no services, for
// the test's lifetime, and returns its address for dbus.Connect and DBUS_SESSION_BUS_ADDRESS.
func SessionBus(tb testing.TB) string {
	tb.Helper()
	return testbus.Session(tb)
}

// Connect opens a connection to the bus at address, closed when the test ends.
func Connect(tb testing.TB, address string) *dbus.Conn {
	tb.Helper()
	return testbus.Connect(tb, address)
}

// ItemRef says where a registered item lives.
type ItemRef struct {
	Bus  string          // its bus name (well-known or unique)
	Path dbus.ObjectPath // its StatusNotifierItem object
}

// Watcher is a StatusNotifierWatcher on its own connection.
type Watcher struct {
	conn *dbus.Conn

	mu    sync.Mutex
	items []ItemRef
	host  bool
	added chan ItemRef
	gone  chan ItemRef
}

// StartWatcher owns org.kde.StatusNotifierWatcher on the bus at address. host says whether a tray host (the
// part that draws items) is registered with it, as IsStatusNotifierHostRegistered reports.
func StartWatcher(tb testing.TB, address string, host bool) *Watcher {
	tb.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		tb.Fatalf("watcher: connecting: %v", err)
	}
	w := &Watcher{conn: conn, host: host, added: make(chan ItemRef, 64), gone: make(chan ItemRef, 64)}
	tb.Cleanup(w.Stop)
	conn.Export(watcherMethods{w}, tray.WatcherPath, tray.WatcherInterface)
	conn.Export(watcherProps{w}, tray.WatcherPath, "org.freedesktop.DBus.Properties")
	conn.Export(introspect.Introspectable(watcherXML), tray.WatcherPath, "org.freedesktop.DBus.Introspectable")
	// Items leave when their connection or name goes away.
	if err := conn.AddMatchSignal(dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged")); err != nil {
		tb.Fatalf("watcher: %v", err)
	}
	signals := make(chan *dbus.Signal, 64)
	conn.Signal(signals)
	go func() {
		for sig := range signals {
			if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
				continue
			}
			name, _ := sig.Body[0].(string)
			newOwner, _ := sig.Body[2].(string)
			if newOwner == "" {
				w.drop(name)
			}
		}
	}()
	reply, err := conn.RequestName(tray.WatcherName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		tb.Fatalf("watcher: owning %s: reply %v, %v", tray.WatcherName, reply, err)
	}
	return w
}

func (w *Watcher) drop(name string) {
	w.mu.Lock()
	kept := w.items[:0]
	var removed []ItemRef
	for _, it := range w.items {
		if it.Bus == name {
			removed = append(removed, it)
		} else {
			kept = append(kept, it)
		}
	}
	w.items = kept
	w.mu.Unlock()
	for _, it := range removed {
		w.conn.Emit(tray.WatcherPath, tray.WatcherInterface+".StatusNotifierItemUnregistered", it.Bus+string(it.Path))
		notify(w.gone, it)
	}
}

// notify records an event for WaitItem/WaitGone without ever blocking the bus's handlers (a test that
// does not wait for events would otherwise stall the watcher after 64 of them).
func notify(ch chan ItemRef, it ItemRef) {
	select {
	case ch <- it:
	default:
	}
}

// Stop leaves the bus, as a panel does when it exits.
func (w *Watcher) Stop() { w.conn.Close() }

// Items are the items registered now.
func (w *Watcher) Items() []ItemRef {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ItemRef(nil), w.items...)
}

// WaitItem waits for the next item to register.
func (w *Watcher) WaitItem(tb testing.TB, timeout time.Duration) ItemRef {
	tb.Helper()
	select {
	case it := <-w.added:
		return it
	case <-time.After(timeout):
		tb.Fatalf("no StatusNotifierItem registered within %v", timeout)
	}
	return ItemRef{}
}

// WaitGone waits for a registered item to leave the bus.
func (w *Watcher) WaitGone(tb testing.TB, timeout time.Duration) ItemRef {
	tb.Helper()
	select {
	case it := <-w.gone:
		return it
	case <-time.After(timeout):
		tb.Fatalf("no StatusNotifierItem left within %v", timeout)
	}
	return ItemRef{}
}

// SetHost registers or unregisters the tray host, with the signal a real watcher sends.
func (w *Watcher) SetHost(host bool) error {
	w.mu.Lock()
	w.host = host
	w.mu.Unlock()
	signal := ".StatusNotifierHostUnregistered"
	if host {
		signal = ".StatusNotifierHostRegistered"
	}
	return w.conn.Emit(tray.WatcherPath, tray.WatcherInterface+signal)
}

type watcherMethods struct{ w *Watcher }

// RegisterStatusNotifierItem accepts a bus name (the item is at /StatusNotifierItem) or an object path
// (the item is at that path on the caller's connection), as the protocol allows.
func (m watcherMethods) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	ref := ItemRef{Bus: service, Path: tray.ItemPath}
	if strings.HasPrefix(service, "/") {
		ref = ItemRef{Bus: string(sender), Path: dbus.ObjectPath(service)}
	}
	m.w.mu.Lock()
	m.w.items = append(m.w.items, ref)
	m.w.mu.Unlock()
	m.w.conn.Emit(tray.WatcherPath, tray.WatcherInterface+".StatusNotifierItemRegistered", ref.Bus+string(ref.Path))
	notify(m.w.added, ref)
	return nil
}

func (m watcherMethods) RegisterStatusNotifierHost(service string) *dbus.Error {
	m.w.SetHost(true)
	return nil
}

type watcherProps struct{ w *Watcher }

func (p watcherProps) all() map[string]dbus.Variant {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	names := []string{}
	for _, it := range p.w.items {
		names = append(names, it.Bus+string(it.Path))
	}
	return map[string]dbus.Variant{
		"RegisteredStatusNotifierItems":  dbus.MakeVariant(names),
		"IsStatusNotifierHostRegistered": dbus.MakeVariant(p.w.host),
		"ProtocolVersion":                dbus.MakeVariant(int32(0)),
	}
}

func (p watcherProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	v, ok := p.all()[name]
	if iface != tray.WatcherInterface || !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{iface + "." + name})
	}
	return v, nil
}

func (p watcherProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != tray.WatcherInterface {
		return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{iface})
	}
	return p.all(), nil
}

func (p watcherProps) Set(iface, name string, v dbus.Variant) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{name})
}

const watcherXML = `<node>` + introspect.IntrospectDeclarationString + `
<interface name="org.kde.StatusNotifierWatcher">
<method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
<method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
<signal name="StatusNotifierHostUnregistered"/>
</interface></node>`
