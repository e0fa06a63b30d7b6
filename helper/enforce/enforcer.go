package enforce

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/tattlefw/tattle/bpf"
)

// DefaultPinDir is where Tattle pins its programs, links and maps.
const DefaultPinDir = "/sys/fs/bpf/tattle"

// layoutVersion changes whenever the pinned maps' meaning changes in a way a newer helper cannot reuse.
const layoutVersion = 5

// Options configure Open.
type Options struct {
	Backend    Backend // BackendAuto when empty
	PinDir     string  // DefaultPinDir when empty
	CgroupRoot string  // found in /proc/self/mountinfo when empty
	SecurityFS string  // DefaultSecurityFS when empty
	Marks      Marks   // DefaultMarks when zero
	Logger     *slog.Logger
	// TrafficAttach chooses how the traffic counters are attached: tcx where the kernel has it, else clsact
	// (TrafficAuto); TrafficClsact forces legacy TC filters (tests run that path on kernels with tcx).
	TrafficAttach TrafficAttach
}

func (o *Options) fill() {
	if o.Backend == "" {
		o.Backend = BackendAuto
	}
	if o.PinDir == "" {
		o.PinDir = DefaultPinDir
	}
	if filepath.IsAbs(o.PinDir) {
		o.PinDir = filepath.Clean(o.PinDir)
	}
	if o.SecurityFS == "" {
		o.SecurityFS = DefaultSecurityFS
	}
	if o.Marks == (Marks{}) {
		o.Marks = DefaultMarks
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// ErrBadOptions is what Open returns for options it cannot use, before anything is attached or pinned.
var ErrBadOptions = errors.New("invalid enforcer options")

// validate checks every option before Open touches the kernel: a typo must not attach anything, nor
// quietly mean a default (an unknown traffic mode once behaved as auto).
func (o *Options) validate() error {
	if _, err := ParseBackend(string(o.Backend)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	switch o.TrafficAttach {
	case TrafficAuto, TrafficClsact:
	default:
		return fmt.Errorf("%w: unknown traffic attach mode %q: use %q (auto) or %q", ErrBadOptions, o.TrafficAttach, TrafficAuto, TrafficClsact)
	}
	if !filepath.IsAbs(o.PinDir) || filepath.Dir(filepath.Clean(o.PinDir)) == "/" {
		return fmt.Errorf("%w: pin directory %q must be an absolute path below a bpffs mount (like %s)", ErrBadOptions, o.PinDir, DefaultPinDir)
	}
	if o.CgroupRoot != "" && !filepath.IsAbs(o.CgroupRoot) {
		return fmt.Errorf("%w: cgroup root %q must be an absolute path", ErrBadOptions, o.CgroupRoot)
	}
	if err := o.Marks.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	return nil
}

// maps are the kernel maps shared by both backends (bpf/maps.h, identity.h and process.h, built into both
// objects). Go wants literal tags, so the tags repeat the names that named takes from the C through bpf2go;
// TestMapNamesAgree checks that they match and that both objects declare every one.
type maps struct {
	Config     *ebpf.Map `ebpf:"config"`
	ScopeRules *ebpf.Map `ebpf:"scope_rules"`
	DestRules  *ebpf.Map `ebpf:"dest_rules"`
	Flows      *ebpf.Map `ebpf:"flows"`
	Events     *ebpf.Map `ebpf:"events"`
	Stats      *ebpf.Map `ebpf:"stats"`
	SockStates *ebpf.Map `ebpf:"sock_states"`
	DNSSocks   *ebpf.Map `ebpf:"dns_socks"`

	Interpreters *ebpf.Map `ebpf:"interpreters"`
	InterpOpts   *ebpf.Map `ebpf:"interp_opts"`
	Vias         *ebpf.Map `ebpf:"vias"`
	ExecEvents   *ebpf.Map `ebpf:"exec_events"`
	AppImageEnv  *ebpf.Map `ebpf:"appimage_env"`
}

// namedMap is one of the shared maps with its name in the objects (and under the pin directory).
type namedMap struct {
	name string
	m    **ebpf.Map
}

// named lists the shared maps by name: the one list that pinning, reattaching and closing go by. The
// names are bpf2go's constants for the C maps: the cgroup object's, which the lsm object shares.
func (m *maps) named() []namedMap {
	return []namedMap{
		{bpf.CgroupMapConfig, &m.Config}, {bpf.CgroupMapScopeRules, &m.ScopeRules},
		{bpf.CgroupMapDestRules, &m.DestRules}, {bpf.CgroupMapFlows, &m.Flows}, {bpf.CgroupMapEvents, &m.Events},
		{bpf.CgroupMapStats, &m.Stats}, {bpf.CgroupMapSockStates, &m.SockStates}, {bpf.CgroupMapDnsSocks, &m.DNSSocks},
		{bpf.CgroupMapInterpreters, &m.Interpreters}, {bpf.CgroupMapInterpOpts, &m.InterpOpts},
		{bpf.CgroupMapVias, &m.Vias}, {bpf.CgroupMapExecEvents, &m.ExecEvents},
		{bpf.CgroupMapAppimageEnv, &m.AppImageEnv},
	}
}

func (m *maps) close() {
	for _, nm := range m.named() {
		if *nm.m != nil {
			(*nm.m).Close()
		}
	}
}

// pinnedMapNames are the maps the backend's object pins by name: the shared maps and the traffic records.
func pinnedMapNames() []string {
	var names []string
	for _, nm := range (&maps{}).named() {
		names = append(names, nm.name)
	}
	return append(names, trafficMapName)
}

// Enforcer is a handle on Tattle's kernel state. Closing it leaves enforcement in place (everything is
// pinned); Uninstall removes it.
type Enforcer struct {
	backend Backend
	pinDir  string
	reused  bool
	maps    maps
	links   map[string]link.Link
	log     *slog.Logger

	mu sync.Mutex // serialises rule changes (dest counts and generation bumps)
	// destCount counts destination rules per scope, so a scope's has_dest flag is cleared with its last rule.
	destCount map[scopeKey]int
	marks     Marks

	traffic       trafficState
	trafficAttach TrafficAttach
}

// Backend reports which backend enforces.
func (e *Enforcer) Backend() Backend { return e.backend }

// Reused reports whether Open found the programs already pinned and attached, and reused them.
func (e *Enforcer) Reused() bool { return e.reused }

// PinDir is where the kernel objects are pinned.
func (e *Enforcer) PinDir() string { return e.pinDir }

// Close releases the handle. Enforcement continues through the pinned links.
func (e *Enforcer) Close() error {
	for _, l := range e.links {
		l.Close()
	}
	e.maps.close()
	e.closeTraffic()
	return nil
}

// backendProgram describes one program of a backend's object and where it attaches.
type backendObject struct {
	load     func() (*ebpf.CollectionSpec, error)
	hash     [32]byte
	programs []string
}

func objectFor(b Backend) (backendObject, error) {
	switch b {
	case BackendCgroup:
		return backendObject{load: bpf.LoadCgroup, hash: withTraffic(bpf.CgroupObjectHash()), programs: []string{
			bpf.CgroupProgTattleConnect4, bpf.CgroupProgTattleConnect6,
			bpf.CgroupProgTattleSendmsg4, bpf.CgroupProgTattleSendmsg6,
			bpf.CgroupProgTattleExec, bpf.CgroupProgTattleFork,
		}}, nil
	case BackendLSM:
		return backendObject{load: bpf.LoadLsm, hash: withTraffic(bpf.LsmObjectHash()), programs: []string{
			bpf.LsmProgTattleLsmConnect, bpf.LsmProgTattleLsmSendmsg,
			bpf.LsmProgTattleMarkConnect4, bpf.LsmProgTattleMarkConnect6,
			bpf.LsmProgTattleMarkSendmsg4, bpf.LsmProgTattleMarkSendmsg6,
			bpf.LsmProgTattleExec, bpf.LsmProgTattleFork,
		}}, nil
	}
	return backendObject{}, fmt.Errorf("no kernel object for backend %q", b)
}

// Open attaches Tattle's programs, or reuses the ones already pinned by an earlier run of the same build.
// With BackendAuto, a kernel that lists BPF LSM but refuses to load LSM programs (some lockdown and
// virtualised setups) falls back to the cgroup backend, and says so.
func Open(opts Options) (*Enforcer, error) {
	opts.fill()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Backend == BackendAuto {
		// A running system keeps the backend it has: auto must not swap a working set of programs for
		// another (after a fallback, for example).
		if have, ok := readPinMeta(opts.PinDir); ok {
			pinned := backendName(have.Backend)
			if obj, err := objectFor(pinned); err == nil && obj.hash == have.Hash && have.Layout == layoutVersion {
				if e, err := open(opts, pinned); err == nil {
					return e, nil
				}
			}
		}
	}
	backend, err := Resolve(opts.Backend, opts.SecurityFS)
	if err != nil {
		return nil, fmt.Errorf("choose backend: %w", err)
	}
	e, err := open(opts, backend)
	if err != nil && opts.Backend == BackendAuto && backend == BackendLSM {
		opts.Logger.Warn("BPF LSM is active but its programs could not be attached; using the cgroup backend",
			"error", err)
		return open(opts, BackendCgroup)
	}
	return e, err
}

func open(opts Options, backend Backend) (*Enforcer, error) {
	obj, err := objectFor(backend)
	if err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise memlock limit: %w", err)
	}
	if err := ensureBPFFS(filepath.Dir(opts.PinDir)); err != nil {
		return nil, err
	}

	e := &Enforcer{backend: backend, pinDir: opts.PinDir, links: map[string]link.Link{}, log: opts.Logger, trafficAttach: opts.TrafficAttach}
	want := pinMeta{Layout: layoutVersion, Backend: backendCode(backend), Hash: obj.hash}

	if have, ok := readPinMeta(opts.PinDir); ok {
		if have == want {
			err := e.reattach(obj)
			if err == nil {
				e.reused = true
				if err := e.finishOpen(opts.Marks); err != nil {
					return nil, err
				}
				opts.Logger.Info("reusing pinned programs", "backend", backend, "pin_dir", opts.PinDir)
				return e, nil
			}
			opts.Logger.Warn("pinned programs are incomplete; attaching afresh", "error", err)
			e.Close()
			e = &Enforcer{backend: backend, pinDir: opts.PinDir, links: map[string]link.Link{}, log: opts.Logger, trafficAttach: opts.TrafficAttach}
		} else {
			opts.Logger.Info("pinned programs are from another build or backend; replacing them",
				"pinned_backend", backendName(have.Backend), "backend", backend)
		}
		if err := detachLinks(opts.PinDir); err != nil {
			return nil, err
		}
		if have.Layout != layoutVersion {
			if err := removePinnedMaps(opts.PinDir); err != nil {
				return nil, err
			}
		}
	}

	cgroupRoot := opts.CgroupRoot
	if cgroupRoot == "" {
		if cgroupRoot, err = CgroupV2Root("/proc/self/mountinfo"); err != nil {
			return nil, err
		}
	}
	if err := e.install(obj, cgroupRoot); err != nil {
		e.Close()
		// Leave no half-attached set behind; the maps (and the rules in them) stay pinned.
		detachLinks(opts.PinDir)
		return nil, err
	}
	if err := e.finishOpen(opts.Marks); err != nil {
		return nil, err
	}
	if err := writePinMeta(opts.PinDir, want); err != nil {
		e.Close()
		return nil, err
	}
	opts.Logger.Info("attached programs", "backend", backend, "cgroup_root", cgroupRoot, "pin_dir", opts.PinDir)
	return e, nil
}

// finishOpen configures the kernel side and reads back what is installed; it closes e on failure.
func (e *Enforcer) finishOpen(marks Marks) error {
	if err := e.setMarks(marks); err != nil {
		e.Close()
		return err
	}
	if err := e.loadDestCounts(); err != nil {
		e.Close()
		return err
	}
	e.openTC()
	return nil
}

func (e *Enforcer) install(obj backendObject, cgroupRoot string) error {
	spec, err := obj.load()
	if err != nil {
		return fmt.Errorf("parse embedded BPF object: %w", err)
	}
	mapDir := filepath.Join(e.pinDir, "maps")
	if err := os.MkdirAll(mapDir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	// Pin the shared state; compiler-generated maps (.rodata and the like) belong to their programs.
	for _, name := range pinnedMapNames() {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("map %s missing from the embedded object", name)
		}
		ms.Pinning = ebpf.PinByName
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		e.log.Warn("pinned maps do not match this build; recreating them (kernel rules are rebuilt by the helper)")
		if rmErr := removePinnedMaps(e.pinDir); rmErr != nil {
			return rmErr
		}
		coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}})
	}
	if err != nil {
		e.logVerifier(err)
		return fmt.Errorf("load BPF programs: %w", err)
	}
	defer coll.Close()
	if err := coll.Assign(&e.maps); err != nil {
		return fmt.Errorf("take maps: %w", err)
	}

	linkDir := filepath.Join(e.pinDir, "links")
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	for _, name := range obj.programs {
		prog := coll.Programs[name]
		ps := spec.Programs[name]
		if prog == nil || ps == nil {
			return fmt.Errorf("program %s missing from the embedded object", name)
		}
		var l link.Link
		switch prog.Type() {
		case ebpf.LSM:
			l, err = link.AttachLSM(link.LSMOptions{Program: prog})
		case ebpf.CGroupSockAddr:
			l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroupRoot, Attach: ps.AttachType, Program: prog})
		case ebpf.RawTracepoint:
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: ps.AttachTo, Program: prog})
		default:
			err = fmt.Errorf("unexpected program type %s", prog.Type())
		}
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		if err := l.Pin(filepath.Join(linkDir, name)); err != nil {
			l.Close()
			return fmt.Errorf("pin link %s: %w", name, err)
		}
		e.links[name] = l
	}
	if e.traffic.socks, err = coll.Maps[trafficMapName].Clone(); err != nil {
		return fmt.Errorf("take map %s: %w", trafficMapName, err)
	}
	return nil
}

