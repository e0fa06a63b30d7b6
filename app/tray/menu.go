package tray

import (
	"fmt"
	"reflect"

	"github.com/godbus/dbus/v5"
)

// Toggle is how a menu item shows a choice.
type Toggle int

const (
	NoToggle Toggle = iota
	Check           // a check box: on or off
	Radio           // one of a group: the app checks exactly one item of the group
)

// Item is one entry of the tray's menu.
type Item struct {
	Label     string // the text; an underscore marks the mnemonic ("_Open Monitor")
	IconName  string // an optional themed icon
	Disabled  bool   // shown, but cannot be chosen (e.g. a heading such as "No questions waiting")
	Toggle    Toggle
	Checked   bool   // for Check and Radio items
	Separator bool   // a line; the other fields are ignored
	Children  []Item // a submenu
	// OnClick runs when the user chooses the item (on the Tray's callback goroutine).
	OnClick func()
}

// menuNode is one item as the dbusmenu protocol sees it: an id, its properties and its children's ids.
type menuNode struct {
	props    map[string]dbus.Variant
	children []int32
	onClick  func()
}

// menuTree is an immutable snapshot of the menu: SetMenu replaces it whole, with a new revision.
type menuTree struct {
	revision uint32
	nodes    map[int32]*menuNode // 0 is the root
}

func newMenuTree(items []Item, revision uint32) *menuTree {
	m := &menuTree{revision: revision, nodes: map[int32]*menuNode{}}
	root := &menuNode{props: map[string]dbus.Variant{"children-display": dbus.MakeVariant("submenu")}}
	m.nodes[0] = root
	next := int32(1)
	var add func(parent *menuNode, items []Item)
	add = func(parent *menuNode, items []Item) {
		for _, it := range items {
			id := next
			next++
			n := &menuNode{props: itemProps(it), onClick: it.OnClick}
			m.nodes[id] = n
			parent.children = append(parent.children, id)
			if len(it.Children) > 0 && !it.Separator {
				n.props["children-display"] = dbus.MakeVariant("submenu")
				add(n, it.Children)
			}
		}
	}
	add(root, items)
	return m
}

// itemProps are an item's dbusmenu properties; defaults (visible, enabled, type standard) are left out as the
// protocol allows.
func itemProps(it Item) map[string]dbus.Variant {
	p := map[string]dbus.Variant{}
	if it.Separator {
		p["type"] = dbus.MakeVariant("separator")
		return p
	}
	p["label"] = dbus.MakeVariant(it.Label)
	if it.IconName != "" {
		p["icon-name"] = dbus.MakeVariant(it.IconName)
	}
	if it.Disabled {
		p["enabled"] = dbus.MakeVariant(false)
	}
	switch it.Toggle {
	case Check, Radio:
		kind := "checkmark"
		if it.Toggle == Radio {
			kind = "radio"
		}
		state := int32(0)
		if it.Checked {
			state = 1
		}
		p["toggle-type"] = dbus.MakeVariant(kind)
		p["toggle-state"] = dbus.MakeVariant(state)
	}
	return p
}

// layout is the protocol's (ia{sv}av): an item, its properties and its children as variants of layouts.
type layout struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []dbus.Variant
}

func (m *menuTree) layout(id int32, depth int32, names []string) layout {
	n := m.nodes[id]
	l := layout{ID: id, Props: filterProps(n.props, names), Children: []dbus.Variant{}}
	if depth == 0 {
		return l
	}
	for _, c := range n.children {
		l.Children = append(l.Children, dbus.MakeVariant(m.layout(c, depth-1, names)))
	}
	return l
}

func filterProps(props map[string]dbus.Variant, names []string) map[string]dbus.Variant {
	if len(names) == 0 {
		return props
	}
	out := make(map[string]dbus.Variant, len(names))
	for _, name := range names {
		if v, ok := props[name]; ok {
			out[name] = v
		}
	}
	return out
}

func (t *Tray) currentMenu() *menuTree {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.menu
}

func unknownItem(id int32) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("no menu item %d", id)})
}

// menuObject carries the com.canonical.dbusmenu methods a host calls.
type menuObject struct{ t *Tray }

