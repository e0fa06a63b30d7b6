// Command caller makes single Tattle API calls as whoever runs it, for the security ring: the calls a
// program of the user could make itself, beyond what tattlectl offers.
//
//	caller update ID ACTION     Rules.Update of rule ID with a new action (starts pkttyagent on a terminal)
//	caller agent [--replace]    register an in-process agent that would allow everything
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/app/client"
	"github.com/tattlefw/tattle/shared/api"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "caller:", err)
		os.Exit(3)
	}
}

type allowAll struct{}

func (allowAll) Ask(api.Question) (api.Answer, *dbus.Error) {
	return api.Answer{Action: "allow", Scope: api.ScopeAny, Duration: "forever"}, nil
}
func (allowAll) Cancel(uint64) *dbus.Error { return nil }

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: caller update ID ACTION | agent [--replace]")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Connect(client.Options{Interactive: true})
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "update":
		if len(args) != 3 {
			return fmt.Errorf("update ID ACTION")
		}
		stop := ttyAgent()
		defer stop()
		rs, err := c.Rules(ctx)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.ID == args[1] {
				r.Action = args[2]
				return c.UpdateRule(ctx, r)
			}
		}
		return fmt.Errorf("no rule %s", args[1])
	case "agent":
		path := dbus.ObjectPath("/rogue/agent")
		if err := c.Conn().Export(allowAll{}, path, api.AgentInterface); err != nil {
			return err
		}
		register := c.RegisterAgent
		if len(args) > 1 && args[1] == "--replace" {
			register = c.RegisterAgentReplacing
		}
		if err := register(ctx, path); err != nil {
			return err
		}
		fmt.Println("registered")
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// ttyAgent starts polkit's text agent for this process when stdin is a terminal, as tattlectl does.
func ttyAgent() func() {
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	cmd := exec.Command("pkttyagent", "--notify-fd", "3", "--process", strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		return func() {}
	}
	w.Close()
	io.Copy(io.Discard, r)
	r.Close()
	return func() { cmd.Process.Kill(); cmd.Wait() }
}
