package tray_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/tray"
	"github.com/tattlefw/tattle/app/tray/traytest"
)

const wait = 5 * time.Second

// events collects what the tray's callbacks report, in order.
type events struct {
	available chan bool
	clicked   chan string
}

func newEvents() *events {
	return &events{available: make(chan bool, 16), clicked: make(chan string, 16)}
}

func (e *events) options() tray.Options {
	return tray.Options{
		ID:          "io.github.tattlefw.Tattle",
		Title:       "Tattle",
		OnActivate:  func() { e.clicked <- "activate" },
		OnAvailable: func(ok bool) { e.available <- ok },
	}
}

func (e *events) wantAvailable(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-e.available:
		if got != want {
			t.Fatalf("OnAvailable(%v), want %v", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("OnAvailable(%v) not called within %v", want, wait)
	}
}

func (e *events) wantClick(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-e.clicked:
		if got != want {
			t.Fatalf("callback %q ran, want %q", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("callback %q did not run within %v", want, wait)
	}
}

// host is the desktop's tray host: it reads the item's properties and menu and listens to its signals,
// over its own connection.
type host struct {
	conn    *dbus.Conn
	item    dbus.BusObject
	menu    dbus.BusObject
	signals chan *dbus.Signal
}

func newHost(t *testing.T, address string, ref traytest.ItemRef) *host {
	t.Helper()
	conn := traytest.Connect(t, address)
	h := &host{conn: conn, item: conn.Object(ref.Bus, ref.Path), signals: make(chan *dbus.Signal, 64)}
	var menuPath dbus.ObjectPath
	if err := h.item.StoreProperty(tray.ItemInterface+".Menu", &menuPath); err != nil {
		t.Fatalf("reading the item's Menu property: %v", err)
	}
	h.menu = conn.Object(ref.Bus, menuPath)
	for _, iface := range []string{tray.ItemInterface, tray.MenuInterface} {
		if err := conn.AddMatchSignal(dbus.WithMatchSender(ref.Bus), dbus.WithMatchInterface(iface)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Signal(h.signals)
	return h
}

func (h *host) props(t *testing.T) map[string]dbus.Variant {
	t.Helper()
	var all map[string]dbus.Variant
	if err := h.item.Call("org.freedesktop.DBus.Properties.GetAll", 0, tray.ItemInterface).Store(&all); err != nil {
		t.Fatalf("GetAll on the item: %v", err)
	}
	return all
}

// wantSignal waits for the item or menu signal name and returns its body.
func (h *host) wantSignal(t *testing.T, name string) []any {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case sig := <-h.signals:
			if sig.Name == name {
				return sig.Body
			}
		case <-deadline:
			t.Fatalf("no %s signal within %v", name, wait)
		}
	}
}

// wantSignals waits until each of the named signals has arrived, in any order, and returns their bodies.
func (h *host) wantSignals(t *testing.T, names ...string) map[string][]any {
	t.Helper()
	got := map[string][]any{}
	deadline := time.After(wait)
	for len(got) < len(names) {
		select {
		case sig := <-h.signals:
			for _, n := range names {
				if sig.Name == n {
					got[n] = sig.Body
				}
			}
		case <-deadline:
			t.Fatalf("signals %v: only %d arrived within %v", names, len(got), wait)
		}
	}
	return got
}

// checkPixmaps checks the fallback images a host reads: ARGB32 at 16 to 48 pixels, visible (opaque pixels
// in the middle), and, for the question state, with an orange badge at the top right.
func checkPixmaps(t *testing.T, v dbus.Variant, question bool) {
	t.Helper()
	list, ok := v.Value().([][]any)
	if !ok || len(list) != 4 {
		t.Fatalf("pixmaps = %T (%d), want 4 (iiay) images", v.Value(), len(list))
	}
	for _, pm := range list {
		w, h, data := pm[0].(int32), pm[1].(int32), pm[2].([]byte)
		if w != h || w < 16 || w > 48 || len(data) != int(4*w*h) {
			t.Errorf("pixmap %dx%d with %d bytes, want square ARGB32 of 16..48", w, h, len(data))
			continue
		}
		at := func(x, y int32) []byte { i := 4 * (y*w + x); return data[i : i+4] }
		if a := at(w/2, w/2)[0]; a == 0 {
			t.Errorf("%dx%d pixmap is transparent in the middle (the eye)", w, h)
		}
		if badge := at(w*25/32, w*7/32); question && w == 48 && !(badge[0] > 200 && badge[1] > 200 && badge[3] < 80) {
			t.Errorf("question pixmap at the badge is ARGB %v, want opaque orange", badge)
		}
	}
}

// menuItem is a decoded dbusmenu layout node.
type menuItem struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []menuItem
}

func (m menuItem) label() string {
	s, _ := m.Props["label"].Value().(string)
	return s
}

func decodeLayout(t *testing.T, v any) menuItem {
	t.Helper()
	parts, ok := v.([]any)
	if !ok || len(parts) != 3 {
		t.Fatalf("layout node is %T %v, want (ia{sv}av)", v, v)
	}
	m := menuItem{ID: parts[0].(int32), Props: parts[1].(map[string]dbus.Variant)}
	for _, c := range parts[2].([]dbus.Variant) {
		m.Children = append(m.Children, decodeLayout(t, c.Value()))
	}
	return m
}

func (h *host) layout(t *testing.T, parent, depth int32) (uint32, menuItem) {
	t.Helper()
	call := h.menu.Call(tray.MenuInterface+".GetLayout", 0, parent, depth, []string{})
	if call.Err != nil {
		t.Fatalf("GetLayout: %v", call.Err)
	}
	rev := call.Body[0].(uint32)
	return rev, decodeLayout(t, call.Body[1])
}

func find(m menuItem, label string) (menuItem, bool) {
	if m.label() == label {
		return m, true
	}
	for _, c := range m.Children {
		if f, ok := find(c, label); ok {
			return f, true
		}
	}
	return menuItem{}, false
}

// iconsNotInstalled hides any installed Tattle icons from the tray (it sends fallback images only for icons
// it cannot find), so the tests do not depend on what this machine has installed.
func iconsNotInstalled(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_DATA_DIRS", t.TempDir())
}

func TestItemWithWatcher(t *testing.T) {
	iconsNotInstalled(t)
	bus := traytest.SessionBus(t)
	watcher := traytest.StartWatcher(t, bus, true)
	conn := traytest.Connect(t, bus)
	ev := newEvents()
	tr, err := tray.New(context.Background(), conn, ev.options())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer tr.Close()
	ev.wantAvailable(t, true)
	if !tr.Available() {
		t.Error("Available() = false after OnAvailable(true)")
	}
	ref := watcher.WaitItem(t, wait)
	if !strings.HasPrefix(ref.Bus, "org.kde.StatusNotifierItem-") || ref.Path != tray.ItemPath {
		t.Errorf("registered as %+v, want the name org.kde.StatusNotifierItem-PID-N at %s", ref, tray.ItemPath)
	}
	h := newHost(t, bus, ref)

	// What a panel reads to draw the item.
	p := h.props(t)
	for name, want := range map[string]any{
		"Id": "io.github.tattlefw.Tattle", "Title": "Tattle", "Category": "ApplicationStatus",
		"Status": "Active", "IconName": tray.IconNormal, "AttentionIconName": tray.IconQuestion,
		"Menu": tray.MenuPath, "ItemIsMenu": false,
	} {
		if got := p[name].Value(); got != want {
			t.Errorf("property %s = %#v, want %#v", name, got, want)
		}
	}
	checkPixmaps(t, p["IconPixmap"], false)
	checkPixmaps(t, p["AttentionIconPixmap"], true)
	if tip, ok := p["ToolTip"].Value().([]any); !ok || len(tip) != 4 || tip[2] != "Tattle" {
		t.Errorf("ToolTip = %#v, want (icon, pixmaps, \"Tattle\", text)", p["ToolTip"].Value())
	}

	// State changes are announced with the protocol's signals and visible in the properties.
	steps := []struct {
		state          tray.State
		status, icon   string
		announceStatus bool
	}{
		{tray.Question, "NeedsAttention", tray.IconQuestion, true},
		{tray.Silent, "Active", tray.IconSilent, true},
		{tray.Normal, "Active", tray.IconNormal, true},
	}
	for _, s := range steps {
		if err := tr.SetState(s.state); err != nil {
			t.Fatalf("SetState(%v): %v", s.state, err)
		}
		got := h.wantSignals(t, tray.ItemInterface+".NewStatus", tray.ItemInterface+".NewIcon")
		if body := got[tray.ItemInterface+".NewStatus"]; len(body) != 1 || body[0] != s.status {
			t.Errorf("NewStatus after SetState(%v) = %v, want %q", s.state, body, s.status)
		}
		p := h.props(t)
		if p["Status"].Value() != s.status || p["IconName"].Value() != s.icon {
			t.Errorf("after SetState(%v): Status %v IconName %v, want %s %s", s.state,
				p["Status"].Value(), p["IconName"].Value(), s.status, s.icon)
		}
	}
	// The icon is announced again shortly after a change, so hosts that raced on the first announcement
	// settle on the new icon.
	if err := tr.SetState(tray.Question); err != nil {
		t.Fatal(err)
	}
	h.wantSignal(t, tray.ItemInterface+".NewIcon")
	start := time.Now()
	h.wantSignal(t, tray.ItemInterface+".NewIcon")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("second NewIcon %v after the first; want it a moment later", d)
	}
	if err := tr.SetToolTip("", "2 questions waiting"); err != nil {
		t.Fatal(err)
	}
	h.wantSignal(t, tray.ItemInterface+".NewToolTip")
	if tip := h.props(t)["ToolTip"].Value().([]any); tip[3] != "2 questions waiting" {
		t.Errorf("ToolTip text = %v", tip[3])
	}

	// A click on the item opens the window.
	if err := h.item.Call(tray.ItemInterface+".Activate", 0, int32(10), int32(10)).Err; err != nil {
		t.Fatalf("Activate: %v", err)
	}
	ev.wantClick(t, "activate")

	// The menu: what the panel shows, and a click that reaches the app.
	mode := func(name string) func() { return func() { ev.clicked <- "mode " + name } }
	err = tr.SetMenu([]tray.Item{
		{Label: "_Open Monitor", OnClick: func() { ev.clicked <- "open" }},
		{Separator: true},
		{Label: "Mode", Children: []tray.Item{
			{Label: "Alert", Toggle: tray.Radio, Checked: true, OnClick: mode("alert")},
			{Label: "Silent (allow)", Toggle: tray.Radio, OnClick: mode("silent-allow")},
			{Label: "Silent (deny)", Toggle: tray.Radio, OnClick: mode("silent-deny")},
		}},
		{Label: "No questions waiting", Disabled: true},
		{Label: "_Quit", IconName: "application-exit-symbolic", OnClick: func() { ev.clicked <- "quit" }},
	})
	if err != nil {
		t.Fatalf("SetMenu: %v", err)
	}
	updated := h.wantSignal(t, tray.MenuInterface+".LayoutUpdated")
	rev, root := h.layout(t, 0, -1)
	if updated[0] != rev {
		t.Errorf("LayoutUpdated announced revision %v, GetLayout returned %d", updated[0], rev)
	}
	var labels []string
	for _, c := range root.Children {
		if c.Props["type"].Value() == "separator" {
			labels = append(labels, "---")
		} else {
			labels = append(labels, c.label())
		}
	}
	if got := strings.Join(labels, "|"); got != "_Open Monitor|---|Mode|No questions waiting|_Quit" {
		t.Errorf("top-level menu = %s", got)
	}
	modeItem, _ := find(root, "Mode")
	if modeItem.Props["children-display"].Value() != "submenu" || len(modeItem.Children) != 3 {
		t.Errorf("Mode item = %+v, want a submenu of three", modeItem)
	}
	for _, c := range modeItem.Children {
		want := int32(0)
		if c.label() == "Alert" {
			want = 1
		}
		if c.Props["toggle-type"].Value() != "radio" || c.Props["toggle-state"].Value() != want {
			t.Errorf("radio item %q: toggle %v state %v, want radio %d", c.label(),
				c.Props["toggle-type"].Value(), c.Props["toggle-state"].Value(), want)
		}
	}
	if it, _ := find(root, "No questions waiting"); it.Props["enabled"].Value() != false {
		t.Errorf("disabled item has enabled=%v", it.Props["enabled"].Value())
	}
	if _, top := h.layout(t, 0, 0); len(top.Children) != 0 {
		t.Errorf("GetLayout depth 0 returned %d children", len(top.Children))
	}
	if _, sub := h.layout(t, modeItem.ID, -1); len(sub.Children) != 3 {
		t.Errorf("GetLayout of the Mode submenu returned %d children", len(sub.Children))
	}
	var quitIcon dbus.Variant
	quit, _ := find(root, "_Quit")
	if err := h.menu.Call(tray.MenuInterface+".GetProperty", 0, quit.ID, "icon-name").Store(&quitIcon); err != nil ||
		quitIcon.Value() != "application-exit-symbolic" {
		t.Errorf("GetProperty icon-name of Quit = %v, %v", quitIcon, err)
	}
	var needUpdate bool
	if err := h.menu.Call(tray.MenuInterface+".AboutToShow", 0, int32(0)).Store(&needUpdate); err != nil {
		t.Errorf("AboutToShow: %v", err)
	}

	deny, _ := find(root, "Silent (deny)")
	click := func(id int32) error {
		return h.menu.Call(tray.MenuInterface+".Event", 0, id, "clicked", dbus.MakeVariant(""), uint32(0)).Err
	}
	if err := click(deny.ID); err != nil {
		t.Fatalf("Event clicked: %v", err)
	}
	ev.wantClick(t, "mode silent-deny")
	open, _ := find(root, "_Open Monitor")
	// Hovering is an event too, and must not act.
	h.menu.Call(tray.MenuInterface+".Event", 0, open.ID, "hovered", dbus.MakeVariant(""), uint32(0))
	if err := click(open.ID); err != nil {
		t.Fatal(err)
	}
	ev.wantClick(t, "open")
	if err := click(9999); err == nil {
		t.Error("Event on an unknown item succeeded")
	}

	// The panel restarts: the item is gone from the tray, then registers with the new watcher by itself.
	watcher.Stop()
	ev.wantAvailable(t, false)
	if tr.Available() {
		t.Error("Available() = true with no watcher")
	}
	watcher2 := traytest.StartWatcher(t, bus, true)
	ev.wantAvailable(t, true)
	if ref2 := watcher2.WaitItem(t, wait); ref2 != ref {
		t.Errorf("re-registered as %+v, want %+v", ref2, ref)
	}

	// Close takes the item off the bus, which is how the watcher learns it is gone.
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if gone := watcher2.WaitGone(t, wait); gone != ref {
		t.Errorf("watcher dropped %+v, want %+v", gone, ref)
	}
	if err := h.item.Call("org.freedesktop.DBus.Properties.GetAll", 0, tray.ItemInterface).Err; err == nil {
		t.Error("the item still answers after Close")
	}
}

