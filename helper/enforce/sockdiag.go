package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel's list of sockets, read through sock_diag (NETLINK_SOCK_DIAG, inet_diag): a traffic record whose
// socket is no longer listed is folded (FlowTraffic). A dump lists the sockets of the helper's network
// namespace only.

const (
	// struct inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport, dport, src[16],
	// dst[16], if, cookie[2]), then expires, rqueue, wqueue, uid, inode.
	diagMsgLen    = 72
	diagCookieOff = 4 + 2 + 2 + 16 + 16 + 4

	// TCP states asked for: all but LISTEN, TIME_WAIT and NEW_SYN_RECV. A socket in TIME_WAIT sends no
	// payload any more: its record may be folded.
	tcpDiagStates = 0xfff &^ (1<<unix.BPF_TCP_LISTEN | 1<<unix.BPF_TCP_TIME_WAIT | 1<<unix.BPF_TCP_NEW_SYN_RECV)
)

// dumpSockets lists the cookies of the sockets of proto (IPPROTO_TCP or IPPROTO_UDP), both families.
func dumpSockets(proto uint8, fn func(cookie uint64)) error {
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

func dumpFamily(fd int, buf []byte, family, proto uint8, fn func(uint64)) error {
	// nlmsghdr + struct inet_diag_req_v2 (family, protocol, ext, pad, states, inet_diag_sockid).
	req := make([]byte, unix.NLMSG_HDRLEN+56)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := req[unix.NLMSG_HDRLEN:]
	r[0], r[1] = family, proto
	states := uint32(0xfff)
	if proto == unix.IPPROTO_TCP {
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
				if len(m.Data) >= diagMsgLen {
					fn(binary.NativeEndian.Uint64(m.Data[diagCookieOff:]))
				}
			}
		}
	}
}
