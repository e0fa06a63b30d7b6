// Package tray shows Tattle in the desktop's tray: a StatusNotifierItem (org.kde.StatusNotifierItem) with a
// com.canonical.dbusmenu menu, exported on the session bus with godbus and registered with the desktop's
// org.kde.StatusNotifierWatcher. It needs no C library; KDE Plasma, GNOME with the AppIndicator extension,
// Xfce, Cinnamon, MATE, waybar and others show such items.
//
// Where no watcher (or no host showing items) runs, the tray is simply not shown: New still succeeds,
// Available reports false and Options.OnAvailable tells the app, which keeps working without it. When a
// watcher appears later (the user enables the extension, the panel restarts) the item registers again.
//
// Callbacks (menu clicks, activation, availability) run one at a time on a goroutine the Tray owns, never on
// the GTK main loop: GTK code must hop there itself (glib.IdleAdd).
package tray

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Names of the StatusNotifierItem protocol.
const (
	ItemInterface    = "org.kde.StatusNotifierItem"
	ItemPath         = dbus.ObjectPath("/StatusNotifierItem")
	MenuInterface    = "com.canonical.dbusmenu"
	MenuPath         = dbus.ObjectPath("/MenuBar")
	WatcherName      = "org.kde.StatusNotifierWatcher"
	WatcherPath      = dbus.ObjectPath("/StatusNotifierWatcher")
	WatcherInterface = "org.kde.StatusNotifierWatcher"
)

// Themed icon names Tattle installs (data/icons/hicolor/symbolic/apps); the defaults of Options.
const (
	IconNormal   = "io.github.tattlefw.Tattle-symbolic"
	IconQuestion = "io.github.tattlefw.Tattle-question-symbolic"
	IconSilent   = "io.github.tattlefw.Tattle-silent-symbolic"
)

// State is what the icon shows.
type State int

const (
	Normal   State = iota // watching, nothing to answer
	Question              // a question waits for the user (the item asks for attention)
	Silent                // a silent mode is on: nothing will be asked
)

func (s State) String() string {
	switch s {
	case Normal:
		return "normal"
	case Question:
		return "question"
	case Silent:
		return "silent"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Options describe the item.
type Options struct {
	ID    string // the item's Id: the application ID, e.g. io.github.tattlefw.Tattle
	Title string // the application's name as people read it

	// Themed icon names per state; empty means IconNormal, IconQuestion, IconSilent.
	NormalIcon, QuestionIcon, SilentIcon string
	// IconThemePath is an extra directory the host searches for the icons (a hicolor-style tree), for
	// installs outside the icon theme's search path; empty for none.
	IconThemePath string

	// OnActivate runs when the user clicks the item itself (not its menu): open the main window.
	OnActivate func()
	// OnAvailable runs once when New has found out whether a tray shows the item, and again each time that
	// changes; false means the user cannot see the item (tell them once, and keep going without it).
	OnAvailable func(available bool)
	// Logger receives the tray's own diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// Tray is one exported StatusNotifierItem. Its methods may be called from any goroutine.
type Tray struct {
	conn    *dbus.Conn
	opts    Options
	log     *slog.Logger
	service string      // what we registered with the watcher: our well-known name, or ItemPath if we have none
	pixmaps [3][]pixmap // fallback images by State, for hosts that cannot find the themed icons

	mu        sync.Mutex
	state     State
	tipTitle  string
	tipText   string
	menu      *menuTree
	available bool
	closed    bool
	recall    *time.Timer // announces the icon once more after a change (see SetState)

	calls   chan func() // callbacks, run in order by runCallbacks
	signals chan *dbus.Signal
	ctx     context.Context // ends at Close: stops the goroutines and drops callbacks not yet queued
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New exports the item and its menu on conn (a session bus connection the caller owns and closes after
// Close) and registers it with the watcher if one runs. The Tray lives until Close or until ctx ends.
func New(ctx context.Context, conn *dbus.Conn, opts Options) (*Tray, error) {
	if opts.NormalIcon == "" {
		opts.NormalIcon = IconNormal
	}
	if opts.QuestionIcon == "" {
		opts.QuestionIcon = IconQuestion
	}
	if opts.SilentIcon == "" {
		opts.SilentIcon = IconSilent
	}
	if opts.Title == "" {
		opts.Title = opts.ID
	}
	t := &Tray{
		conn:     conn,
		opts:     opts,
		log:      opts.Logger,
		tipTitle: opts.Title,
		menu:     newMenuTree(nil, 0),
		calls:    make(chan func(), 64),
		signals:  make(chan *dbus.Signal, 16),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	var err error
	if t.pixmaps, err = defaultPixmaps(opts); err != nil {
		return nil, err
	}
	t.log = t.log.With("component", "tray")
	t.ctx, t.cancel = context.WithCancel(ctx)

	if err := t.export(); err != nil {
		t.cancel()
		t.unexport()
		return nil, err
	}
	t.service = t.ownName()

	// Follow the watcher coming and going, and hosts (the panels that draw items) registering with it.
	if err := conn.AddMatchSignalContext(ctx, ownerChangedMatch()...); err != nil {
		t.cancel()
		t.unexport()
		return nil, fmt.Errorf("tray: watching for %s on the session bus: %w", WatcherName, err)
	}
	if err := conn.AddMatchSignalContext(ctx, hostMatch()...); err != nil {
		conn.RemoveMatchSignal(ownerChangedMatch()...)
		t.cancel()
		t.unexport()
		return nil, fmt.Errorf("tray: watching for tray hosts on the session bus: %w", err)
	}
	conn.Signal(t.signals)

	t.wg.Add(2)
	go t.runCallbacks()
	go t.watch()
	return t, nil
}

func ownerChangedMatch() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, WatcherName),
	}
}

func hostMatch() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchInterface(WatcherInterface),
		dbus.WithMatchObjectPath(WatcherPath),
	}
}

// ownName asks for the conventional well-known name org.kde.StatusNotifierItem-PID-N, which every host
// understands. Where the bus refuses it (a Flatpak sandbox allows no such name unless told to), the item is
// registered by its object path instead, which the watcher pairs with our unique name.
func (t *Tray) ownName() string {
	unique := strings.NewReplacer(":", "", ".", "_").Replace(t.conn.Names()[0])
	name := fmt.Sprintf("%s-%d-%s", ItemInterface, os.Getpid(), unique)
	reply, err := t.conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.log.Debug("registering the tray item by object path", "name", name, "reply", reply, "err", err)
		return string(ItemPath)
	}
	return name
}

