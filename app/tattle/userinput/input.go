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
// /* Whether the event GTK is handling now is one of the user's own: a button, key or touch event that the
//  * display server delivered, not one a client sent with XSendEvent (send_event set). An accessibility action
//  * (AT-SPI doAction) runs with no current event at all. */
// static int tattle_real_input(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	int real = 0;
//
// 	if (!ev)
// 		return 0;
// 	switch (gdk_event_get_event_type(ev)) {
// 	case GDK_BUTTON_PRESS:
// 	case GDK_BUTTON_RELEASE:
// 	case GDK_KEY_PRESS:
// 	case GDK_KEY_RELEASE:
// 	case GDK_TOUCH_BEGIN:
// 	case GDK_TOUCH_END:
// 		real = !ev->any.send_event && tattle_xwayland_event_real(ev);
// 		break;
// 	default:
// 		break;
// 	}
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
// 		real = !ev->any.send_event && tattle_xwayland_event_real(ev);
// 	gdk_event_free(ev);
// 	return real || tattle_real_input();
// }
//
// /* Whether the event GTK is handling now is a key press or release. */
// static int tattle_key_input(void)
// {
// 	GdkEvent *ev = gtk_get_current_event();
// 	int key = 0;
//
// 	if (!ev)
// 		return 0;
// 	key = gdk_event_get_event_type(ev) == GDK_KEY_PRESS || gdk_event_get_event_type(ev) == GDK_KEY_RELEASE;
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
