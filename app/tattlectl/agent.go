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
// root (always authorized) or without a terminal on stdin. The returned function stops it.
func startTTYAgent() (stop func()) {
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	return startPkttyagent()
}

// startProcessTTYAgent starts polkit's text agent on the controlling terminal for `tattlectl agent`, which
// answers questions about system processes as an administrator: the helper then asks polkit to authenticate
// this agent's connection, which polkit sends to the authentication agent of the connection's process. It
// does nothing for root or without a controlling terminal (an agent fed from a pipe still has one).
func startProcessTTYAgent() (stop func()) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return func() {}
	}
	tty.Close()
	return startPkttyagent()
}

// startPkttyagent runs pkttyagent for this process only (--process: polkit asks the agent of the caller's
// process before the session's, so it works without login sessions too) and waits until it has registered.
// A desktop's graphical agent covers a session; this one works over ssh. Nothing for root, who is always
// authorized, or when pkttyagent is missing (the refused call then says what is needed).
func startPkttyagent() (stop func()) {
	stop = func() {}
	if os.Geteuid() == 0 {
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
