# A rogue agent: any program of the user can speak D-Bus. It registers an agent object that would allow
# everything. Exit 0: registered (the attack worked); 3: refused, with the helper's error on stdout.
import os
import sys

import dbus

bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
helper = bus.get_object("io.github.tattlefw.Tattle1", "/io/github/tattlefw/Tattle1")
try:
    helper.RegisterAgent(dbus.ObjectPath("/rogue/agent"), dbus_interface="io.github.tattlefw.Tattle1.Prompts")
except dbus.DBusException as e:
    print(e.get_dbus_name(), e.get_dbus_message())
    sys.exit(3)
print("registered")