// Service is what the item registered with the watcher: its bus name, or its object path when the bus did
// not let it own a name.
func (t *Tray) Service() string { return t.service }

// Available says whether a tray currently shows the item.
func (t *Tray) Available() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.available
}

// SetState changes the icon (and the item's status: Question asks the host for attention).
func (t *Tray) SetState(s State) error {
	if s < Normal || s > Silent {
		return fmt.Errorf("tray: unknown state %d", int(s))
	}
	t.mu.Lock()
	if t.closed || t.state == s {
		t.mu.Unlock()
		return nil
	}
	t.state = s
	status := t.statusLocked()
	// Hosts fetch what each signal announces; some (gtk-sni-tray) apply the results in no fixed order, and
	// a result built before they learned the new icon name can win and leave the old icon drawn. The icon
	// is announced first, and once more a moment later, when every fetch sees the new name, so such hosts
	// settle on the right icon. AttentionIconName never changes, so NewAttentionIcon is not sent.
	if t.recall == nil {
		t.recall = time.AfterFunc(reannounce, t.announceIcon)
	} else {
		t.recall.Reset(reannounce)
	}
	t.mu.Unlock()
	return errors.Join(
		t.emit("NewIcon"),
		t.emit("NewStatus", status),
		t.emit("NewToolTip"),
	)
}

// reannounce is how long after a state change the icon is announced again.
const reannounce = 500 * time.Millisecond

func (t *Tray) announceIcon() {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if !closed {
		if err := t.emit("NewIcon"); err != nil {
			t.log.Debug("announcing the icon again", "err", err)
		}
	}
}

// State is the state the icon shows.
func (t *Tray) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// SetToolTip sets the text shown when the pointer rests on the item: a title (empty: Options.Title) and an
// optional line under it.
func (t *Tray) SetToolTip(title, text string) error {
	if title == "" {
		title = t.opts.Title
	}
	t.mu.Lock()
	if t.closed || (t.tipTitle == title && t.tipText == text) {
		t.mu.Unlock()
		return nil
	}
	t.tipTitle, t.tipText = title, text
	t.mu.Unlock()
	return t.emit("NewToolTip")
}

// SetMenu replaces the whole menu; hosts showing it fetch the new layout.
func (t *Tray) SetMenu(items []Item) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	prev := t.menu
	t.menu = newMenuTree(items, t.menu.revision+1)
	rev := t.menu.revision
	updated, removed := t.menu.changedProps(prev)
	t.mu.Unlock()
	if err := t.conn.Emit(MenuPath, MenuInterface+".LayoutUpdated", rev, int32(0)); err != nil {
		return fmt.Errorf("tray: announcing the new menu: %w", err)
	}
	// Hosts such as GNOME's AppIndicator extension read only the structure from a new layout and keep the
	// labels of ids they know: an id whose item changed (a question where "No questions waiting" was) must
	// be announced with its new properties.
	if len(updated) > 0 || len(removed) > 0 {
		if err := t.conn.Emit(MenuPath, MenuInterface+".ItemsPropertiesUpdated", updated, removed); err != nil {
			return fmt.Errorf("tray: announcing the menu's changed items: %w", err)
		}
	}
	return nil
}

