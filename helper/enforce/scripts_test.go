package enforce

import (
	"testing"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

func cbytes(dst []int8, s string) uint16 {
	for i := 0; i < len(s); i++ {
		dst[i] = int8(s[i])
	}
	return uint16(len(s))
}

// The kernel's report of an AppImage's exec carries the file's path where an interpreter's carries its
// working directory.
func TestDecodeAppImageExec(t *testing.T) {
	var raw bpf.CgroupExecEvent
	raw.Kind = uint32(identity.AppImageExecKind)
	raw.ExeDev, raw.ExeIno, raw.Tgid = 8<<20|1, 42, 7
	raw.FilenameLen = cbytes(raw.Filename[:], "./Tool.AppImage")
	raw.CwdLen = cbytes(raw.Cwd[:], "/home/u/Apps/Tool.AppImage")
	ev := decodeExec(&raw)
	if !ev.AppImage || ev.File != "/home/u/Apps/Tool.AppImage" || ev.Cwd != "" || ev.Interpreter != identity.FromKernel(8<<20|1, 42) {
		t.Errorf("AppImage exec decoded as %+v", ev)
	}
	raw.Kind = uint32(identity.Python)
	if ev := decodeExec(&raw); ev.AppImage || ev.File != "" || ev.Cwd != "/home/u/Apps/Tool.AppImage" {
		t.Errorf("an interpreter's exec decoded as %+v", ev)
	}
	raw.Kind = uint32(identity.AppImageExecKind)
	raw.CwdTruncated = 1
	if ev := decodeExec(&raw); !ev.AppImage || ev.File != "" {
		t.Errorf("a cut-short path is no path: %+v", ev)
	}
}

// Every kind of interpreter is below the AppImage report's kind.
func TestAppImageKindIsNoInterpreter(t *testing.T) {
	for _, in := range identity.Interpreters() {
		if in.Kind == identity.AppImageExecKind {
			t.Errorf("%s has the AppImage exec kind", in.Name)
		}
	}
}
