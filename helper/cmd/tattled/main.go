// Command tattled is Tattle's root helper: it owns the kernel programs and maps that decide which program may
// open which connection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/tattlefw/tattle/helper/daemon"
	"github.com/tattlefw/tattle/helper/enforce"
	"github.com/tattlefw/tattle/helper/history"
	"github.com/tattlefw/tattle/helper/metrics"
	"github.com/tattlefw/tattle/helper/netfilter"
	"github.com/tattlefw/tattle/helper/packaged"
	"github.com/tattlefw/tattle/helper/peer"
	"github.com/tattlefw/tattle/helper/records"
	"github.com/tattlefw/tattle/helper/resolvers"
	"github.com/tattlefw/tattle/helper/service"
	"github.com/tattlefw/tattle/helper/store"
	"github.com/tattlefw/tattle/helper/systemd"
	"github.com/tattlefw/tattle/helper/sysusers"
	"github.com/tattlefw/tattle/shared/api"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "0.1.0-dev"

type config struct {
	backend       string
	pinDir        string
	cgroupRoot    string
	lockFile      string
	uninstall     bool
	status        bool
	logLevel      string
	stateDir      string
	historyMB     int
	historySample time.Duration
	rulesDir      string
	factoryDir    string
	bus           string
	hold          bool
	names         bool
	dnsGrace      time.Duration
	listsDir      string
	nftTable      string
	queue         uint
	guiAgents     string
	termAgents    string
	flatpaks      string
	snapDir       string
	resolvers     string
	journal       bool
	metrics       string
	metricsApps   int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.backend, "backend", "auto", "kernel backend: auto, lsm or cgroup")
	flag.StringVar(&cfg.pinDir, "pin-dir", enforce.DefaultPinDir, "bpffs directory for pinned programs and maps")
	flag.StringVar(&cfg.cgroupRoot, "cgroup-root", "", "cgroup v2 root to attach to (default: found in /proc/self/mountinfo)")
	flag.StringVar(&cfg.lockFile, "lock-file", "/run/tattle/tattled.lock", "lock that keeps a second helper from starting")
	flag.BoolVar(&cfg.uninstall, "uninstall", false, "detach all programs, remove the pins and exit")
	flag.BoolVar(&cfg.status, "status", false, "print what is pinned and exit")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.DurationVar(&cfg.historySample, "history-sample", daemon.DefaultTrafficSample, "how often flows' byte counts are written to the history")
	flag.IntVar(&cfg.historyMB, "history-max-mb", 256, "size cap of the connection history database in MiB (0: keep no history)")
	flag.StringVar(&cfg.stateDir, "state-dir", store.DefaultStateDir, "directory of the helper's own state (rules made through the API)")
	flag.StringVar(&cfg.rulesDir, "rules-dir", store.DefaultAdminDir, "administrator's rule groups (*.json), reloaded when they change")
	flag.StringVar(&cfg.factoryDir, "factory-dir", "", "factory rule groups (*.json, read-only; a file of the same name in -rules-dir replaces one) (default: PREFIX/share/tattle/rules.d of this helper's prefix; \"none\": no factory rules)")
	flag.StringVar(&cfg.bus, "bus", "system", "serve the D-Bus API on the system bus (system) or not at all (none)")
	flag.BoolVar(&cfg.hold, "hold", true, "hold undecided connections in a netfilter queue while their owner decides")
	flag.BoolVar(&cfg.names, "names", true, "learn host names from DNS answers to local programs (for name rules and display)")
	flag.StringVar(&cfg.listsDir, "lists-dir", daemon.DefaultListsDir, "definitions of the named lists list rules use (NAME.json)")
	flag.DurationVar(&cfg.dnsGrace, "dns-grace", 10*time.Second, "how long a learned address outlives its DNS answer's TTL")
	flag.StringVar(&cfg.nftTable, "nft-table", netfilter.DefaultTable, "nftables table (family inet) for holding")
	flag.UintVar(&cfg.queue, "queue", uint(netfilter.DefaultQueue), "netfilter queue number for holding")
	flag.StringVar(&cfg.guiAgents, "gui-agents", "", "the desktop app programs that may register as agents, comma-separated absolute paths (default: PREFIX/bin/tattle of this helper's prefix)")
	flag.StringVar(&cfg.flatpaks, "flatpak-dirs", packaged.DefaultFlatpakSystem, "system Flatpak installations, comma-separated (users' own are under ~/"+packaged.DefaultFlatpakUser+")")
	flag.StringVar(&cfg.snapDir, "snap-dir", packaged.DefaultSnapDir, "where snaps' revisions are mounted")
	flag.StringVar(&cfg.termAgents, "terminal-agents", "", "the terminal programs that may register as agents, comma-separated absolute paths (default: PREFIX/bin/tattlectl)")
	flag.StringVar(&cfg.resolvers, "resolver-files", strings.Join(resolvers.DefaultFiles, ","), "resolv.conf files whose nameserver lines make the built-in list \"list:resolvers\" (the factory DNS rules' remote), comma-separated absolute paths, followed live; \"none\": the list is empty")
	flag.BoolVar(&cfg.journal, "journal-records", true, "send a structured journald record (TATTLE_APP, TATTLE_DEST, TATTLE_VERDICT, ...) of every decision, when journald runs")
	flag.StringVar(&cfg.metrics, "metrics-listen", "", "serve Prometheus metrics (decisions and bytes per application) on a unix socket (absolute path; root only, mode 0600) "+
		"or a loopback address:port (127.0.0.1:9772: readable by ANY local user); empty: off")
	flag.IntVar(&cfg.metricsApps, "metrics-max-apps", metrics.DefaultMaxApps, "applications with their own label in the metrics; later ones are counted as \"other\"")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *showVersion {
		fmt.Println("tattled", version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "tattled: bad -log-level %q: use debug, info, warn or error\n", cfg.logLevel)
		os.Exit(2)
	}
	var metricsAt metrics.Listen
	if cfg.metrics != "" {
		var err error
		if metricsAt, err = metrics.ParseListen(cfg.metrics); err != nil {
			fmt.Fprintf(os.Stderr, "tattled: -metrics-listen: %v\n", err)
			os.Exit(2)
		}
	}
	// Under systemd, structured journal entries; elsewhere (run-dev.sh, tests) text on stderr.
	log := slog.New(systemd.LogHandler(level, systemd.StderrHandler(level)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, metricsAt, log); err != nil {
		log.Error("tattled failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, metricsAt metrics.Listen, log *slog.Logger) error {
	backend, err := enforce.ParseBackend(cfg.backend)
	if err != nil {
		return err
	}
	if cfg.status {
		return printStatus(cfg.pinDir)
	}

	lock, err := takeLock(cfg.lockFile)
	if err != nil {
		return err
	}
	defer lock.Close()

	if cfg.uninstall {
		if err := enforce.Uninstall(cfg.pinDir); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
		if err := netfilter.Uninstall(cfg.nftTable); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
		log.Info("detached and unpinned all programs", "pin_dir", cfg.pinDir)
		return nil
	}

	factoryDir, err := factoryRulesDir(cfg.factoryDir)
	if err != nil {
		return err
	}
	rules, err := store.Open(store.Options{StateDir: cfg.stateDir, AdminDir: cfg.rulesDir, FactoryDir: factoryDir,
		Logger: log, MaxRulesPerOwner: api.MaxRulesPerUser})
	if err != nil {
		return err
	}

	enf, err := enforce.Open(enforce.Options{
		Backend:    backend,
		PinDir:     cfg.pinDir,
		CgroupRoot: cfg.cgroupRoot,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	defer enf.Close()
	log.Info("tattled running", "version", version, "backend", enf.Backend(), "reused_pins", enf.Reused())

	d := daemon.New(enf, rules, log)
	if cfg.resolvers != "none" {
		files := []string{} // not nil: an empty flag names no files
		for _, f := range strings.Split(cfg.resolvers, ",") {
			if f = strings.TrimSpace(f); f != "" {
				files = append(files, f)
			}
		}
		res, err := resolvers.New(resolvers.Options{Files: files, Log: log})
		if err != nil {
			return fmt.Errorf("-resolver-files: %w", err)
		}
		d.UseResolvers(res)
	}
	roots := packaged.Roots{FlatpakUser: packaged.DefaultFlatpakUser, SnapDir: cfg.snapDir,
		Homes: packaged.PasswdHomes("/etc/passwd", sysusers.FromLoginDefs("/etc/login.defs").IsSystem)}
	var packagedDirs []string
	for _, dir := range strings.Split(cfg.flatpaks, ",") {
		if dir = strings.TrimSpace(dir); dir != "" {
			roots.FlatpakSystem = append(roots.FlatpakSystem, dir)
			packagedDirs = append(packagedDirs, dir)
		}
	}
	if cfg.snapDir != "" {
		packagedDirs = append(packagedDirs, cfg.snapDir)
	}
	d.UsePackaged(roots.Executables, packagedDirs)
	// The connection history: optional (the helper enforces without it), bounded by the retention setting.
	if cfg.historyMB > 0 {
		hist, err := history.Open(filepath.Join(cfg.stateDir, "history.db"), history.Options{
			RetentionDays: func() int { return int(rules.Settings().HistoryDays) },
			MaxBytes:      int64(cfg.historyMB) << 20, Logger: log})
		if err != nil {
			log.Error("no connection history", "error", err)
		} else {
			defer hist.Close()
			d.SetHistory(hist, cfg.historySample)
		}
	}
	var rec *records.Writer
	if cfg.journal && records.Available() {
		rec = records.New(records.Options{UserName: userName, Log: log})
		d.SetRecords(rec)
	}
	var met *metrics.Metrics
	if cfg.metrics != "" {
		var hist func() uint64
		if h := d.History(); h != nil {
			hist = h.Dropped
		}
		var journalCounts func() (uint64, uint64, uint64)
		if rec != nil {
			journalCounts = func() (uint64, uint64, uint64) { return rec.Sent(), rec.Dropped(), rec.Failed() }
		}
		met = metrics.New(cfg.metricsApps, metrics.Sources{
			Flows:    enf.Flows,
			AppName:  func(f enforce.Flow) string { return d.ExePath(f.LastTGID, f.App) },
			Kernel:   enf.Stats,
			Maps:     enf.MapFill,
			DNS:      d.DNSStats,
			Pending:  d.PendingCount,
			Journal:  journalCounts,
			Unlogged: hist,
		})
		d.SetMetrics(met)
	}
	if err := d.Apply(); err != nil {
		// Keep running: the pinned verdicts still enforce, and the API must stay up to repair the rules.
		log.Error("the rules could not be applied; the kernel keeps its previous verdicts", "error", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var asker daemon.Asker = noAgents{}
	var svc *service.Service
	var conn *dbus.Conn
	if cfg.bus == "system" {
		conn, err = dbus.ConnectSystemBus()
		if err != nil {
			return fmt.Errorf("connect to the system bus (use -bus none to run without the D-Bus API): %w", err)
		}
		defer conn.Close()
		trusted, err := trustedAgents(cfg)
		if err != nil {
			return err
		}
		for _, p := range trusted.Programs() {
			log.Info("trusted agent program", "path", p.Path, "kind", p.Kind)
		}
		svc, err = service.New(service.Options{Conn: conn, Store: rules, Daemon: d, Enforcer: enf, Version: version, Logger: log,
			TrustedAgents: trusted})
		if err != nil {
			return err
		}
		asker = svc
		d.OnRulesChanged(svc.AnnounceRulesChanged)
		d.OnModeChanged(svc.ModeChanged)
	} else if cfg.bus != "none" {
		return fmt.Errorf("-bus %q: use system or none", cfg.bus)
	}
	listCfgs, listErrs := daemon.ReadListConfigs(cfg.listsDir, cfg.stateDir)
	// Lists made by imports live in the state directory, beside the rules that name them.
	importedDir := daemon.ImportedListsDir(cfg.stateDir)
	d.ConfigureImportedLists(importedDir, cfg.stateDir)
	importedCfgs, importedErrs := daemon.ReadListConfigs(importedDir, cfg.stateDir)
	listCfgs = append(listCfgs, importedCfgs...)
	listErrs = append(listErrs, importedErrs...)
	for _, err := range listErrs {
		log.Error("list definition refused; its list rules match nothing", "error", err)
	}
	if len(listCfgs) > 0 {
		if err := d.StartLists(ctx, listCfgs); err != nil {
			log.Error("lists not loaded", "error", err)
		}
	}
	if cfg.names {
		if err := d.StartNames(ctx, cfg.cgroupRoot, cfg.dnsGrace); err != nil {
			log.Error("host names cannot be learned; name rules match nothing and addresses are shown", "error", err)
		}
	}
	if len(listCfgs) > 0 || cfg.names {
		// Name and list rules compile differently once names and lists are known.
		if err := d.Apply(); err != nil {
			log.Error("the rules could not be applied", "error", err)
		}
	}
	// Holding starts before the bus name is taken: a client that can reach the helper finds it holding.
	if cfg.hold {
		if cfg.queue == 0 || cfg.queue > 65535 {
			return fmt.Errorf("-queue %d: use 1 to 65535", cfg.queue)
		}
		if err := d.StartHolding(ctx, daemon.HoldOptions{Table: cfg.nftTable, Queue: uint16(cfg.queue), Asker: asker}); err != nil {
			// Keep enforcing what the rules decide; undecided connections pass unasked, as Status says.
			log.Error("undecided connections cannot be held; they pass unasked", "error", err)
		}
	}
	if rec != nil {
		// Stopped after the daemon (its own context): the last decisions are still sent.
		recCtx, stopRec := context.WithCancel(context.Background())
		recDone := make(chan struct{})
		go func() {
			defer close(recDone)
			rec.Run(recCtx)
		}()
		defer func() { stopRec(); <-recDone }()
		log.Info("decisions are recorded in the journal")
	}
	if met != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := met.Serve(ctx, metricsAt, log, func(a net.Addr) { log.Info("metrics endpoint listening", "address", a.String()) }); err != nil {
				// Enforcement does not depend on it: say so and go on.
				log.Error("no metrics endpoint", "error", err)
			}
		}()
	}
	if svc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Serve(ctx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		watchStats(ctx, enf, log)
	}()
	go func() {
		defer wg.Done()
		if err := d.Run(ctx); err != nil {
			errs <- err
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := systemd.Watchdog(ctx, func() error { return healthy(d, enf, conn) }, log); err != nil {
			log.Warn("no watchdog pings", "error", err)
		}
	}()
	// Ready once clients can reach the helper: with the API, when the bus name is ours.
	if conn == nil || waitForName(ctx, conn, api.BusName) {
		status := statusLine(d, enf, rules)
		if err := systemd.Ready(status); err != nil {
			log.Warn("readiness not reported", "error", err)
		}
		log.Info("ready", "status", status)
	}
	<-ctx.Done()
	_ = systemd.Stopping("stopping; the pinned programs keep enforcing")
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	log.Info("tattled stopping; enforcement stays in place through the pinned programs")
	return nil
}

// waitForName waits until conn owns name (Serve takes it), or ctx ends.
func waitForName(ctx context.Context, conn *dbus.Conn, name string) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range conn.Names() {
			if n == name {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// statusLine is what `systemctl status tattled` shows under the unit's name.
func statusLine(d *daemon.Daemon, enf *enforce.Enforcer, rules *store.Store) string {
	return fmt.Sprintf("enforcing with the %s backend; %d rules; holding: %s", enf.Backend(), len(rules.Entries()), d.Holding())
}

// healthy is the watchdog's check of the main loops: the daemon's lock can be taken (rule changes, learned
// verdicts and answers all go through it), the holding state answers, the kernel's maps can be read and the
// bus connection is up. A check that hangs stops the pings, which is the point.
func healthy(d *daemon.Daemon, enf *enforce.Enforcer, conn *dbus.Conn) error {
	d.Current()
	d.PendingCount()
	if _, err := enf.Stats(); err != nil {
		return fmt.Errorf("read the kernel's counters: %w", err)
	}
	if conn != nil && !conn.Connected() {
		return errors.New("the system bus connection is closed")
	}
	return nil
}

// factoryRulesDir is the -factory-dir flag's directory: by default the one the package installed beside this
// helper (PREFIX/libexec/tattled -> PREFIX/share/tattle/rules.d), "" for "none".
func factoryRulesDir(flagValue string) (string, error) {
	switch flagValue {
	case "none":
		return "", nil
	case "":
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the helper's own executable (for the default factory rules directory): %w", err)
		}
		return filepath.Join(filepath.Dir(filepath.Dir(self)), "share", "tattle", "rules.d"), nil
	}
	if !filepath.IsAbs(flagValue) {
		return "", fmt.Errorf("-factory-dir %q: give an absolute path (or none)", flagValue)
	}
	return filepath.Clean(flagValue), nil
}

// trustedAgents is the set of agent programs from the flags, each defaulting to the helper's install prefix.
func trustedAgents(cfg config) (*peer.Trusted, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the helper's own executable (for the default agent programs): %w", err)
	}
	var progs []peer.Program
	for _, f := range []struct {
		list string
		kind peer.Kind
	}{{cfg.guiAgents, peer.GUI}, {cfg.termAgents, peer.Terminal}} {
		if f.list == "" {
			for _, p := range peer.DefaultPrograms(self) {
				if p.Kind == f.kind {
					progs = append(progs, p)
				}
			}
			continue
		}
		for _, path := range strings.Split(f.list, ",") {
			progs = append(progs, peer.Program{Path: path, Kind: f.kind})
		}
	}
	return peer.NewTrusted(progs)
}

// noAgents answers for a helper without the D-Bus API: nobody can be asked, so the default applies.
type noAgents struct{}

func (noAgents) Ask(context.Context, api.Question) (api.Answer, error) {
	return api.Answer{}, errors.New("the helper runs without its D-Bus API (-bus none): nobody can be asked")
}

func (noAgents) PendingChanged(int) {}

// watchStats reports kernel-side losses as they happen, until ctx ends.
func watchStats(ctx context.Context, enf *enforce.Enforcer, log *slog.Logger) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var last enforce.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, err := enf.Stats()
		if err != nil {
			log.Warn("read kernel stats", "error", err)
			continue
		}
		if s.EventsLost != last.EventsLost || s.FlowsFull != last.FlowsFull || s.MarkFailed != last.MarkFailed {
			log.Warn("kernel reported losses", "events_lost", s.EventsLost, "flows_full", s.FlowsFull,
				"mark_failed", s.MarkFailed)
		}
		last = s
	}
}

// takeLock makes sure only one helper manages the pinned programs at a time. A helper that is still shutting
// down (it has left the bus, so D-Bus activation already starts the next one) is given lockWait to finish.
func takeLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another tattled is already running (pid %s); stop it first",
				strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// lockWait is how long a starting helper waits for a stopping one.
const lockWait = 10 * time.Second

// printStatus describes what is pinned and enforcing, without changing anything.
func printStatus(pinDir string) error {
	enf, err := enforce.OpenPinned(pinDir, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Printf("not enforcing: %v\n", err)
		return nil
	}
	defer enf.Close()
	fmt.Printf("enforcing with the %s backend, pinned under %s", enf.Backend(), pinDir)
	if !enf.CurrentBuild() {
		fmt.Print(" (from another build: the next start replaces them)")
	}
	fmt.Println()
	progs, err := enf.ProgramIDs()
	if err != nil {
		return err
	}
	for _, p := range progs {
		fmt.Printf("  program %-22s id %d\n", p.Name, p.ID)
	}
	scopes, dests, err := enf.Entries()
	if err != nil {
		return err
	}
	fmt.Printf("verdicts: %d scopes, %d destination entries\n", scopes, dests)
	st, err := enf.Stats()
	if err != nil {
		return err
	}
	fmt.Printf("kernel counters: %d events lost, %d flows not recorded, %d marks failed, %d attempts without an executable\n",
		st.EventsLost, st.FlowsFull, st.MarkFailed, st.NoIdentity)
	return nil
}

// userName names a user for the journal records (the UID when the account is unknown).
func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}
