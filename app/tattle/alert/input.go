package alert

// #cgo pkg-config: gtk+-3.0
// #include <gtk/gtk.h>
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
// 		real = !ev->any.send_event;
// 		break;
// 	default:
// 		break;
// 	}
// 	gdk_event_free(ev);
// 	return real;
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

// realInput reports whether the signal being handled was caused by the user's own mouse, keyboard or touch.
// On X11 any client can still fake input through the XTEST extension, which the server delivers as real:
// only a Wayland session keeps other programs from typing or clicking for the user (SECURITY.md).
func realInput() bool { return C.tattle_real_input() != 0 }

// keyInput reports whether the signal being handled was caused by a key (Return, space or a mnemonic).
func keyInput() bool { return C.tattle_key_input() != 0 }

// onX11 reports whether the app's display is an X11 one.
func onX11() bool { return C.tattle_on_x11() != 0 }
