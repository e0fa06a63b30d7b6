package alert

// #cgo pkg-config: gtk+-3.0 x11
// #include <gtk/gtk.h>
// #include <gdk/gdkx.h>
// #include <gdk/gdkwayland.h>
// #include <X11/Xatom.h>
//
// /* Opens the X display named by DISPLAY (Xwayland) beside the default Wayland display and moves the window
//  * to its screen. GTK picks a display's backend by GDK_BACKEND each time it opens one: a session that set it
//  * to wayland would have GTK try to open ":0" as a Wayland socket, so it is set to x11 for this one call. */
// static void tattle_type_critical(GtkWidget *w, gpointer data)
// {
// 	GdkWindow *gw = gtk_widget_get_window(w);
// 	GdkDisplay *d;
// 	Atom types[2];
//
// 	if (!gw || !GDK_IS_X11_WINDOW(gw))
// 		return;
// 	d = gdk_window_get_display(gw);
// 	types[0] = gdk_x11_get_xatom_by_name_for_display(d, "_KDE_NET_WM_WINDOW_TYPE_CRITICAL_NOTIFICATION");
// 	types[1] = gdk_x11_get_xatom_by_name_for_display(d, "_NET_WM_WINDOW_TYPE_DIALOG");
// 	XChangeProperty(GDK_DISPLAY_XDISPLAY(d), GDK_WINDOW_XID(gw), gdk_x11_get_xatom_by_name_for_display(d, "_NET_WM_WINDOW_TYPE"),
// 		XA_ATOM, 32, PropModeReplace, (unsigned char *)types, 2);
// }
//
// static int tattle_move_to_xwayland(GtkWindow *w)
// {
// 	GdkDisplay *def = gdk_display_get_default();
// 	const char *name = g_getenv("DISPLAY");
// 	gchar *saved;
// 	GdkDisplay *x;
//
// 	if (!def || !GDK_IS_WAYLAND_DISPLAY(def) || !name || !*name)
// 		return 0;
// 	saved = g_strdup(g_getenv("GDK_BACKEND"));
// 	g_setenv("GDK_BACKEND", "x11", TRUE);
// 	x = gdk_display_open(name);
// 	if (saved)
// 		g_setenv("GDK_BACKEND", saved, TRUE);
// 	else
// 		g_unsetenv("GDK_BACKEND");
// 	g_free(saved);
// 	if (!x)
// 		return 0;
// 	if (!GDK_IS_X11_DISPLAY(x)) {
// 		gdk_display_close(x);
// 		return 0;
// 	}
// 	gtk_window_set_screen(w, gdk_display_get_default_screen(x));
// 	/* KWin stacks the active fullscreen window above keep-above ones; a critical notification (KDE's window
// 	 * type, which window managers that do not know it skip for the dialog type after it) goes above that.
// 	 * Set after GTK has set the type hint at realize. */
// 	g_signal_connect_after(w, "realize", G_CALLBACK(tattle_type_critical), NULL);
// 	return 1;
// }
//
// /* Gives the window the X input focus at the time of the user's click: what GDK does when the window manager
//  * sends WM_TAKE_FOCUS, which KWin and Mutter send on that click, but that message may arrive before the
//  * click itself has made the window accept focus, and then both window managers take the later
//  * _NET_ACTIVE_WINDOW for a window they already activated. */
// static void tattle_x11_take_focus(GtkWindow *w, guint32 time)
// {
// 	GdkWindow *gw = gtk_widget_get_window(GTK_WIDGET(w));
// 	GdkDisplay *d;
//
// 	if (!gw || !GDK_IS_X11_WINDOW(gw) || time == GDK_CURRENT_TIME)
// 		return;
// 	d = gdk_window_get_display(gw);
// 	gdk_x11_display_error_trap_push(d);
// 	XSetInputFocus(GDK_DISPLAY_XDISPLAY(d), GDK_WINDOW_XID(gw), RevertToParent, time);
// 	gdk_x11_display_error_trap_pop_ignored(d);
// }
//
// /* Whether the window is on an X display while the app's own display is Wayland: Xwayland. */
// static int tattle_window_on_xwayland(GtkWindow *w)
// {
// 	GdkDisplay *def = gdk_display_get_default();
//
// 	return def && GDK_IS_WAYLAND_DISPLAY(def) && GDK_IS_X11_DISPLAY(gtk_widget_get_display(GTK_WIDGET(w)));
// }
//
import "C"

import (
	"unsafe"

	"github.com/gotk3/gotk3/gtk"
)

// moveToXwayland puts the alert on the session's Xwayland display when the app runs on Wayland and DISPLAY
// names one, and reports whether it did. There the compositor's X11 window management honours what Wayland
// cannot say (xdg-shell has no such request): map without focus (_NET_WM_USER_TIME 0) and take no keyboard
// until the user clicks (WM_HINTS input false), while the window stays above the others. Without an X
// display the alert stays a Wayland window, which GNOME Shell and KWin focus when it appears.
func moveToXwayland(w *gtk.Window) bool {
	return C.tattle_move_to_xwayland((*C.GtkWindow)(unsafe.Pointer(w.GObject))) != 0
}

// onXwayland reports whether the window is on Xwayland (an X display beside the app's Wayland one).
func onXwayland(w *gtk.Window) bool {
	return C.tattle_window_on_xwayland((*C.GtkWindow)(unsafe.Pointer(w.GObject))) != 0
}

// xwaylandTakeFocus sets the X input focus on the window with the time of the user's click (time 0: not).
func xwaylandTakeFocus(w *gtk.Window, time uint32) {
	C.tattle_x11_take_focus((*C.GtkWindow)(unsafe.Pointer(w.GObject)), C.guint32(time))
}