// Without a watcher the app learns it once, everything else keeps working, and a tray that appears later
// picks the item up.
func TestNoWatcher(t *testing.T) {
	iconsNotInstalled(t)
	bus := traytest.SessionBus(t)
	conn := traytest.Connect(t, bus)
	ev := newEvents()
	tr, err := tray.New(context.Background(), conn, ev.options())
	if err != nil {
		t.Fatalf("New without a watcher: %v", err)
	}
	defer tr.Close()
	ev.wantAvailable(t, false)
	if tr.Available() {
		t.Error("Available() = true without a watcher")
	}
	if err := tr.SetState(tray.Question); err != nil {
		t.Errorf("SetState without a watcher: %v", err)
	}
	if err := tr.SetMenu([]tray.Item{{Label: "Quit"}}); err != nil {
		t.Errorf("SetMenu without a watcher: %v", err)
	}
	select {
	case v := <-ev.available:
		t.Fatalf("OnAvailable(%v) called again with nothing changed", v)
	case <-time.After(300 * time.Millisecond):
	}

	// A watcher with no host registered yet: nothing draws the item, so still unavailable...
	w := traytest.StartWatcher(t, bus, false)
	w.WaitItem(t, wait)
	select {
	case v := <-ev.available:
		t.Fatalf("OnAvailable(%v) with a watcher but no host", v)
	case <-time.After(300 * time.Millisecond):
	}
	// ...until the panel registers as host.
	if err := w.SetHost(true); err != nil {
		t.Fatal(err)
	}
	ev.wantAvailable(t, true)
	if err := w.SetHost(false); err != nil {
		t.Fatal(err)
	}
	ev.wantAvailable(t, false)
}

