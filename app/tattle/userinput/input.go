// Package userinput tells the user's own input from what other programs of the user can do to the app:
// press its buttons through the accessibility tree (AT-SPI doAction), send it X events (XSendEvent), or fake
// input with XTEST on Xwayland. Whatever changes a decision (an answer, a rule, a setting) goes through it.
package userinput

// #cgo pkg-config: gtk+-3.0 x11 xi
// #include <gtk/gtk.h>
// #include <gdk/gdkx.h>
// #include <gdk/gdkwayland.h>
// #include <X11/extensions/XInput2.h>
//
// /* Whether the X device with that id is one of the X server's XTEST devices: what any X client's
//  * XTestFakeInput comes from. The server marks them with the device property "XTEST Device", which no client
//  * can change or delete. Anything unclear counts as XTEST (fail closed). */
// static int tattle_xtest_device(Display *dpy, int id)
// {
// 	Atom prop = XInternAtom(dpy, "XTEST Device", True), type = None;
// 	int format = 0, xtest = 1;
// 	unsigned long n = 0, after = 0;
// 	unsigned char *data = NULL;
//
// 	if (prop == None)
// 		return 1;
// 	gdk_x11_display_error_trap_push(gdk_x11_lookup_xdisplay(dpy));
// 	if (XIGetProperty(dpy, id, prop, 0, 1, False, AnyPropertyType, &type, &format, &n, &after, &data) == Success) {
// 		/* No such property: a device of the server's own (on Xwayland: its seat's pointer, keyboard, touch). */
// 		xtest = type != None && (format != 8 || n < 1 || data[0] != 0);
// 	}
// 	if (gdk_x11_display_error_trap_pop(gdk_x11_lookup_xdisplay(dpy)))
// 		xtest = 1;
// 	if (data)
// 		XFree(data);
// 	return xtest;
// }
//
// /* Whether an event on an Xwayland window came through the compositor (its seat's devices), not from XTEST:
//  * on Xwayland any X client of the session may fake input with XTEST, and the X server delivers that to X
//  * windows as if it were real, without the compositor seeing it. Events not on Xwayland: 1. */
// static int tattle_xwayland_event_real(GdkEvent *ev)
// {
// 	GdkDisplay *def = gdk_display_get_default(), *d;
// 	GdkDevice *src;
//
// 	if (!ev->any.window)
// 		return 0;
// 	d = gdk_window_get_display(ev->any.window);
// 	if (!def || !GDK_IS_WAYLAND_DISPLAY(def) || !GDK_IS_X11_DISPLAY(d))
// 		return 1;
// 	src = gdk_event_get_source_device(ev);
// 	if (!src || !GDK_IS_X11_DEVICE_XI2(src))
// 		return 0;
// 	return !tattle_xtest_device(GDK_DISPLAY_XDISPLAY(d), gdk_x11_device_get_id(src));
// }
//
//
// /* The events that opened the nested main loops running now (gtk_dialog_run, a native file chooser's run).
//  * GTK keeps such an event current for all that the nested loop dispatches, an accessibility action on any
//  * window included: it is never the cause of what happens inside. GTK runs on one thread: plain statics. */
// #define TATTLE_NEST_MAX 8
// typedef struct { GdkEventType type; guint32 time; GdkWindow *window; } tattle_sig;
// static tattle_sig tattle_outer[TATTLE_NEST_MAX];
// static int tattle_nest;
//
// static tattle_sig tattle_sig_of(GdkEvent *ev)
// {
// 	tattle_sig s = { gdk_event_get_event_type(ev), gdk_event_get_time(ev), ev->any.window };
// 	return s;
// }
//
// static void tattle_nest_push(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	tattle_sig s = { GDK_NOTHING, 0, NULL };
//
// 	if (ev) {
// 		s = tattle_sig_of(ev);
// 		gdk_event_free(ev);
// 	}
// 	if (tattle_nest < TATTLE_NEST_MAX)
// 		tattle_outer[tattle_nest] = s;
// 	tattle_nest++;
// }
//
// static void tattle_nest_pop(void)
// {
// 	if (tattle_nest > 0)
// 		tattle_nest--;
// }
//
// static int tattle_is_outer(GdkEvent *ev)
// {
// 	tattle_sig s = tattle_sig_of(ev);
// 	int i;
//
// 	if (tattle_nest > TATTLE_NEST_MAX)
// 		return 1; /* not recorded: fail closed */
// 	for (i = 0; i < tattle_nest; i++)
// 		if (tattle_outer[i].type == s.type && tattle_outer[i].time == s.time && tattle_outer[i].window == s.window)
// 			return 1;
// 	return 0;
// }
//
// /* A key activates a button without the focus (Return in an entry activating the default, a mnemonic) or held
//  * past 250 ms on one with it from a timer: GTK then emits "clicked" with no current event. The button a real
//  * key activated is remembered; its click from that timer counts as the key's, for that one dispatch only. */
// static GtkWidget *tattle_key_activated, *tattle_key_clicking;
// static gint64 tattle_key_activated_at;
// static int tattle_real_event(GdkEvent *ev);
//
// static gboolean tattle_key_clicking_end(gpointer data)
// {
// 	tattle_key_clicking = NULL;
// 	return G_SOURCE_REMOVE;
// }
//
// static gboolean tattle_activate_hook(GSignalInvocationHint *hint, guint n, const GValue *params, gpointer data)
// {
// 	GdkEvent *ev = gtk_get_current_event();
//
// 	if (ev) {
// 		GdkEventType t = gdk_event_get_event_type(ev);
// 		if ((t == GDK_KEY_PRESS || t == GDK_KEY_RELEASE) && tattle_real_event(ev)) {
// 			tattle_key_activated = g_value_get_object(&params[0]);
// 			tattle_key_activated_at = g_get_monotonic_time();
// 		}
// 		gdk_event_free(ev);
// 	}
// 	return TRUE;
// }
//
// static gboolean tattle_clicked_hook(GSignalInvocationHint *hint, guint n, const GValue *params, gpointer data)
// {
// 	GtkWidget *w = g_value_get_object(&params[0]);
// 	GdkEvent *ev = gtk_get_current_event();
//
// 	tattle_key_clicking = NULL;
// 	/* In a nested loop the timer runs with the event that opened the loop current. */
// 	if ((!ev || tattle_is_outer(ev)) && w == tattle_key_activated && g_get_monotonic_time() - tattle_key_activated_at < G_USEC_PER_SEC) {
// 		tattle_key_clicking = w;
// 		/* Cleared before the main loop dispatches anything else (D-Bus, AT-SPI: default priority). */
// 		g_idle_add_full(G_PRIORITY_HIGH, tattle_key_clicking_end, NULL, NULL);
// 	}
// 	if (w == tattle_key_activated)
// 		tattle_key_activated = NULL;
// 	if (ev)
// 		gdk_event_free(ev);
// 	return TRUE;
// }
//
// static void tattle_watch_keys(void)
// {
// 	static int watching;
// 	gpointer klass;
//
// 	if (watching)
// 		return;
// 	watching = 1;
// 	klass = g_type_class_ref(GTK_TYPE_BUTTON);
// 	g_signal_add_emission_hook(g_signal_lookup("activate", GTK_TYPE_BUTTON), 0, tattle_activate_hook, NULL, NULL);
// 	g_signal_add_emission_hook(g_signal_lookup("clicked", GTK_TYPE_BUTTON), 0, tattle_clicked_hook, NULL, NULL);
// 	g_type_class_unref(klass);
// }
//
// /* Whether ev is one of the user's own: a button, key or touch event that the display server delivered,
//  * not one a client sent with XSendEvent (send_event set), nor the event that opened a nested loop. */
// static int tattle_real_event(GdkEvent *ev)
// {
// 	switch (gdk_event_get_event_type(ev)) {
// 	case GDK_BUTTON_PRESS:
// 	case GDK_BUTTON_RELEASE:
// 	case GDK_KEY_PRESS:
// 	case GDK_KEY_RELEASE:
// 	case GDK_TOUCH_BEGIN:
// 	case GDK_TOUCH_END:
// 		return !ev->any.send_event && !tattle_is_outer(ev) && tattle_xwayland_event_real(ev);
// 	default:
// 		return 0;
// 	}
// }
//
// /* Whether the signal GTK is handling now was caused by the user's own input (see tattle_real_event). An
//  * accessibility action (AT-SPI doAction) runs with no current event at all, or inside a nested loop with the
//  * event that opened it. */
// static int tattle_real_input(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	int real = 0;
//
// 	if (!ev)
// 		return tattle_key_clicking != NULL;
// 	real = tattle_is_outer(ev) ? tattle_key_clicking != NULL : tattle_real_event(ev);
// 	gdk_event_free(ev);
// 	return real;
// }
//
// /* Whether the event GTK is handling now is the user's own input that may change a choice: what
//  * tattle_real_input accepts, and a scroll (GTK 3 moves a combo box's choice under the wheel). */
// static int tattle_real_change(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	int real = 0;
//
// 	if (!ev)
// 		return 0;
// 	if (gdk_event_get_event_type(ev) == GDK_SCROLL)
// 		real = !ev->any.send_event && !tattle_is_outer(ev) && tattle_xwayland_event_real(ev);
// 	gdk_event_free(ev);
// 	return real || tattle_real_input();
// }
//
// /* Whether the event GTK is handling now is a key press or release (or a click a key's timer made). */
// static int tattle_key_input(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	int key = 0;
//
// 	if (!ev)
// 		return tattle_key_clicking != NULL;
// 	key = tattle_is_outer(ev) ? tattle_key_clicking != NULL :
// 		gdk_event_get_event_type(ev) == GDK_KEY_PRESS || gdk_event_get_event_type(ev) == GDK_KEY_RELEASE;
// 	gdk_event_free(ev);
// 	return key;
// }
//
// /* Whether the app runs on an X11 display, where any client can inject input (XTEST). */
// static int tattle_on_x11(void)
// {
// 	GdkDisplay *d = gdk_display_get_default();
//
// 	return d && g_strcmp0(G_OBJECT_TYPE_NAME(d), "GdkX11Display") == 0;
// }
import "C"

