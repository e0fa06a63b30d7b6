package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrNotLoopback refuses an endpoint address other machines (or other network namespaces) could reach.
var ErrNotLoopback = errors.New("the metrics endpoint listens on a loopback address only (127.0.0.0/8 or ::1), or on a unix socket")

// ErrBadListen is a listen setting that is neither an absolute socket path nor an IP address and port.
var ErrBadListen = errors.New("give an absolute unix socket path or a loopback address:port (127.0.0.1:9772, [::1]:9772)")

// Listen is where the endpoint listens: a unix socket (Path) or a loopback TCP address.
type Listen struct {
	Path string
	Addr netip.AddrPort
}

func (l Listen) String() string {
	if l.Path != "" {
		return "unix:" + l.Path
	}
	return l.Addr.String()
}

// ParseListen checks a listen setting: an absolute path is a unix socket, anything else must be a numeric
// loopback address and port (a name is refused: what it resolves to can change).
func ParseListen(s string) (Listen, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/") {
		return Listen{Path: filepath.Clean(s)}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return Listen{}, fmt.Errorf("metrics endpoint %q: %w", s, ErrBadListen)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return Listen{}, fmt.Errorf("metrics endpoint %q: %w", s, ErrNotLoopback)
	}
	if ap.Port() == 0 {
		return Listen{}, fmt.Errorf("metrics endpoint %q: give a port: %w", s, ErrBadListen)
	}
	return Listen{Addr: ap}, nil
}

// SocketMode is the unix socket's mode: root only (connecting needs write permission). Per-application
// traffic and decisions are as private as the Monitor's all-users view.
const SocketMode = 0o600

// Serve opens the endpoint and serves /metrics until ctx ends. It returns once listening failed or the
// server stopped; ready (if not nil) is called once it listens.
func (m *Metrics) Serve(ctx context.Context, l Listen, log *slog.Logger, ready func(net.Addr)) error {
	var ln net.Listener
	var err error
	if l.Path != "" {
		ln, err = listenUnix(l.Path)
	} else {
		ln, err = net.Listen("tcp", l.Addr.String())
	}
	if err != nil {
		return fmt.Errorf("metrics endpoint %s: %w", l, err)
	}
	if l.Path != "" {
		defer os.Remove(l.Path)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if ready != nil {
		ready(ln.Addr())
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return fmt.Errorf("metrics endpoint %s: %w", l, err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	<-errs
	return nil
}

// listenUnix binds the socket with SocketMode before anyone can reach it: it is made in a fresh directory
// only root can enter, given its mode there, then renamed into place (replacing a socket a previous helper
// left behind, but nothing else).
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("%s exists and is not a socket", path)
	}
	private, err := os.MkdirTemp(dir, ".metrics-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // Serve removes the socket at its real path
	if err := os.Chmod(tmp, SocketMode); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
