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

// set_row sets n columns of one row in one change (one row-changed signal, not one per column).
static void set_row(GtkTreeStore *store, GtkTreeIter *iter, gint *columns, GValue **values, gint n) {
	GValue *vs = g_new0(GValue, n);
	for (gint i = 0; i < n; i++) {
		g_value_init(&vs[i], G_VALUE_TYPE(values[i]));
		g_value_copy(values[i], &vs[i]);
	}
	gtk_tree_store_set_valuesv(store, iter, columns, vs, n);
	for (gint i = 0; i < n; i++)
		g_value_unset(&vs[i]);
	g_free(vs);
}
*/
import "C"

import (
	"fmt"
	"runtime"
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
	bar := Must(gtk.InfoBarNew())
	bar.SetShowCloseButton(true)
	bar.SetNoShowAll(true)
	label := Must(gtk.LabelNew(""))
	label.SetLineWrap(true)
	label.SetXAlign(0)
	label.SetSelectable(true)
	area := Must(bar.GetContentArea())
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

// SetRow sets columns of one tree store row at once: views and the models above the store see one change
// (each SetValue would be its own, and a sorted model re-sorts the row for each).
func SetRow(store *gtk.TreeStore, iter *gtk.TreeIter, columns []int, values []any) error {
	if len(columns) != len(values) {
		return fmt.Errorf("set row: %d columns, %d values", len(columns), len(values))
	}
	if len(columns) == 0 {
		return nil
	}
	cols := C.malloc(C.size_t(len(columns)) * C.size_t(unsafe.Sizeof(C.gint(0))))
	defer C.free(cols)
	vals := C.malloc(C.size_t(len(values)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(vals)
	cs := unsafe.Slice((*C.gint)(cols), len(columns))
	vs := unsafe.Slice((**C.GValue)(vals), len(values))
	keep := make([]*glib.Value, len(values)) // alive until the C call has copied them
	for i, v := range values {
		gv, err := glib.GValue(v)
		if err != nil {
			return fmt.Errorf("set row: column %d: %w", columns[i], err)
		}
		keep[i] = gv
		cs[i] = C.gint(columns[i])
		vs[i] = (*C.GValue)(unsafe.Pointer(gv.GValue))
	}
	C.set_row((*C.GtkTreeStore)(unsafe.Pointer(store.GObject)), (*C.GtkTreeIter)(unsafe.Pointer(iter)), (*C.gint)(cols), (**C.GValue)(vals), C.gint(len(columns)))
	runtime.KeepAlive(keep) // their finalizers free them
	return nil
}

// Must returns v, or panics when GTK could not make it. GTK's constructors fail only when the toolkit itself
// is broken (out of memory, no display): the window cannot be built then, and a clear panic here beats a nil
// widget failing somewhere later.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("tattle: GTK could not create a %T: %v", v, err))
	}
	return v
}

// SetMargins gives w the same margin of px pixels on all four sides.
func SetMargins(w gtk.IWidget, px int) {
	widget := w.ToWidget()
	widget.SetMarginStart(px)
	widget.SetMarginEnd(px)
	widget.SetMarginTop(px)
	widget.SetMarginBottom(px)
}

// IconButton is a button showing only an icon: name is what screen readers (and the tests) call it, tooltip
// what the pointer shows.
func IconButton(icon, name, tooltip string, clicked func()) *gtk.Button {
	b := Must(gtk.ButtonNewFromIconName(icon, gtk.ICON_SIZE_BUTTON))
	b.SetTooltipText(tooltip)
	SetAccessible(b, name, "")
	b.Connect("clicked", clicked)
	return b
}

// Dim shows w's text in the theme's secondary colour (GTK's dim-label style class), for captions and notes.
func Dim(w gtk.IWidget) {
	if sc, err := w.ToWidget().GetStyleContext(); err == nil {
		sc.AddClass("dim-label")
	}
}
