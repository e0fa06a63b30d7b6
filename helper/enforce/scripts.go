package enforce

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/tattlefw/tattle/bpf"
	"github.com/tattlefw/tattle/shared/identity"
)

// Scripts: the kernel identifies an interpreter's process by its script (see bpf/identity.h, "Scripts"). The
// helper fills the interpreter table, is told about every exec of an interpreter on a script, and writes the
// identity it resolved for it.

// SetInterpreters replaces the kernel's interpreter table: the executables whose processes are identified by
// their script, and the options that, given first, mean there is no script.
func (e *Enforcer) SetInterpreters(exes map[identity.Executable]identity.InterpreterKind) error {
	want := map[bpf.CgroupInterpKey]bpf.CgroupInterp{}
	for exe, kind := range exes {
		want[bpf.CgroupInterpKey{Ino: exe.Ino, Dev: exe.KernelDev()}] = bpf.CgroupInterp{Kind: uint32(kind)}
	}
	opts := map[bpf.CgroupInterpOptKey]uint8{}
	for _, in := range identity.Interpreters() {
		for _, o := range in.KernelNoScriptOptions() {
			k := bpf.CgroupInterpOptKey{Kind: uint32(in.Kind)}
			for i := 0; i < len(o); i++ {
				k.Opt[i] = int8(o[i])
			}
			opts[k] = 1
		}
	}
	// New entries first, then stale ones out: an interpreter is never missing in between.
	for k, v := range opts {
		if err := e.maps.InterpOpts.Put(&k, &v); err != nil {
			return fmt.Errorf("install interpreter option: %w", err)
		}
	}
	for k, v := range want {
		if err := e.maps.Interpreters.Put(&k, &v); err != nil {
			return fmt.Errorf("install interpreter %d/%d: %w", k.Dev, k.Ino, err)
		}
	}
	var k bpf.CgroupInterpKey
	var v bpf.CgroupInterp
	var stale []bpf.CgroupInterpKey
	it := e.maps.Interpreters.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read interpreters: %w", err)
	}
	for i := range stale {
		if err := e.maps.Interpreters.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove interpreter: %w", err)
		}
	}
	return nil
}

// ViaState says where the kernel stands with a process's script.
type ViaState uint32

const (
	ViaNone     ViaState = 0 // the process runs no interpreter (or the kernel has no entry for it)
	ViaPending  ViaState = 1 // the helper has not resolved its script yet
	ViaResolved ViaState = 2 // the identity is set
)

// Via is the kernel's entry for an interpreter's process.
type Via struct {
	App    identity.Executable // what the connect hooks identify the process as
	State  ViaState
	Cookie uint64 // the exec the entry comes from
}

// ViaOf returns the kernel's entry for a process.
func (e *Enforcer) ViaOf(tgid uint32) (Via, bool) {
	var v bpf.CgroupVia
	if err := e.maps.Vias.Lookup(&tgid, &v); err != nil {
		return Via{}, false
	}
	return Via{App: identity.FromKernel(v.Dev, v.Ino), State: ViaState(v.State), Cookie: v.Cookie}, true
}

