package service

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/tattlefw/tattle/app/tattle/agent"
	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/testrig"
)

// introspectionFile is the shipped D-Bus contract (installed under share/dbus-1/interfaces).
const introspectionFile = "data/io.github.tattlefw.Tattle1.xml"

// updateIntrospection, when set, makes the test rewrite the shipped file from what the helper serves.
const updateIntrospection = "TATTLE_UPDATE_INTROSPECTION"

const regenerateHint = "after changing the API on purpose, regenerate the file (as root):\n" +
	"    TATTLE_UPDATE_INTROSPECTION=1 flock /tmp/tattle-ring.lock go test -count=1 -run TestIntrospectionMatchesShippedXML ./tests/service/\n" +
	"and commit " + introspectionFile

// TestIntrospectionMatchesShippedXML asks a real tattled (activated on a private system bus) and the app's
// agent object for their introspection data and compares every Tattle interface, method, signal and property
// with data/io.github.tattlefw.Tattle1.xml, so the shipped contract cannot drift from what is served.
func TestIntrospectionMatchesShippedXML(t *testing.T) {
	b := startBus(t)
	conn := b.connect(t)
	served := introspectNode(t, conn, api.BusName, api.ObjectPath)

	// The Agent interface is the app's half of the contract: export the GTK app's agent on a bus of its own
	// (the system policy lets only the Agent interface through to it) and ask it the same way.
	policy := filepath.Join(t.TempDir(), "introspect.conf")
	if err := os.WriteFile(policy, []byte(`<busconfig><policy user="root">`+
		`<allow send_interface="org.freedesktop.DBus.Introspectable"/></policy></busconfig>`), 0o644); err != nil {
		t.Fatal(err)
	}
	agentBus := testrig.StartSystemBus(t, testrig.BusOptions{Policies: []string{policy}})
	agentConn, err := dbus.Connect(agentBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentConn.Close() })
	askConn, err := dbus.Connect(agentBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { askConn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ag := agent.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	if err := ag.Export(agentConn); err != nil {
		t.Fatalf("export the app's agent: %v", err)
	}
	agentNode := introspectNode(t, askConn, agentConn.Names()[0], agent.Path)
	served.Interfaces = append(served.Interfaces, agentNode.Interfaces...)

	got := renderContract(served)
	path := filepath.Join(testrig.RepoRoot(t), introspectionFile)
	if os.Getenv(updateIntrospection) != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the shipped contract: %v\n%s", err, regenerateHint)
	}
	var shipped introspect.Node
	if err := xml.Unmarshal(data, &shipped); err != nil {
		t.Fatalf("%s is not introspection XML: %v\n%s", introspectionFile, err, regenerateHint)
	}
	if diffs := diffContract(members(&shipped), members(served)); len(diffs) > 0 {
		t.Fatalf("the served D-Bus API differs from %s:\n  %s\n%s", introspectionFile, strings.Join(diffs, "\n  "),
			regenerateHint)
	}
	if string(data) != got {
		t.Fatalf("%s has every member but is not in its generated form (order, layout)\n%s", introspectionFile,
			regenerateHint)
	}
	if n := len(members(served)); n < 20 {
		t.Fatalf("only %d members served; the helper's interfaces are missing", n)
	}
}

func introspectNode(t *testing.T, conn *dbus.Conn, dest string, path dbus.ObjectPath) *introspect.Node {
	t.Helper()
	var s string
	if err := conn.Object(dest, path).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&s); err != nil {
		t.Fatalf("introspect %s %s: %v", dest, path, err)
	}
	var n introspect.Node
	if err := xml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("introspection of %s %s: %v", dest, path, err)
	}
	return &n
}

