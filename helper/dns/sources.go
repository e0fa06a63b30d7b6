package dns

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Sources says where the helper can learn names from.
type Sources struct {
	Capture     bool   // the kernel capture of port-53 answers is loaded
	CaptureErr  error  // why not, when it is not
	Resolved    bool   // systemd-resolved's monitor socket is present
	ResolvedErr error  // why not, when it is not
	Socket      string // the monitor socket looked for
}

// CheckSources combines the outcome of loading the kernel capture (captureErr, nil when it loaded) with a
// look for systemd-resolved's monitor socket at resolvedSocket.
func CheckSources(captureErr error, resolvedSocket string) Sources {
	s := Sources{Capture: captureErr == nil, CaptureErr: captureErr, Socket: resolvedSocket}
	fi, err := os.Stat(resolvedSocket)
	switch {
	case err != nil:
		s.ResolvedErr = fmt.Errorf("systemd-resolved's monitor socket %s is absent (resolved is not running)", resolvedSocket)
	case fi.Mode().Type() != fs.ModeSocket:
		s.ResolvedErr = fmt.Errorf("%s is not a socket", resolvedSocket)
	default:
		s.Resolved = true
	}
	return s
}

// Any reports whether at least one source works.
func (s Sources) Any() bool { return s.Capture || s.Resolved }

// Message is a sentence for the log and the UI saying which sources work and, when none does, what that
// means and what to do.
func (s Sources) Message() string {
	switch {
	case s.Capture && s.Resolved:
		return "Host names are learned from DNS answers in the kernel and from systemd-resolved."
	case s.Capture:
		return "Host names are learned from DNS answers in the kernel; systemd-resolved is not running, so programs that resolve through it are not covered if it starts later."
	case s.Resolved:
		return fmt.Sprintf("Host names are learned from systemd-resolved only: the kernel DNS capture is unavailable (%v), so programs that send their own DNS queries show addresses.", s.CaptureErr)
	}
	var why []string
	if s.CaptureErr != nil {
		why = append(why, fmt.Sprintf("the kernel DNS capture could not be loaded (%v)", s.CaptureErr))
	}
	if s.ResolvedErr != nil {
		why = append(why, s.ResolvedErr.Error())
	}
	return "No source of host names is available: " + strings.Join(why, "; ") +
		". Connections show addresses only, and host, domain and wildcard rules match nothing. " +
		"Run tattled as root on a kernel with cgroup BPF support, or start systemd-resolved."
}