// pixmapCounts starts a tray with opts and returns how many fallback images it offers for the normal icon
// and for the attention (question) icon.
func pixmapCounts(t *testing.T, opts tray.Options) (normal, attention int) {
	t.Helper()
	bus := traytest.SessionBus(t)
	w := traytest.StartWatcher(t, bus, true)
	tr, err := tray.New(context.Background(), traytest.Connect(t, bus), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ref := w.WaitItem(t, wait)
	var all map[string]dbus.Variant
	if err := traytest.Connect(t, bus).Object(ref.Bus, ref.Path).Call("org.freedesktop.DBus.Properties.GetAll", 0,
		tray.ItemInterface).Store(&all); err != nil {
		t.Fatal(err)
	}
	n, _ := all["IconPixmap"].Value().([][]any)
	a, _ := all["AttentionIconPixmap"].Value().([][]any)
	return len(n), len(a)
}

// An app that names icons of its own gets no fallback images of Tattle's.
func TestCustomIconsHaveNoPixmaps(t *testing.T) {
	iconsNotInstalled(t)
	if n, _ := pixmapCounts(t, tray.Options{ID: "x", NormalIcon: "other-symbolic"}); n != 0 {
		t.Errorf("IconPixmap has %d images for a custom icon, want none", n)
	}
}

// Installed icons are left to the host's icon theme; only the ones it cannot find get fallback images.
func TestInstalledIconsHaveNoPixmaps(t *testing.T) {
	share := t.TempDir()
	dir := filepath.Join(share, "icons", "hicolor", "symbolic", "apps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tray.IconNormal+".svg"), []byte("<svg/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_DATA_DIRS", share)
	n, a := pixmapCounts(t, tray.Options{ID: "x"})
	if n != 0 || a != 4 {
		t.Errorf("normal icon installed, question icon not: %d and %d images, want 0 and 4", n, a)
	}
}

// Two trays on one bus (two app instances, or the tests of two packages) get distinct names.
func TestTwoItemsOnOneBus(t *testing.T) {
	bus := traytest.SessionBus(t)
	w := traytest.StartWatcher(t, bus, true)
	var refs []string
	for i := 0; i < 2; i++ {
		tr, err := tray.New(context.Background(), traytest.Connect(t, bus), tray.Options{ID: fmt.Sprint("app", i)})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		refs = append(refs, w.WaitItem(t, wait).Bus)
	}
	if refs[0] == refs[1] {
		t.Errorf("both items registered as %s", refs[0])
	}
}