// ResolveVia sets the identity of every process that still waits for the exec with this cookie (the process
// and the children it forked meanwhile). It returns how many entries it set.
func (e *Enforcer) ResolveVia(cookie uint64, app identity.Executable) (int, error) {
	var tgid uint32
	var v bpf.CgroupVia
	var hits []uint32
	it := e.maps.Vias.Iterate()
	for it.Next(&tgid, &v) {
		if v.Cookie == cookie && ViaState(v.State) == ViaPending {
			hits = append(hits, tgid)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read script entries: %w", err)
	}
	n := 0
	for _, t := range hits {
		if err := e.SetVia(t, cookie, app); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// SetVia sets one process's identity, for processes the exec hook did not see (started before Tattle).
func (e *Enforcer) SetVia(tgid uint32, cookie uint64, app identity.Executable) error {
	v := bpf.CgroupVia{Ino: app.Ino, Dev: app.KernelDev(), State: uint32(ViaResolved), Cookie: cookie}
	if err := e.maps.Vias.Put(&tgid, &v); err != nil {
		return fmt.Errorf("set the script identity of pid %d: %w", tgid, err)
	}
	return nil
}

// PendingVias lists the processes whose script is not resolved, by tgid, with their cookies.
func (e *Enforcer) PendingVias() (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	var tgid uint32
	var v bpf.CgroupVia
	it := e.maps.Vias.Iterate()
	for it.Next(&tgid, &v) {
		if ViaState(v.State) == ViaPending {
			out[tgid] = v.Cookie
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read script entries: %w", err)
	}
	return out, nil
}

// ExecEvent is an interpreter's exec on a script, as the kernel saw it in the new process's context.
type ExecEvent struct {
	Cookie        uint64
	Interpreter   identity.Executable
	Kind          identity.InterpreterKind
	TGID, UID     uint32
	Filename      string   // the path exec was called with
	Shebang       bool     // the kernel ran the interpreter for the script at Filename (#!)
	Args          []string // argv, argv[0] included
	ArgsTruncated bool
	Cwd           string // "" when the kernel could not read it whole
	// AppImage: the exec of an AppImage file (Kind identity.AppImageExecKind), which the kernel identifies
	// the process by (identity.AppImageOf(Interpreter)); File is that file's path in the process's mount
	// namespace, read from the kernel's dentries ("" when cut short).
	AppImage bool
	File     string
}

// ExecReader delivers exec events. One reader per system.
type ExecReader struct{ rd *ringbuf.Reader }

// ExecEvents opens the exec event stream.
func (e *Enforcer) ExecEvents() (*ExecReader, error) {
	rd, err := ringbuf.NewReader(e.maps.ExecEvents)
	if err != nil {
		return nil, fmt.Errorf("open exec ring buffer: %w", err)
	}
	return &ExecReader{rd: rd}, nil
}

// Read blocks for the next exec event; ErrClosed after Close.
func (r *ExecReader) Read() (ExecEvent, error) {
	raw, err := readRecord[bpf.CgroupExecEvent](r.rd, "exec event")
	if err != nil {
		return ExecEvent{}, err
	}
	return decodeExec(raw), nil
}

// Close unblocks Read.
func (r *ExecReader) Close() error { return r.rd.Close() }

func decodeExec(raw *bpf.CgroupExecEvent) ExecEvent {
	ev := ExecEvent{
		Cookie:        raw.Cookie,
		Interpreter:   identity.FromKernel(raw.ExeDev, raw.ExeIno),
		Kind:          identity.InterpreterKind(raw.Kind),
		TGID:          raw.Tgid,
		UID:           raw.Uid,
		Shebang:       raw.Shebang != 0,
		ArgsTruncated: raw.ArgsTruncated != 0,
	}
	if n := int(raw.FilenameLen); n <= len(raw.Filename) {
		ev.Filename = bytesOf(raw.Filename[:n])
	}
	if n := int(raw.ArgsLen); n <= len(raw.Args) && n > 0 {
		ev.Args = strings.Split(strings.TrimSuffix(bytesOf(raw.Args[:n]), "\x00"), "\x00")
	}
	if n := int(raw.CwdLen); n > 0 && n <= len(raw.Cwd) && raw.CwdTruncated == 0 {
		ev.Cwd = bytesOf(raw.Cwd[:n])
	}
	if ev.Kind == identity.AppImageExecKind {
		ev.AppImage, ev.File, ev.Cwd = true, ev.Cwd, ""
	}
	return ev
}

func bytesOf(b []int8) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = byte(c)
	}
	return string(out)
}

// AppImages: the kernel identifies a process started from an AppImage file by that file (bpf/identity.h,
// "AppImages"), unless the AppImage was exec'd with an environment variable of the list installed here.

// maxEnvName is the longest variable name the kernel's list holds (ENV_NAME_SIZE - 1, less one: a name the
// kernel reads as long as the key is taken for a longer name).
const maxEnvName = 30

// SetAppImageRefusedEnv installs the environment variables that refuse an AppImage its identity: names, and
// prefixes of exactly three bytes standing for every name they begin ("LD_"). Until it is called the kernel
// gives no AppImage its identity.
func (e *Enforcer) SetAppImageRefusedEnv(names, prefixes []string) error {
	put := func(name string) error {
		var k bpf.CgroupEnvName
		for i := 0; i < len(name); i++ {
			k.Name[i] = int8(name[i])
		}
		one := uint8(1)
		if err := e.maps.AppImageEnv.Put(&k, &one); err != nil {
			return fmt.Errorf("install refused AppImage variable %q: %w", name, err)
		}
		return nil
	}
	for _, n := range names {
		if n == "" || len(n) > maxEnvName || len(n) == 3 || strings.ContainsAny(n, "=\x00") {
			return fmt.Errorf("refused AppImage variable %q: not a name the kernel can match exactly", n)
		}
		if err := put(n); err != nil {
			return err
		}
	}
	for _, p := range prefixes {
		if len(p) != 3 || strings.ContainsAny(p, "=\x00") {
			return fmt.Errorf("refused AppImage variable prefix %q: the kernel matches prefixes of three bytes", p)
		}
		if err := put(p); err != nil {
			return err
		}
	}
	return put("") // the list is complete
}
