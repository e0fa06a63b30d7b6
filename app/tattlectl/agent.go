package main

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// startTTYAgent starts polkit's text agent, as systemctl does, so that a change that needs a password can
// ask for it in this terminal when the session has no graphical agent (over ssh, say). It does nothing for
// root (always authorized) or without a terminal on stdin. It registers for this process (polkit asks the
// agent of the caller's process before the session's), so it also works where there are no login sessions.
// The returned function stops it.
func startTTYAgent() (stop func()) {
	stop = func() {}
	if os.Geteuid() == 0 {
		return stop
	}
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return stop
	}
	path, err := exec.LookPath("pkttyagent")
	if err != nil {
		return stop
	}
	r, w, err := os.Pipe()
	if err != nil {
		return stop
	}
	defer r.Close()
	// The agent talks to the user on the controlling terminal itself; its own output would only be
	// registration errors, which the refused call reports better.
	cmd := exec.Command(path, "--notify-fd", "3", "--process", strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return stop
	}
	// The agent closes the notify fd once it is registered (or when it exits).
	ready := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(ready)
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// startProcessTTYAgent starts polkit's text agent for this process only (pkttyagent --process), on the
// controlling terminal: `tattlectl agent` answers questions about system processes as an administrator, and
// the helper then asks polkit to authenticate this agent's connection, which polkit sends to the
// authentication agent of the connection's process. A desktop's graphical agent covers a session; this one
// works over ssh and without a session too. It does nothing for root (no authentication needed) or without a
// controlling terminal.
func startProcessTTYAgent() (stop func()) {
	stop = func() {}
	if os.Geteuid() == 0 {
		return stop
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return stop
	}
	tty.Close()
	path, err := exec.LookPath("pkttyagent")
	if err != nil {
		return stop
	}
	r, w, err := os.Pipe()
	if err != nil {
		return stop
	}
	defer r.Close()
	cmd := exec.Command(path, "--notify-fd", "3", "--process", strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return stop
	}
	ready := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(ready)
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// agentHelper stops the text agent when the command is done with the helper.
type agentHelper struct {
	Helper
	stop func()
}

func (h agentHelper) Close() error {
	err := h.Helper.Close()
	h.stop()
	return err
}