func (o menuObject) GetLayout(parentID, depth int32, names []string) (uint32, layout, *dbus.Error) {
	m := o.t.currentMenu()
	if _, ok := m.nodes[parentID]; !ok {
		return 0, layout{}, unknownItem(parentID)
	}
	return m.revision, m.layout(parentID, depth, names), nil
}

type idProps struct {
	ID    int32
	Props map[string]dbus.Variant
}

func (o menuObject) GetGroupProperties(ids []int32, names []string) ([]idProps, *dbus.Error) {
	m := o.t.currentMenu()
	if len(ids) == 0 {
		for id := range m.nodes {
			ids = append(ids, id)
		}
	}
	out := []idProps{}
	for _, id := range ids {
		if n, ok := m.nodes[id]; ok {
			out = append(out, idProps{id, filterProps(n.props, names)})
		}
	}
	return out, nil
}

func (o menuObject) GetProperty(id int32, name string) (dbus.Variant, *dbus.Error) {
	n, ok := o.t.currentMenu().nodes[id]
	if !ok {
		return dbus.Variant{}, unknownItem(id)
	}
	v, ok := n.props[name]
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs",
			[]any{fmt.Sprintf("menu item %d has no property %s", id, name)})
	}
	return v, nil
}

// Event is the user acting on an item; "clicked" runs its callback.
func (o menuObject) Event(id int32, eventID string, data dbus.Variant, timestamp uint32) *dbus.Error {
	n, ok := o.t.currentMenu().nodes[id]
	if !ok {
		return unknownItem(id)
	}
	if eventID == "clicked" {
		o.t.queue(n.onClick)
	}
	return nil
}

type menuEvent struct {
	ID        int32
	EventID   string
	Data      dbus.Variant
	Timestamp uint32
}

func (o menuObject) EventGroup(events []menuEvent) ([]int32, *dbus.Error) {
	bad := []int32{}
	for _, e := range events {
		if derr := o.Event(e.ID, e.EventID, e.Data, e.Timestamp); derr != nil {
			bad = append(bad, e.ID)
		}
	}
	if len(bad) == len(events) && len(events) > 0 {
		return bad, unknownItem(bad[0])
	}
	return bad, nil
}

// AboutToShow: the menu is always current, so hosts never need to refetch before showing it.
func (o menuObject) AboutToShow(id int32) (bool, *dbus.Error) {
	if _, ok := o.t.currentMenu().nodes[id]; !ok {
		return false, unknownItem(id)
	}
	return false, nil
}

func (o menuObject) AboutToShowGroup(ids []int32) ([]int32, []int32, *dbus.Error) {
	m := o.t.currentMenu()
	bad := []int32{}
	for _, id := range ids {
		if _, ok := m.nodes[id]; !ok {
			bad = append(bad, id)
		}
	}
	return []int32{}, bad, nil
}

// itemPropsUpdate is the protocol's (ia{sv}) of ItemsPropertiesUpdated; removedProps its (ias).
type itemPropsUpdate struct {
	ID    int32
	Props map[string]dbus.Variant
}

type removedProps struct {
	ID    int32
	Names []string
}

// changedProps lists the properties of ids in both trees that differ in m from prev, and those m drops.
func (m *menuTree) changedProps(prev *menuTree) ([]itemPropsUpdate, []removedProps) {
	updated, removed := []itemPropsUpdate{}, []removedProps{}
	if prev == nil {
		return updated, removed
	}
	for id, n := range m.nodes {
		old, ok := prev.nodes[id]
		if !ok {
			continue
		}
		ch := map[string]dbus.Variant{}
		for k, v := range n.props {
			if ov, ok := old.props[k]; !ok || !reflect.DeepEqual(ov.Value(), v.Value()) {
				ch[k] = v
			}
		}
		var gone []string
		for k := range old.props {
			if _, ok := n.props[k]; !ok {
				gone = append(gone, k)
			}
		}
		if len(ch) > 0 {
			updated = append(updated, itemPropsUpdate{ID: id, Props: ch})
		}
		if len(gone) > 0 {
			removed = append(removed, removedProps{ID: id, Names: gone})
		}
	}
	return updated, removed
}
