#!/usr/bin/python3
"""Reads and drives the tattle app through the accessibility tree (AT-SPI), as a screen reader would.

Usage (DBUS_SESSION_BUS_ADDRESS must be the app's session bus):
  atspi.py names APP [MAXCELLS]          print JSON: every showing accessible's [role, name]
  atspi.py wait APP ROLE NAME TIMEOUT    wait until a showing accessible with that role and name exists
  atspi.py options APP ROLE NAME         print the choices (menu items) of that combo box, shown or not
  atspi.py extents APP ROLE NAME         print [x, y, width, height] on the screen
  atspi.py click APP ROLE NAME           run the first action ("click"/"press") of that accessible
  atspi.py select APP ROLE NAME          select that item (combo box entries, list items)
  atspi.py setvalue APP ROLE NAME VALUE  set the value of a spin button or slider
  atspi.py settext APP ROLE NAME TEXT    replace the text of an entry
  atspi.py settext-within APP CROLE CNAME ROLE NAME TEXT   the same, for an entry inside a container
  atspi.py choose APP CNAME ITEM         pick ITEM in the combo box now showing CNAME (its items are not
                                         showing while its menu is closed)
  atspi.py states APP ROLE NAME          print JSON: the accessible's states ("active", "focused", ...)
Roles are pyatspi role names as printed by `names` ("push button", "table cell", ...).
"""
import json
import sys
import time

import pyatspi


def app_named(name):
    desktop = pyatspi.Registry.getDesktop(0)
    for i in range(desktop.childCount):
        a = desktop.getChildAtIndex(i)
        if a is not None and a.name == name:
            return a
    return None


def walk(acc, maxcells, out, depth=0):
    """Yields showing accessibles, at most maxcells children of any one table."""
    if acc is None or depth > 60:
        return
    try:
        states = acc.getState()
        role = acc.getRoleName()
        n = acc.childCount
    except Exception:
        return
    if not states.contains(pyatspi.STATE_SHOWING) and role not in ("application", "frame", "window", "dialog"):
        return
    out.append(acc)
    if role in ("tree table", "table"):
        n = min(n, maxcells)
    for i in range(n):
        try:
            c = acc.getChildAtIndex(i)
        except Exception:
            continue
        walk(c, maxcells, out, depth + 1)


def first_named(root, role, name, maxcells=4000):
    """The first accessible with role and name among those walk lists from root, or None."""
    found = []
    walk(root, maxcells, found)
    for acc in found:
        try:
            if acc.getRoleName() == role and acc.name == name:
                return acc
        except Exception:
            continue
    return None


def find(appname, role, name, maxcells=4000):
    a = app_named(appname)
    if a is None:
        return None
    return first_named(a, role, name, maxcells)


def find_within(appname, crole, cname, role, name):
    container = find(appname, crole, cname)
    if container is None:
        return None
    return first_named(container, role, name)


def main():
    cmd, appname = sys.argv[1], sys.argv[2]
    if cmd == "settext-within":
        acc = find_within(appname, sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
        if acc is None:
            print("not found: %s %r in %s %r" % (sys.argv[5], sys.argv[6], sys.argv[3], sys.argv[4]), file=sys.stderr)
            return 1
        acc.queryEditableText().setTextContents(sys.argv[7])
        return 0
    if cmd == "choose":
        combo = find(appname, "combo box", sys.argv[3])
        if combo is None:
            print("not found: combo box %r" % sys.argv[3], file=sys.stderr)
            return 1
        items = []
        for i in range(combo.childCount):
            menu = combo.getChildAtIndex(i)
            for j in range(menu.childCount if menu is not None else 0):
                items.append(menu.getChildAtIndex(j).name)
                if items[-1] == sys.argv[4]:
                    combo.querySelection().selectChild(j)
                    return 0
        print("combo box %r has no item %r: %r" % (sys.argv[3], sys.argv[4], items), file=sys.stderr)
        return 1
    if cmd == "names":
        maxcells = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
        a = app_named(appname)
        if a is None:
            print("null")
            return 0
        found = []
        walk(a, maxcells, found)
        # The monitor replaces rows as flows change: an object may be gone by the time it is read.
        names = []
        for x in found:
            try:
                names.append([x.getRoleName(), x.name])
            except Exception:
                continue
        print(json.dumps(names))
        return 0
    role, name = sys.argv[3], sys.argv[4]
    if cmd == "wait":
        deadline = time.time() + float(sys.argv[5])
        while time.time() < deadline:
            if find(appname, role, name) is not None:
                return 0
            time.sleep(0.2)
        print("not found: %s %r" % (role, name), file=sys.stderr)
        return 1
    acc = find(appname, role, name)
    if acc is None:
        print("not found: %s %r" % (role, name), file=sys.stderr)
        return 1
    if cmd == "click":
        action = acc.queryAction()
        action.doAction(0)
        return 0
    if cmd == "options":
        # A combo box's choices are menu items of its (hidden) menu: listed whether shown or not.
        names = []

        def items(a, depth=0):
            if a is None or depth > 4:
                return
            for i in range(a.childCount):
                c = a.getChildAtIndex(i)
                if c is None:
                    continue
                if c.getRoleName() == "menu item":
                    names.append(c.name)
                items(c, depth + 1)
        items(acc)
        print(json.dumps(names))
        return 0
    if cmd == "extents":
        e = acc.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        print(json.dumps([e.x, e.y, e.width, e.height]))
        return 0
    if cmd == "states":
        print(json.dumps([pyatspi.stateToString(x) for x in acc.getState().getStates()]))
        return 0
    if cmd == "settext":
        acc.queryEditableText().setTextContents(sys.argv[5])
        return 0
    if cmd == "setvalue":
        acc.queryValue().currentValue = float(sys.argv[5])
        return 0
    if cmd == "select":
        # Cells of a column with several renderers sit inside a container cell: climb to the table.
        while acc.parent is not None and acc.parent.getRoleName() == "table cell":
            acc = acc.parent
        parent = acc.parent
        index = acc.getIndexInParent()
        if parent.getRoleName() in ("tree table", "table"):
            table = parent.queryTable()
            table.addRowSelection(table.getRowAtIndex(index))
        else:
            parent.querySelection().selectChild(index)
        return 0
    print("unknown command " + cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