// Watch starts following key activations of buttons (see tattle_watch_keys): call it once, after GTK is
// initialized and before any window is shown.
func Watch() { C.tattle_watch_keys() }

// Nested runs f, which runs a nested main loop (a modal dialog's, a native file chooser's): inside it the
// event that opened the loop does not count as real input, though GTK keeps it current there.
func Nested(f func()) {
	C.tattle_nest_push()
	defer C.tattle_nest_pop()
	f()
}

// Real reports whether the signal being handled was caused by the user's own mouse, keyboard or touch.
// On X11 any client can still fake input through the XTEST extension, which the server delivers as real:
// only a Wayland session keeps other programs from typing or clicking for the user (SECURITY.md).
func Real() bool { return C.tattle_real_input() != 0 }

// RealChange reports whether the change being handled (a combo box's choice) came from the user's own
// input: a click, key, touch or scroll.
func RealChange() bool { return C.tattle_real_change() != 0 }

// Key reports whether the signal being handled was caused by a key (Return, space or a mnemonic).
func Key() bool { return C.tattle_key_input() != 0 }

// EventTime is the time of the event being handled (gdk.CURRENT_TIME when there is none).
func EventTime() uint32 { return uint32(C.gtk_get_current_event_time()) }

// OnX11 reports whether the app's display is an X11 one.
func OnX11() bool { return C.tattle_on_x11() != 0 }
