package tray

import (
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// pixmap is one ARGB32 image of the protocol's a(iiay) icons. Hosts draw the themed icon named in IconName
// and fall back to these when they cannot find it.
type pixmap struct {
	Width, Height int32
	Data          []byte
}

// toolTip is the protocol's (sa(iiay)ss): icon name, icon images, title, description.
type toolTip struct {
	IconName string
	Pixmaps  []pixmap
	Title    string
	Text     string
}

// itemObject carries the StatusNotifierItem methods a host calls.
type itemObject struct{ t *Tray }

// Activate is a primary click on the item.
func (o itemObject) Activate(x, y int32) *dbus.Error {
	o.t.queue(o.t.opts.OnActivate)
	return nil
}

// SecondaryActivate is a middle click: like a primary one, the monitor is the only thing to open.
func (o itemObject) SecondaryActivate(x, y int32) *dbus.Error {
	o.t.queue(o.t.opts.OnActivate)
	return nil
}

// ContextMenu is asked of items without a dbusmenu; hosts show ours themselves.
func (o itemObject) ContextMenu(x, y int32) *dbus.Error { return nil }

// Scroll over the item means nothing to Tattle.
func (o itemObject) Scroll(delta int32, orientation string) *dbus.Error { return nil }

func (t *Tray) statusLocked() string {
	if t.state == Question {
		return "NeedsAttention"
	}
	return "Active"
}

func (t *Tray) iconLocked() string {
	switch t.state {
	case Question:
		return t.opts.QuestionIcon
	case Silent:
		return t.opts.SilentIcon
	}
	return t.opts.NormalIcon
}

func (t *Tray) itemProps() map[string]dbus.Variant {
	t.mu.Lock()
	defer t.mu.Unlock()
	return map[string]dbus.Variant{
		"Category":            dbus.MakeVariant("ApplicationStatus"),
		"Id":                  dbus.MakeVariant(t.opts.ID),
		"Title":               dbus.MakeVariant(t.opts.Title),
		"Status":              dbus.MakeVariant(t.statusLocked()),
		"WindowId":            dbus.MakeVariant(int32(0)),
		"IconName":            dbus.MakeVariant(t.iconLocked()),
		"IconPixmap":          dbus.MakeVariant(t.pixmaps[t.state]),
		"OverlayIconName":     dbus.MakeVariant(""),
		"OverlayIconPixmap":   dbus.MakeVariant([]pixmap{}),
		"AttentionIconName":   dbus.MakeVariant(t.opts.QuestionIcon),
		"AttentionIconPixmap": dbus.MakeVariant(t.pixmaps[Question]),
		"AttentionMovieName":  dbus.MakeVariant(""),
		"ToolTip":             dbus.MakeVariant(toolTip{IconName: t.iconLocked(), Pixmaps: []pixmap{}, Title: t.tipTitle, Text: t.tipText}),
		"ItemIsMenu":          dbus.MakeVariant(false),
		"Menu":                dbus.MakeVariant(MenuPath),
		"IconThemePath":       dbus.MakeVariant(t.opts.IconThemePath),
	}
}

func (t *Tray) menuProps() map[string]dbus.Variant {
	paths := []string{}
	if t.opts.IconThemePath != "" {
		paths = append(paths, t.opts.IconThemePath)
	}
	return map[string]dbus.Variant{
		"Version":       dbus.MakeVariant(uint32(3)),
		"TextDirection": dbus.MakeVariant("ltr"),
		"Status":        dbus.MakeVariant("normal"),
		"IconThemePath": dbus.MakeVariant(paths),
	}
}

// properties implements org.freedesktop.DBus.Properties for one object, read-only, from the current state.
type properties struct {
	iface string
	get   func() map[string]dbus.Variant
}

func (p properties) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	all, derr := p.GetAll(iface)
	if derr != nil {
		return dbus.Variant{}, derr
	}
	v, ok := all[name]
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty",
			[]any{fmt.Sprintf("%s has no property %s", iface, name)})
	}
	return v, nil
}

func (p properties) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != p.iface {
		return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface",
			[]any{fmt.Sprintf("no interface %s here", iface)})
	}
	return p.get(), nil
}

func (p properties) Set(iface, name string, v dbus.Variant) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{name + " is read-only"})
}

const propertiesXML = `<interface name="org.freedesktop.DBus.Properties">
<method name="Get"><arg name="interface" type="s" direction="in"/><arg name="name" type="s" direction="in"/><arg name="value" type="v" direction="out"/></method>
<method name="GetAll"><arg name="interface" type="s" direction="in"/><arg name="properties" type="a{sv}" direction="out"/></method>
<method name="Set"><arg name="interface" type="s" direction="in"/><arg name="name" type="s" direction="in"/><arg name="value" type="v" direction="in"/></method>
<signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/><arg type="as"/></signal>
</interface>`