// reattach takes the pinned links and maps of an earlier run.
func (e *Enforcer) reattach(obj backendObject) error {
	for _, name := range obj.programs {
		l, err := link.LoadPinnedLink(filepath.Join(e.pinDir, "links", name), nil)
		if err != nil {
			return fmt.Errorf("load pinned link %s: %w", name, err)
		}
		e.links[name] = l
	}
	for _, nm := range e.maps.named() {
		m, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, "maps", nm.name), nil)
		if err != nil {
			return fmt.Errorf("load pinned map %s: %w", nm.name, err)
		}
		*nm.m = m
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, "maps", trafficMapName), nil)
	if err != nil {
		return fmt.Errorf("load pinned map %s: %w", trafficMapName, err)
	}
	e.traffic.socks = m
	return nil
}

// OpenPinned takes the programs and maps an earlier run pinned under pinDir, without loading or attaching
// anything; it fails when nothing (or an incomplete set) is pinned there.
func OpenPinned(pinDir string, log *slog.Logger) (*Enforcer, error) {
	have, ok := readPinMeta(pinDir)
	if !ok {
		return nil, fmt.Errorf("nothing is pinned under %s: tattled has not attached its programs", pinDir)
	}
	backend := backendName(have.Backend)
	obj, err := objectFor(backend)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Enforcer{backend: backend, pinDir: pinDir, links: map[string]link.Link{}, log: log, reused: true}
	if err := e.reattach(obj); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.loadDestCounts(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// CurrentBuild reports whether the pinned programs are the ones this binary carries.
func (e *Enforcer) CurrentBuild() bool {
	have, ok := readPinMeta(e.pinDir)
	if !ok {
		return false
	}
	obj, err := objectFor(e.backend)
	return err == nil && have.Hash == obj.hash && have.Layout == layoutVersion
}

// Entries counts the installed verdicts: scopes and destination entries.
func (e *Enforcer) Entries() (scopes, destinations int, err error) {
	count := func(m *ebpf.Map) (int, error) {
		n := 0
		k := make([]byte, m.KeySize())
		v := make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			n++
		}
		return n, it.Err()
	}
	if scopes, err = count(e.maps.ScopeRules); err != nil {
		return 0, 0, fmt.Errorf("count scopes: %w", err)
	}
	if destinations, err = count(e.maps.DestRules); err != nil {
		return 0, 0, fmt.Errorf("count destinations: %w", err)
	}
	return scopes, destinations, nil
}

// Uninstall detaches every Tattle program and removes the pins. Enforcement stops.
func Uninstall(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	// Legacy TC filters (kernels without tcx) are no pins: found by their handle on every interface.
	if err := uninstallClsact(pinDir); err != nil {
		return fmt.Errorf("remove the traffic counters' filters: %w", err)
	}
	if err := detachLinks(pinDir); err != nil {
		return err
	}
	if err := removePinnedMaps(pinDir); err != nil {
		return err
	}
	os.Remove(filepath.Join(pinDir, "meta"))
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", pinDir, err)
	}
	return nil
}

