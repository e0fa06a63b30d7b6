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
// /* How the window manager stacks the window, read from its own EWMH lists on the window's X display
//  * (X11, or Xwayland): 1 when it kept the window from the front (it is not among the windows the window
//  * manager shows, or the active window is stacked above it), 0 when not, -1 when it cannot tell (not an X
//  * window, or a window manager that keeps no _NET_CLIENT_LIST_STACKING). */
// static int tattle_x11_raise_refused(GtkWindow *w)
// {
// 	GdkWindow *gw = gtk_widget_get_window(GTK_WIDGET(w));
// 	GdkDisplay *d;
// 	Display *dpy;
// 	Window me, active = None, *stack = NULL, *act = NULL;
// 	Atom type = None;
// 	int format = 0, refused = -1, mine = -1, theirs = -1;
// 	unsigned long n = 0, na = 0, after = 0, i;
//
// 	if (!gw || !GDK_IS_X11_WINDOW(gw))
// 		return -1;
// 	d = gdk_window_get_display(gw);
// 	dpy = GDK_DISPLAY_XDISPLAY(d);
// 	me = GDK_WINDOW_XID(gw);
// 	gdk_x11_display_error_trap_push(d);
// 	if (XGetWindowProperty(dpy, DefaultRootWindow(dpy), gdk_x11_get_xatom_by_name_for_display(d, "_NET_CLIENT_LIST_STACKING"),
// 			0, 4096, False, XA_WINDOW, &type, &format, &n, &after, (unsigned char **)&stack) == Success &&
// 	    type == XA_WINDOW && format == 32) {
// 		if (XGetWindowProperty(dpy, DefaultRootWindow(dpy), gdk_x11_get_xatom_by_name_for_display(d, "_NET_ACTIVE_WINDOW"),
// 				0, 1, False, XA_WINDOW, &type, &format, &na, &after, (unsigned char **)&act) == Success &&
// 		    type == XA_WINDOW && format == 32 && na == 1)
// 			active = act[0];
// 		/* Bottom to top. */
// 		for (i = 0; i < n; i++) {
// 			if (stack[i] == me)
// 				mine = i;
// 			if (active != None && stack[i] == active)
// 				theirs = i;
// 		}
// 		refused = mine < 0 || (active != me && theirs > mine);
// 	}
// 	if (stack)
// 		XFree(stack);
// 	if (act)
// 		XFree(act);
// 	if (gdk_x11_display_error_trap_pop(d))
// 		return -1;
// 	return refused;
// }
//
// /* The X server's time now, for the window's display (a round trip); 0 when it is no X window. */
// static guint32 tattle_x11_server_time(GtkWindow *w)
// {
// 	GdkWindow *gw = gtk_widget_get_window(GTK_WIDGET(w));
//
// 	if (!gw || !GDK_IS_X11_WINDOW(gw))
// 		return 0;
// 	return gdk_x11_get_server_time(gw);
// }
//
// /* Whether the app's own display is a Wayland one. */
// static int tattle_on_wayland(void)
// {
// 	GdkDisplay *def = gdk_display_get_default();
//
// 	return def && GDK_IS_WAYLAND_DISPLAY(def);
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

// raiseRefused reports whether the window manager kept the alert, shown for a new question, from the front
// of the screen, after it had time to settle. On X11 and Xwayland it reads the window manager's own view
// (_NET_CLIENT_LIST_STACKING, _NET_ACTIVE_WINDOW): refused when the window is not among those it shows or
// the active window is stacked above it (openbox, say, keeps a focused fullscreen window above every
// keep-above one). Windows above the alert that are not active (a panel, another keep-above window) do not
// count: without their shapes one cannot tell that they cover it. On Xwayland the X lists hold only X
// windows, so a Wayland window above the alert goes unseen there.
//
// On native Wayland no client can read the stacking. The alert then asks for the keyboard when it appears
// (GTK 3 cannot ask otherwise there) and GNOME Shell and KWin give it; a compositor that does not give it
// the keyboard is taken to have kept it below the focused window too (Mutter stacks a window it denies
// focus below the focused one), so not active there counts as refused.
func raiseRefused(w *gtk.Window) bool {
	switch C.tattle_x11_raise_refused((*C.GtkWindow)(unsafe.Pointer(w.GObject))) {
	case 1:
		return true
	case 0:
		return false
	}
	if C.tattle_on_wayland() != 0 && !onXwayland(w) {
		return !w.IsActive()
	}
	return false // an X window manager without EWMH stacking: nothing to go by
}

// x11ServerTime is the X server's time now on the window's display (0 when it is not an X window): what a
// request the user made elsewhere (a notification's action) carries to the window manager. GTK would send
// the time of the app's own last input instead, which window managers take for a stale request.
func x11ServerTime(w *gtk.Window) uint32 {
	return uint32(C.tattle_x11_server_time((*C.GtkWindow)(unsafe.Pointer(w.GObject))))
}