const itemXML = `<node>` + introspect.IntrospectDeclarationString + `
<interface name="org.kde.StatusNotifierItem">
<property name="Category" type="s" access="read"/>
<property name="Id" type="s" access="read"/>
<property name="Title" type="s" access="read"/>
<property name="Status" type="s" access="read"/>
<property name="WindowId" type="i" access="read"/>
<property name="IconName" type="s" access="read"/>
<property name="IconPixmap" type="a(iiay)" access="read"/>
<property name="OverlayIconName" type="s" access="read"/>
<property name="OverlayIconPixmap" type="a(iiay)" access="read"/>
<property name="AttentionIconName" type="s" access="read"/>
<property name="AttentionIconPixmap" type="a(iiay)" access="read"/>
<property name="AttentionMovieName" type="s" access="read"/>
<property name="ToolTip" type="(sa(iiay)ss)" access="read"/>
<property name="ItemIsMenu" type="b" access="read"/>
<property name="Menu" type="o" access="read"/>
<property name="IconThemePath" type="s" access="read"/>
<method name="ContextMenu"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
<method name="Activate"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
<method name="SecondaryActivate"><arg name="x" type="i" direction="in"/><arg name="y" type="i" direction="in"/></method>
<method name="Scroll"><arg name="delta" type="i" direction="in"/><arg name="orientation" type="s" direction="in"/></method>
<signal name="NewTitle"/>
<signal name="NewIcon"/>
<signal name="NewAttentionIcon"/>
<signal name="NewOverlayIcon"/>
<signal name="NewToolTip"/>
<signal name="NewStatus"><arg name="status" type="s"/></signal>
</interface>
` + propertiesXML + `</node>`

const menuXML = `<node>` + introspect.IntrospectDeclarationString + `
<interface name="com.canonical.dbusmenu">
<property name="Version" type="u" access="read"/>
<property name="TextDirection" type="s" access="read"/>
<property name="Status" type="s" access="read"/>
<property name="IconThemePath" type="as" access="read"/>
<method name="GetLayout"><arg name="parentId" type="i" direction="in"/><arg name="recursionDepth" type="i" direction="in"/><arg name="propertyNames" type="as" direction="in"/><arg name="revision" type="u" direction="out"/><arg name="layout" type="(ia{sv}av)" direction="out"/></method>
<method name="GetGroupProperties"><arg name="ids" type="ai" direction="in"/><arg name="propertyNames" type="as" direction="in"/><arg name="properties" type="a(ia{sv})" direction="out"/></method>
<method name="GetProperty"><arg name="id" type="i" direction="in"/><arg name="name" type="s" direction="in"/><arg name="value" type="v" direction="out"/></method>
<method name="Event"><arg name="id" type="i" direction="in"/><arg name="eventId" type="s" direction="in"/><arg name="data" type="v" direction="in"/><arg name="timestamp" type="u" direction="in"/></method>
<method name="EventGroup"><arg name="events" type="a(isvu)" direction="in"/><arg name="idErrors" type="ai" direction="out"/></method>
<method name="AboutToShow"><arg name="id" type="i" direction="in"/><arg name="needUpdate" type="b" direction="out"/></method>
<method name="AboutToShowGroup"><arg name="ids" type="ai" direction="in"/><arg name="updatesNeeded" type="ai" direction="out"/><arg name="idErrors" type="ai" direction="out"/></method>
<signal name="ItemsPropertiesUpdated"><arg name="updatedProps" type="a(ia{sv})"/><arg name="removedProps" type="a(ias)"/></signal>
<signal name="LayoutUpdated"><arg name="revision" type="u"/><arg name="parent" type="i"/></signal>
<signal name="ItemActivationRequested"><arg name="id" type="i"/><arg name="timestamp" type="u"/></signal>
</interface>
` + propertiesXML + `</node>`

// export puts the item and the menu on the bus.
func (t *Tray) export() error {
	c := t.conn
	err := errors.Join(
		c.Export(itemObject{t}, ItemPath, ItemInterface),
		c.Export(properties{ItemInterface, t.itemProps}, ItemPath, "org.freedesktop.DBus.Properties"),
		c.Export(introspect.Introspectable(itemXML), ItemPath, "org.freedesktop.DBus.Introspectable"),
		c.Export(menuObject{t}, MenuPath, MenuInterface),
		c.Export(properties{MenuInterface, t.menuProps}, MenuPath, "org.freedesktop.DBus.Properties"),
		c.Export(introspect.Introspectable(menuXML), MenuPath, "org.freedesktop.DBus.Introspectable"),
	)
	if err != nil {
		return fmt.Errorf("tray: exporting the item on the session bus: %w", err)
	}
	return nil
}

func (t *Tray) unexport() {
	for path, ifaces := range map[dbus.ObjectPath][]string{ItemPath: {ItemInterface}, MenuPath: {MenuInterface}} {
		for _, iface := range append(ifaces, "org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable") {
			t.conn.Export(nil, path, iface)
		}
	}
}