// Close removes the item from the tray and the bus and stops the Tray's goroutines, waiting for a callback
// that is running, so it must not be called from a callback itself (hop to the main loop first, as a menu's
// Quit does anyway). The connection stays open. Callbacks still queued are dropped. Call Close also when
// the context given to New has ended (that stops the goroutines but leaves the item exported).
func (t *Tray) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	if t.recall != nil {
		t.recall.Stop()
	}
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	t.conn.RemoveSignal(t.signals)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := errors.Join(
		t.conn.RemoveMatchSignalContext(ctx, ownerChangedMatch()...),
		t.conn.RemoveMatchSignalContext(ctx, hostMatch()...),
	)
	if t.service != string(ItemPath) {
		// Watchers drop an item when its name goes away.
		if _, rerr := t.conn.ReleaseName(t.service); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	t.unexport()
	if err != nil {
		return fmt.Errorf("tray: closing: %w", err)
	}
	return nil
}

func (t *Tray) emit(signal string, values ...any) error {
	if err := t.conn.Emit(ItemPath, ItemInterface+"."+signal, values...); err != nil {
		return fmt.Errorf("tray: emitting %s: %w", signal, err)
	}
	return nil
}

// queue hands a callback to runCallbacks; D-Bus handlers return at once instead of waiting for the app.
func (t *Tray) queue(f func()) {
	if f == nil {
		return
	}
	select {
	case t.calls <- f:
	case <-t.ctx.Done():
	}
}

func (t *Tray) runCallbacks() {
	defer t.wg.Done()
	for {
		select {
		case f := <-t.calls:
			f()
		case <-t.ctx.Done():
			return
		}
	}
}

// watch registers the item whenever a watcher is there and follows whether a host shows it.
func (t *Tray) watch() {
	defer t.wg.Done()
	ctx := t.ctx
	t.setAvailable(t.register(ctx), true)
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-t.signals:
			switch {
			case sig.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(sig.Body) == 3 && sig.Body[0] == WatcherName:
				// A new watcher knows nothing of us; one that left takes the tray with it.
				newOwner, _ := sig.Body[2].(string)
				if newOwner == "" {
					t.setAvailable(false, false)
				} else {
					t.setAvailable(t.register(ctx), false)
				}
			case sig.Path == WatcherPath && (sig.Name == WatcherInterface+".StatusNotifierHostRegistered" ||
				sig.Name == WatcherInterface+".StatusNotifierHostUnregistered"):
				t.setAvailable(t.hostRegistered(ctx), false)
			}
		}
	}
}

// register tells the watcher about the item; false when there is no watcher or no host to show items.
func (t *Tray) register(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	call := t.conn.Object(WatcherName, WatcherPath).CallWithContext(ctx,
		WatcherInterface+".RegisterStatusNotifierItem", dbus.FlagNoAutoStart, t.service)
	if call.Err != nil {
		var derr dbus.Error
		if errors.As(call.Err, &derr) && (derr.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
			derr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
			t.log.Debug("no StatusNotifierWatcher on the session bus")
		} else {
			t.log.Warn("registering with the tray failed", "err", call.Err)
		}
		return false
	}
	return t.hostRegistered(ctx)
}

// hostRegistered asks the watcher whether something draws the items. A watcher that cannot say is trusted.
func (t *Tray) hostRegistered(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v dbus.Variant
	err := t.conn.Object(WatcherName, WatcherPath).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get",
		dbus.FlagNoAutoStart, WatcherInterface, "IsStatusNotifierHostRegistered").Store(&v)
	if err != nil {
		var derr dbus.Error
		if errors.As(err, &derr) && (derr.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
			derr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
			return false
		}
		t.log.Debug("the tray watcher does not say whether a host runs", "err", err)
		return true
	}
	registered, ok := v.Value().(bool)
	return !ok || registered
}

// setAvailable records availability and tells the app when it changed (or always, the first time).
func (t *Tray) setAvailable(available, first bool) {
	t.mu.Lock()
	changed := t.available != available
	t.available = available
	t.mu.Unlock()
	if !changed && !first {
		return
	}
	if available {
		t.log.Info("shown in the tray", "service", t.service)
	} else {
		t.log.Info("no tray shows the item (no StatusNotifierWatcher or host on the session bus)")
	}
	if cb := t.opts.OnAvailable; cb != nil {
		t.queue(func() { cb(available) })
	}
}
