#!/usr/bin/python3
"""A small text editor window for the desktop tests: a GTK TextView titled by argv[1] whose buffer is written to
the file argv[2] on every change (the test reads what the user's keys typed there). Sent SIGUSR1 it
fullscreens itself, SIGUSR2 unfullscreens. Whether it has the keyboard is written to argv[2] + ".active"."""
import os
import signal
import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

title, out = sys.argv[1], sys.argv[2]
win = Gtk.Window(title=title)
win.set_default_size(900, 600)
view = Gtk.TextView()
buf = view.get_buffer()


def changed(b):
    text = b.get_text(b.get_start_iter(), b.get_end_iter(), True)
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.replace(out + ".tmp", out)


buf.connect("changed", changed)


def active(w, _):
    # GTK's own view: whether this window has the keyboard (argv[2] + ".active": "yes" or "no").
    with open(out + ".active.tmp", "w") as f:
        f.write("yes" if w.is_active() else "no")
    os.replace(out + ".active.tmp", out + ".active")


win.connect("notify::is-active", active)
win.add(view)
win.connect("destroy", Gtk.main_quit)
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, lambda: win.fullscreen() or True)
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, lambda: win.unfullscreen() or True)
win.show_all()
view.grab_focus()
changed(buf)
Gtk.main()
