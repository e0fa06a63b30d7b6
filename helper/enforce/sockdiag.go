package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"

	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel's own per-socket counters, read through sock_diag (NETLINK_SOCK_DIAG, inet_diag): a live TCP
// socket's bytes come from its tcp_info, so nothing in Tattle runs per packet to count them. A dump sees the
// sockets of the helper's network namespace only.

const (
	inetDiagInfo = 2 // INET_DIAG_INFO: struct tcp_info

	// struct inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport, dport, src[16],
	// dst[16], if, cookie[2]), then expires, rqueue, wqueue, uid, inode.
	diagMsgLen    = 72
	diagCookieOff = 4 + 2 + 2 + 16 + 16 + 4

	// Offsets in struct tcp_info (linux/tcp.h), present since Linux 4.2.
	tcpiBytesAcked    = 120
	tcpiBytesReceived = 128
	tcpiSegsOut       = 136
	tcpiSegsIn        = 140
	tcpiLenNeeded     = 144

	// States asked for: all but LISTEN, TIME_WAIT (no tcp_info) and NEW_SYN_RECV (request sockets).
	tcpDiagStates = 0xfff &^ (1<<unix.BPF_TCP_LISTEN | 1<<unix.BPF_TCP_TIME_WAIT | 1<<unix.BPF_TCP_NEW_SYN_RECV)
)

// diagSocket is one socket a dump listed: its cookie and, for TCP, its counters.
type diagSocket struct {
	cookie  uint64
	traffic Traffic
	hasInfo bool
}

// dumpSockets lists the sockets of proto (IPPROTO_TCP or IPPROTO_UDP), both families, calling fn for each.
func dumpSockets(proto uint8, fn func(diagSocket)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind sock_diag: %w", err)
	}
	buf := make([]byte, 1<<16)
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpFamily(fd, buf, family, proto, fn); err != nil {
			return err
		}
	}
	return nil
}

func dumpFamily(fd int, buf []byte, family, proto uint8, fn func(diagSocket)) error {
	// nlmsghdr + struct inet_diag_req_v2 (family, protocol, ext, pad, states, inet_diag_sockid).
	req := make([]byte, unix.NLMSG_HDRLEN+56)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := req[unix.NLMSG_HDRLEN:]
	r[0], r[1] = family, proto
	states := uint32(0xfff)
	if proto == unix.IPPROTO_TCP {
		r[2] = 1 << (inetDiagInfo - 1)
		states = tcpDiagStates
	}
	binary.NativeEndian.PutUint32(r[4:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("sock_diag dump: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return fmt.Errorf("sock_diag dump: %w", unix.Errno(-e))
					}
				}
				return nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if s, ok := parseDiagMsg(m.Data); ok {
					fn(s)
				}
			}
		}
	}
}

func parseDiagMsg(d []byte) (diagSocket, bool) {
	if len(d) < diagMsgLen {
		return diagSocket{}, false
	}
	s := diagSocket{cookie: binary.NativeEndian.Uint64(d[diagCookieOff:])}
	for a := d[diagMsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			break
		}
		if typ == inetDiagInfo && l-4 >= tcpiLenNeeded {
			info := a[4:l]
			acked := binary.NativeEndian.Uint64(info[tcpiBytesAcked:])
			if acked > 0 {
				acked-- // the SYN, as the close-time count (bpf/traffic.c)
			}
			s.traffic = Traffic{
				TxBytes:   acked,
				RxBytes:   binary.NativeEndian.Uint64(info[tcpiBytesReceived:]),
				TxPackets: uint64(binary.NativeEndian.Uint32(info[tcpiSegsOut:])),
				RxPackets: uint64(binary.NativeEndian.Uint32(info[tcpiSegsIn:])),
			}
			s.hasInfo = true
		}
		step := (l + 3) &^ 3
		if step > len(a) {
			break
		}
		a = a[step:]
	}
	return s, true
}
