package alert

// #cgo pkg-config: gtk+-3.0 x11
// #include <gtk/gtk.h>
// #include <gdk/gdkx.h>
// #include <X11/Xatom.h>
//
// /* The centre of the window manager's active window (_NET_ACTIVE_WINDOW on the root window), its frame
//  * (_NET_FRAME_EXTENTS around the client window) in GDK's coordinates of the root, on the X display the window
//  * w is on: 1 with *x, *y set; 0 when that display is no X one, no window is active, or the active one is
//  * one of this app's own (the alert itself, the main window), whose place says nothing of where the user
//  * works. */
// static int tattle_x11_active_centre(GtkWindow *w, int *x, int *y)
// {
// 	GdkDisplay *d = gtk_widget_get_display(GTK_WIDGET(w));
// 	Display *dpy;
// 	Window root, active = None, child, *act = NULL;
// 	long *ext = NULL;
// 	XWindowAttributes wa;
// 	Atom type = None;
// 	int format = 0, rx = 0, ry = 0, found = 0, scale;
// 	unsigned long n = 0, after = 0;
// 	long left = 0, right = 0, top = 0, bottom = 0;
//
// 	if (!d || !GDK_IS_X11_DISPLAY(d))
// 		return 0;
// 	dpy = GDK_DISPLAY_XDISPLAY(d);
// 	root = DefaultRootWindow(dpy);
// 	gdk_x11_display_error_trap_push(d);
// 	if (XGetWindowProperty(dpy, root, gdk_x11_get_xatom_by_name_for_display(d, "_NET_ACTIVE_WINDOW"),
// 			0, 1, False, XA_WINDOW, &type, &format, &n, &after, (unsigned char **)&act) == Success &&
// 	    type == XA_WINDOW && format == 32 && n == 1)
// 		active = act[0];
// 	if (active != None && !gdk_x11_window_lookup_for_display(d, active) &&
// 	    XGetWindowAttributes(dpy, active, &wa) && XTranslateCoordinates(dpy, active, root, 0, 0, &rx, &ry, &child)) {
// 		if (XGetWindowProperty(dpy, active, gdk_x11_get_xatom_by_name_for_display(d, "_NET_FRAME_EXTENTS"),
// 				0, 4, False, XA_CARDINAL, &type, &format, &n, &after, (unsigned char **)&ext) == Success &&
// 		    type == XA_CARDINAL && format == 32 && n == 4) {
// 			left = ext[0], right = ext[1], top = ext[2], bottom = ext[3];
// 		}
// 		/* GDK counts in application pixels: X pixels over the window scale (GDK_SCALE). */
// 		scale = gdk_window_get_scale_factor(gdk_screen_get_root_window(gdk_display_get_default_screen(d)));
// 		if (scale < 1)
// 			scale = 1;
// 		*x = (rx - left + (left + wa.width + right) / 2) / scale;
// 		*y = (ry - top + (top + wa.height + bottom) / 2) / scale;
// 		found = 1;
// 	}
// 	if (act)
// 		XFree(act);
// 	if (ext)
// 		XFree(ext);
// 	if (gdk_x11_display_error_trap_pop(d))
// 		return 0; /* the window went away meanwhile */
// 	return found;
// }
import "C"

import (
	"unsafe"

	"github.com/gotk3/gotk3/gtk"
)

// x11ActiveCentre is the centre of the frame of the window the X window manager has active (the one the user
// types into), on the display of w, in GDK's coordinates; false when w is on no X display, no window is
// active or the active one is the app's own.
func x11ActiveCentre(w *gtk.Window) (x, y int, ok bool) {
	var cx, cy C.int
	if C.tattle_x11_active_centre((*C.GtkWindow)(unsafe.Pointer(w.GObject)), &cx, &cy) == 0 {
		return 0, 0, false
	}
	return int(cx), int(cy), true
}