// Installed reports whether programs are pinned under pinDir.
func Installed(pinDir string) bool {
	_, ok := readPinMeta(pinDir)
	return ok
}

func detachLinks(pinDir string) error {
	dir := filepath.Join(pinDir, "links")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list pinned links: %w", err)
	}
	for _, ent := range entries {
		path := filepath.Join(dir, ent.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			// Not a link we can open: drop the pin so the program goes with its last reference.
			if rmErr := os.Remove(path); rmErr != nil {
				return fmt.Errorf("remove pinned link %s: %w", path, rmErr)
			}
			continue
		}
		err = l.Unpin()
		l.Close()
		if err != nil {
			return fmt.Errorf("unpin link %s: %w", path, err)
		}
	}
	os.Remove(dir)
	os.Remove(filepath.Join(pinDir, "meta"))
	return nil
}

func removePinnedMaps(pinDir string) error {
	dir := filepath.Join(pinDir, "maps")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list pinned maps: %w", err)
	}
	for _, ent := range entries {
		if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
			return fmt.Errorf("remove pinned map: %w", err)
		}
	}
	os.Remove(dir)
	return nil
}

// ensureBPFFS mounts bpffs at dir when nothing is mounted there yet.
func ensureBPFFS(dir string) error {
	isBPF, err := isBPFFS(dir)
	if err != nil {
		return err
	}
	if isBPF {
		return nil
	}
	if err := mountBPFFS(dir); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

// ProgramIDs lists the kernel IDs of the attached programs, by program name, sorted by name.
func (e *Enforcer) ProgramIDs() ([]NamedProgram, error) {
	var out []NamedProgram
	for name, l := range e.links {
		info, err := l.Info()
		if err != nil {
			return nil, fmt.Errorf("inspect link %s: %w", name, err)
		}
		out = append(out, NamedProgram{Name: name, ID: info.Program})
	}
	out = append(out, e.tcProgramIDs()...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NamedProgram is an attached program's name and kernel ID.
type NamedProgram struct {
	Name string
	ID   ebpf.ProgramID
}

// logVerifier logs the verifier's whole log at debug level; the error itself carries only its last lines.
func (e *Enforcer) logVerifier(err error) {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		e.log.Debug("verifier log", "log", fmt.Sprintf("%+v", ve))
	}
}
