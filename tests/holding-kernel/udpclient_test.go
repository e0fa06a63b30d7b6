package holdingkernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/tests/internal/clientwire"
)

// clientModeEnv makes a copy of this test binary act as a UDP application instead of running tests, for the
// two ways of sending tests/client has no action for: a connected socket, and several datagrams from one
// unconnected socket.
const clientModeEnv = "TATTLE_HK_UDP_CLIENT"

// udpReport is what the UDP client did: for each datagram sent, whether its echo came back.
type udpReport struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Mark   uint32 `json:"mark"`
	Echoed []bool `json:"echoed"`
}

// udpClient sends to args[0] and waits up to args[1] (a duration) for each echo:
//
//	connected: connect(), then send() one datagram
//	sendto2:   two sendto() from one unconnected socket, the first to args[0], the second to args[2] once the
//	           first's echo came or timed out
func udpClient(mode string, args []string) int {
	var rep udpReport
	err := func() error {
		if len(args) != 3 {
			return errors.New("usage: ADDR:PORT WAIT ADDR2:PORT")
		}
		wait, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		sa, family, err := clientwire.Sockaddr(args[0])
		if err != nil {
			return err
		}
		sa2, _, err := clientwire.Sockaddr(args[2])
		if err != nil {
			return err
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(wait.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		echo := func(msg string) bool {
			buf := make([]byte, 64)
			n, err := unix.Read(fd, buf)
			return err == nil && string(buf[:n]) == msg
		}
		switch mode {
		case "connected":
			if err := unix.Connect(fd, sa); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			if _, err := unix.Write(fd, []byte("one")); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			rep.Echoed = append(rep.Echoed, echo("one"))
		case "sendto2":
			for _, d := range []struct {
				msg string
				to  unix.Sockaddr
			}{{"one", sa}, {"two", sa2}} {
				if err := unix.Sendto(fd, []byte(d.msg), 0, d.to); err != nil {
					return fmt.Errorf("sendto: %w", err)
				}
				rep.Echoed = append(rep.Echoed, echo(d.msg))
			}
		default:
			return fmt.Errorf("unknown mode %q", mode)
		}
		if m, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK); err == nil {
			rep.Mark = uint32(m)
		}
		return nil
	}()
	rep.OK = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	return 0
}