// tattleInterfaces keeps the node's own interfaces (the standard org.freedesktop.DBus ones are served too, but
// they are the bus's contract, not Tattle's), sorted, each with its members sorted.
func tattleInterfaces(n *introspect.Node) []introspect.Interface {
	var out []introspect.Interface
	for _, in := range n.Interfaces {
		if !strings.HasPrefix(in.Name, api.BusName+".") {
			continue
		}
		in.Methods = slices.Clone(in.Methods)
		in.Signals = slices.Clone(in.Signals)
		in.Properties = slices.Clone(in.Properties)
		slices.SortFunc(in.Methods, func(a, b introspect.Method) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(in.Signals, func(a, b introspect.Signal) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(in.Properties, func(a, b introspect.Property) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b introspect.Interface) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// members describes each member in one line, keyed by interface.member.
func members(n *introspect.Node) map[string]string {
	m := map[string]string{}
	for _, in := range tattleInterfaces(n) {
		for _, me := range in.Methods {
			m[in.Name+"."+me.Name] = "method(" + args(me.Args, true) + ")" + annotations(me.Annotations)
		}
		for _, si := range in.Signals {
			m[in.Name+"."+si.Name] = "signal(" + args(si.Args, false) + ")" + annotations(si.Annotations)
		}
		for _, p := range in.Properties {
			m[in.Name+"."+p.Name] = "property " + p.Type + " " + p.Access + annotations(p.Annotations)
		}
	}
	return m
}

func args(as []introspect.Arg, directions bool) string {
	var parts []string
	for _, a := range as {
		s := a.Type
		if directions {
			s = a.Direction + " " + s
		}
		if a.Name != "" {
			s += " " + a.Name
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func annotations(as []introspect.Annotation) string {
	s := ""
	for _, a := range as {
		s += fmt.Sprintf(" [%s=%s]", a.Name, a.Value)
	}
	return s
}

// diffContract names each member that is only in one of the two, or differs between them.
func diffContract(shipped, served map[string]string) []string {
	var keys []string
	for k := range served {
		keys = append(keys, k)
	}
	for k := range shipped {
		if _, ok := served[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		sv, inServed := served[k]
		sh, inShipped := shipped[k]
		switch {
		case !inShipped:
			out = append(out, fmt.Sprintf("%s: served as %s, missing from the file", k, sv))
		case !inServed:
			out = append(out, fmt.Sprintf("%s: in the file as %s, no longer served", k, sh))
		case sv != sh:
			out = append(out, fmt.Sprintf("%s: served as %s, the file says %s", k, sv, sh))
		}
	}
	return out
}

// renderContract writes the interfaces in the shipped file's one canonical form.
func renderContract(n *introspect.Node) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"` + "\n")
	b.WriteString(` "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">` + "\n")
	b.WriteString("<!-- Tattle's D-Bus contract (shared/api): tattled serves the first interfaces on " +
		string(api.ObjectPath) + " of\n     the system bus name " + api.BusName +
		"; an agent (the app, tattlectl agent) exports " + api.AgentInterface + ".\n" +
		"     Generated from what they serve; tests/service TestIntrospectionMatchesShippedXML keeps it current:\n" +
		"     TATTLE_UPDATE_INTROSPECTION=1 flock /tmp/tattle-ring.lock go test -count=1 -run TestIntrospectionMatchesShippedXML ./tests/service/ -->\n")
	b.WriteString("<node>\n")
	esc := func(s string) string {
		var w strings.Builder
		xml.EscapeText(&w, []byte(s))
		return w.String()
	}
	writeAnn := func(indent string, as []introspect.Annotation) {
		for _, a := range as {
			fmt.Fprintf(&b, "%s<annotation name=%q value=%q/>\n", indent, esc(a.Name), esc(a.Value))
		}
	}
	writeArgs := func(as []introspect.Arg, directions bool) {
		for _, a := range as {
			b.WriteString("      <arg")
			if a.Name != "" {
				fmt.Fprintf(&b, " name=%q", esc(a.Name))
			}
			fmt.Fprintf(&b, " type=%q", esc(a.Type))
			if directions {
				fmt.Fprintf(&b, " direction=%q", a.Direction)
			}
			b.WriteString("/>\n")
		}
	}
	// A method or signal: an empty element when it has neither arguments nor annotations.
	writeMember := func(kind, name string, args []introspect.Arg, directions bool, anns []introspect.Annotation) {
		if len(args) == 0 && len(anns) == 0 {
			fmt.Fprintf(&b, "    <%s name=%q/>\n", kind, name)
			return
		}
		fmt.Fprintf(&b, "    <%s name=%q>\n", kind, name)
		writeArgs(args, directions)
		writeAnn("      ", anns)
		fmt.Fprintf(&b, "    </%s>\n", kind)
	}
	for _, in := range tattleInterfaces(n) {
		fmt.Fprintf(&b, "  <interface name=%q>\n", in.Name)
		for _, m := range in.Methods {
			writeMember("method", m.Name, m.Args, true, m.Annotations)
		}
		for _, s := range in.Signals {
			writeMember("signal", s.Name, s.Args, false, s.Annotations)
		}
		for _, p := range in.Properties {
			if len(p.Annotations) == 0 {
				fmt.Fprintf(&b, "    <property name=%q type=%q access=%q/>\n", p.Name, p.Type, p.Access)
				continue
			}
			fmt.Fprintf(&b, "    <property name=%q type=%q access=%q>\n", p.Name, p.Type, p.Access)
			writeAnn("      ", p.Annotations)
			b.WriteString("    </property>\n")
		}
		b.WriteString("  </interface>\n")
	}
	b.WriteString("</node>\n")
	return b.String()
}
