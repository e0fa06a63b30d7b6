// Package ui holds the small GTK helpers the app's views share: accessible names for assistive technology
// (and the tests, which find widgets through AT-SPI), an in-app message bar, and running blocking D-Bus calls
// off the main loop with their results delivered back on it.
package ui

/*
#cgo pkg-config: gtk+-3.0
#include <gtk/gtk.h>
#include <stdlib.h>

static void set_accessible(GtkWidget *w, const char *name, const char *desc) {
	AtkObject *a = gtk_widget_get_accessible(w);
	if (a == NULL) return;
	if (name != NULL) atk_object_set_name(a, name);
	if (desc != NULL) atk_object_set_description(a, desc);
}
*/
import "C"

import (
	"unsafe"

	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"
)

// SetAccessible gives w an accessible name (and a description when desc is not ""), which screen readers
// read and AT-SPI clients search for.
func SetAccessible(w gtk.IWidget, name, desc string) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	var cd *C.char
	if desc != "" {
		cd = C.CString(desc)
		defer C.free(unsafe.Pointer(cd))
	}
	C.set_accessible((*C.GtkWidget)(unsafe.Pointer(w.ToWidget().GObject)), cn, cd)
}

// Background runs work on its own goroutine and then done with its result on the GTK main loop. Use it for
// every call to the helper, so that a slow answer (or a password dialog) never freezes the window.
func Background[T any](work func() (T, error), done func(T, error)) {
	go func() {
		v, err := work()
		glib.IdleAdd(func() { done(v, err) })
	}()
}

// MessageBar is an InfoBar that shows one message at a time.
type MessageBar struct {
	Bar   *gtk.InfoBar
	label *gtk.Label
}

// NewMessageBar makes a hidden message bar.
func NewMessageBar() *MessageBar {
	bar, _ := gtk.InfoBarNew()
	bar.SetShowCloseButton(true)
	bar.SetNoShowAll(true)
	label, _ := gtk.LabelNew("")
	label.SetLineWrap(true)
	label.SetXAlign(0)
	label.SetSelectable(true)
	area, _ := bar.GetContentArea()
	area.Add(label)
	label.Show()
	bar.Connect("response", func() { bar.Hide() })
	return &MessageBar{Bar: bar, label: label}
}

// Show shows text as an error (or as information when kind is gtk.MESSAGE_INFO).
func (m *MessageBar) Show(kind gtk.MessageType, text string) {
	m.label.SetText(text)
	m.Bar.SetMessageType(kind)
	m.Bar.Show()
}

// Hide hides the bar.
func (m *MessageBar) Hide() { m.Bar.Hide() }
