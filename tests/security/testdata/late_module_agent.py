# A trusted agent program that changes after it registered: the test runs the helper with python3 as a
# trusted agent program. It registers unaltered, answers its first question with Allow, then, before its second
# answer, loads a library its user wrote (argv[1]), as a GTK module that XSETTINGS names later would be loaded
# into the app, and answers Allow again. Prints "registered", then "answered N" after each answer.
import ctypes
import os
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

# As the real agents do before they connect: not dumpable, so the helper's check can pass.
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
asked = 0


class Agent(dbus.service.Object):
    @dbus.service.method("io.github.tattlefw.Tattle1.Agent", out_signature="(sssx)")
    def Ask(self, question):
        global asked
        asked += 1
        if asked == 2:
            ctypes.CDLL(sys.argv[1])
        print("answered %d" % asked, flush=True)
        return ("allow", "host", "once", 0)

    @dbus.service.method("io.github.tattlefw.Tattle1.Agent")
    def Cancel(self, qid):
        pass

    @dbus.service.method("io.github.tattlefw.Tattle1.Agent")
    def AskedChanged(self, asked_here, pid, exe, kind):
        pass


agent = Agent(bus, "/late/agent")
helper = bus.get_object("io.github.tattlefw.Tattle1", "/io/github/tattlefw/Tattle1")
try:
    helper.RegisterAgent(dbus.ObjectPath("/late/agent"), dbus_interface="io.github.tattlefw.Tattle1.Prompts")
except dbus.DBusException as e:
    print("refused", e.get_dbus_name(), e.get_dbus_message(), flush=True)
    sys.exit(3)
print("registered", flush=True)
GLib.MainLoop().run()
