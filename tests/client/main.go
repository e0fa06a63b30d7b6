// Command tattle-testclient is the small network client the enforcement tests run as "an application". The
// tests copy and hard-link this one binary to make several executables. Each run performs one action with raw
// system calls (so the exact errno is seen) and prints one JSON line describing what happened.
//
//	tattle-testclient [-comm NAME] tcp ADDR:PORT          connect, report errno and the socket's SO_MARK
//	tattle-testclient [-comm NAME] udp ADDR:PORT          sendto on an unconnected socket (waits for an echo)
//	tattle-testclient bench COUNT                           loopback TCP connect+close rate to its own listener
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/tests/internal/clientwire"
)

func main() {
	// prctl(PR_SET_NAME) renames the calling thread only: keep every action on that thread.
	runtime.LockOSThread()
	comm := flag.String("comm", "", "rename the process (comm) before acting")
	linger := flag.Duration("linger", 0, "stay alive this long after reporting (an application that keeps running)")
	delay := flag.Duration("delay", 0, "wait this long before acting (so the helper can identify a script first)")
	send := flag.Int64("send", 0, "tcp: after connecting, write this many bytes, end the sending side and read until the peer closes (a transfer)")
	ownMark := flag.Uint("mark", 0, "SO_MARK the application sets on its own socket before connecting (needs CAP_NET_ADMIN)")
	flag.Parse()
	time.Sleep(*delay)
	appMark = uint32(*ownMark)
	if *comm != "" {
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafeBytePtr(*comm)), 0, 0, 0); err != nil {
			fail(fmt.Errorf("set comm: %w", err))
		}
	}
	args := flag.Args()
	if len(args) != 2 {
		fail(errors.New("usage: tattle-testclient [-comm NAME] [-mark N] tcp|udp ADDR:PORT | bench COUNT"))
	}
	var res clientwire.Result
	switch args[0] {
	case "tcp":
		res = dial(unix.SOCK_STREAM, args[1], *send)
	case "udp":
		res = sendUDP(args[1])
	case "bench":
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fail(err)
		}
		res = bench(n)
	default:
		fail(fmt.Errorf("unknown action %q", args[0]))
	}
	res.PID = os.Getpid()
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	time.Sleep(*linger)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tattle-testclient:", err)
	os.Exit(2)
}

func record(res *clientwire.Result, err error) {
	if err == nil {
		res.OK = true
		return
	}
	res.Error = err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		res.Errno = unix.ErrnoName(errno)
	}
}

// appMark is set once from the command line before any socket is made.
var appMark uint32

// setOwnMark gives the socket the mark an application chose itself, as VPN clients do.
func setOwnMark(fd int) {
	if appMark == 0 {
		return
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(appMark)); err != nil {
		fail(fmt.Errorf("set SO_MARK: %w", err))
	}
}

// socketFor opens a socket of typ (with the test's own mark) for addr, which it parses.
func socketFor(typ int, addr string) (fd int, sa unix.Sockaddr) {
	sa, family, err := clientwire.Sockaddr(addr)
	if err != nil {
		fail(err)
	}
	fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	setOwnMark(fd)
	return fd, sa
}

func dial(typ int, addr string, send int64) clientwire.Result {
	fd, sa := socketFor(typ, addr)
	defer unix.Close(fd)
	var res clientwire.Result
	start := time.Now()
	err := unix.Connect(fd, sa)
	res.ElapsedUS = time.Since(start).Microseconds()
	record(&res, err)
	res.Mark = mark(fd)
	if res.OK && send > 0 {
		transfer(fd, send, &res)
	}
	return res
}

// transfer writes n bytes, shuts the sending side and reads until EOF, counting both ways.
func transfer(fd int, n int64, res *clientwire.Result) {
	buf := make([]byte, 64<<10)
	for res.Sent < n {
		w, err := unix.Write(fd, buf[:min(int64(len(buf)), n-res.Sent)])
		if err != nil {
			record(res, fmt.Errorf("write: %w", err))
			res.OK = false
			return
		}
		res.Sent += int64(w)
	}
	unix.Shutdown(fd, unix.SHUT_WR)
	for {
		r, err := unix.Read(fd, buf)
		if err != nil {
			record(res, fmt.Errorf("read: %w", err))
			res.OK = false
			return
		}
		if r == 0 {
			if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				res.TCP = &clientwire.TCPStats{BytesSent: ti.Bytes_sent, BytesRetrans: ti.Bytes_retrans, BytesAcked: ti.Bytes_acked,
					SegsOut: ti.Segs_out, DataSegsOut: ti.Data_segs_out, TotalRetrans: ti.Total_retrans}
			}
			return
		}
		res.Received += int64(r)
	}
}

func sendUDP(addr string) clientwire.Result {
	fd, sa := socketFor(unix.SOCK_DGRAM, addr)
	defer unix.Close(fd)
	var res clientwire.Result
	start := time.Now()
	err := unix.Sendto(fd, []byte("tattle"), 0, sa)
	res.ElapsedUS = time.Since(start).Microseconds()
	record(&res, err)
	res.Mark = mark(fd)
	if err == nil {
		// The test's server echoes; a reply proves the datagram was delivered.
		tv := unix.Timeval{Sec: 2}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		buf := make([]byte, 64)
		if n, _, err := unix.Recvfrom(fd, buf, 0); err == nil && string(buf[:n]) == "tattle" {
			res.Echoed = true
		}
	}
	return res
}

func mark(fd int) uint32 {
	m, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK)
	if err != nil {
		return 0
	}
	return uint32(m)
}

// bench connects to and closes a loopback listener count times and reports connections per second. The
// listener lives in this process so that nothing but the connect path differs between runs.
func bench(count int) clientwire.Result {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sa, _, err := clientwire.Sockaddr(ln.Addr().String())
	if err != nil {
		fail(err)
	}
	var res clientwire.Result
	start := time.Now()
	for i := 0; i < count; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fail(err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			record(&res, err)
			return res
		}
		// RST on close keeps TIME_WAIT from exhausting ports across many runs.
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
	}
	elapsed := time.Since(start)
	res.OK = true
	res.ElapsedUS = elapsed.Microseconds()
	res.Rate = float64(count) / elapsed.Seconds()
	return res
}
