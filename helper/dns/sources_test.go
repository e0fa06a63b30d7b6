package dns

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestSources(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "io.systemd.Resolve.Monitor")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	loadErr := errors.New("operation not permitted")

	s := CheckSources(nil, sock)
	if !s.Capture || !s.Resolved || !s.Any() || !strings.Contains(s.Message(), "kernel and from systemd-resolved") {
		t.Errorf("both: %+v %q", s, s.Message())
	}
	s = CheckSources(loadErr, sock)
	if s.Capture || !s.Resolved || !strings.Contains(s.Message(), "operation not permitted") {
		t.Errorf("resolved only: %q", s.Message())
	}
	s = CheckSources(nil, filepath.Join(dir, "absent"))
	if !s.Capture || s.Resolved || !s.Any() {
		t.Errorf("capture only: %+v", s)
	}
	s = CheckSources(loadErr, filepath.Join(dir, "absent"))
	msg := s.Message()
	if s.Any() || !strings.Contains(msg, "No source of host names") || !strings.Contains(msg, "operation not permitted") ||
		!strings.Contains(msg, "absent") || !strings.Contains(msg, "rules match nothing") {
		t.Errorf("neither: %q", msg)
	}
	if s := CheckSources(loadErr, dir); s.Resolved {
		t.Errorf("a directory counted as the monitor socket")
	}
}
