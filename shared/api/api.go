// Package api is the D-Bus contract between tattled and its clients (the GTK app, tattlectl): names, methods,
// errors and the wire types, with the same Go types on both ends.
//
// Object /io/github/tattlefw/Tattle1 on the system bus name io.github.tattlefw.Tattle1 implements:
//
//	io.github.tattlefw.Tattle1.Daemon
//	    properties Version s, Backend s, Mode s, Pending u   (org.freedesktop.DBus.Properties; Mode and
//	                                               Pending emit changes)
//	    Status() -> (Status)                      anyone
//	    SetMode(s mode)                            manage-rules (not "learn": Learn starts it)
//	    Learn(u seconds)                           manage-rules: learning mode for 1..MaxLearnSeconds, then alert
//	    Settings() -> (Settings)                   anyone
//	    SetSettings(Settings)                      manage-rules
//	io.github.tattlefw.Tattle1.Rules
//	    List() -> a(Rule)                          system rules and the caller's own; all with manage-rules
//	    Add(a(Rule)) -> as ids                     own rules: manage-own-rules (the user's own password);
//	                                               system or others': manage-rules
//	    Update(Rule)                               same as Add, for the rule's current and new owner
//	    Remove(as ids)                             same as Add
//	    SetEnabled(s id, b enabled)                same as Add; a factory rule (Rule.Factory) is a system
//	                                               rule: manage-rules
//	    Import(s format, ay data, b system) -> (u imported, as skipped)
//	    ImportFiles(ImportRequest) -> (ImportSummary, as report)   same as Import; several files (an
//	                                               OpenSnitch rules directory and its list directories), one
//	                                               transaction (named lists and rules, all or nothing),
//	                                               DryRun for a preview that changes nothing (the
//	                                               summary's Preview holds the rules it would make)
//	    Export(s format) -> (ay data, as skipped)  the rules the caller may list
//	    Approve(as ids)                            imported rules become approved, learned rules (Rule.Learned)
//	                                               approved and enabled; same authorization as Add
//	    Problems() -> a(Problem)                   anyone
//	    signal Changed()
//	io.github.tattlefw.Tattle1.Monitor
//	    Flows() -> a(Flow)                         the caller's processes; everyone's with monitor-all
//	    Subscribe(), Unsubscribe()                 start or stop FlowsChanged for the caller (same visibility)
//	    signal FlowsChanged(a(Flow))               unicast to each subscriber, at most once a second, with the
//	                                               flows whose attempts changed since the last batch
//	io.github.tattlefw.Tattle1.Prompts
//	    RegisterAgent(o path)                      answer-prompts, from an installed agent program only (tattle,
//	                                               tattlectl: checked by executable identity, not traced, not
//	                                               dumpable, no loader/toolkit injection; else UntrustedAgent);
//	                                               the caller answers questions about its uid's processes (root's
//	                                               agent also those of users without one)
//	    RegisterAgentWithOptions(o path, a{sv})    the same; "replace" b: asked ahead of the user's other agents
//	                                               (also needs manage-own-rules)
//	    UnregisterAgent(o path)                    the agent's own connection only
//	    Pending() -> a(Question)                   open questions about the caller's processes (all with
//	                                               manage-rules)
//
// An agent exports io.github.tattlefw.Tattle1.Agent at the path it registered:
//
//	Ask(Question) -> (Answer)                  returns when the user has answered; the helper waits until the
//	                                           question's Deadline (then applies the default once) and treats an
//	                                           error reply or the agent leaving the bus the same way
//	Cancel(t id)                               the question was settled without this agent (timeout, the app
//	                                           gave up, a rule decided it): close its window
//	AskedChanged(b here, u pid, s exe, s kind) the helper now asks this agent (here) or another one of the
//	                                           user's (one that registered with replace): show it
//
// Which of a uid's agents is asked: the newest registered with replace; else a GUI agent in the active
// logind session; else the first GUI agent registered; else the first terminal agent. Being first, not
// newest, keeps an agent started behind the user's back from being asked; when the asked one leaves the bus
// the next in that order takes over. An agent never sees a question about another user's process unless it runs as root.
//
// Every call that changes state checks polkit for the caller (subject: its bus name), honouring the message's
// allow-interactive-authorization flag. Root is always authorized. The helper declares the access above in one
// table (helper/service/access.go); a method it serves without an entry there is refused to everyone.
package api

import "github.com/godbus/dbus/v5"

// Names on the bus.
const (
	BusName          = "io.github.tattlefw.Tattle1"
	ObjectPath       = dbus.ObjectPath("/io/github/tattlefw/Tattle1")
	DaemonInterface  = BusName + ".Daemon"
	RulesInterface   = BusName + ".Rules"
	MonitorInterface = BusName + ".Monitor"
	PromptsInterface = BusName + ".Prompts"
	AgentInterface   = BusName + ".Agent"
	ChangedSignal    = RulesInterface + ".Changed"
)

// polkit actions (data/io.github.tattlefw.tattle.policy).
const (
	ActionManageRules   = "io.github.tattlefw.tattle.manage-rules"
	ActionAnswerPrompts = "io.github.tattlefw.tattle.answer-prompts"
	// ActionManageOwnRules: rule changes for one's own processes that are not answers to a question the
	// helper asked, approving imported rules, and taking over questions with a second agent. auth_self_keep:
	// the user's own password, so a program running as the user cannot do it behind the user's back.
	ActionManageOwnRules = "io.github.tattlefw.tattle.manage-own-rules"
	ActionMonitorAll     = "io.github.tattlefw.tattle.monitor-all"
)

// D-Bus error names. Messages are written for people: what failed and what to do.
const (
	ErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	ErrInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
	ErrFailed       = "org.freedesktop.DBus.Error.Failed"
	ErrNotFound     = BusName + ".Error.NotFound"
	ErrReadOnly     = BusName + ".Error.ReadOnly"
	// ErrUntrustedAgent: RegisterAgent from a process that is not an installed agent program, or one that is
	// traced or was started with code injected into it.
	ErrUntrustedAgent = BusName + ".Error.UntrustedAgent"
)

// Options of Prompts.RegisterAgentWithOptions.
const (
	AgentOptionReplace = "replace" // b: this agent is asked ahead of the user's others (needs manage-own-rules)
)

// Limits that bound what one call may carry; larger requests are refused with ErrInvalidArgs.
const (
	MaxRulesPerCall = 1000
	MaxImportSize   = 16 << 20
	// MaxRulesPerUser bounds the rules one user may own, so one account cannot use up the rule store.
	MaxRulesPerUser = 2000
)

// Import and export formats.
const (
	FormatTattle       = "tattle"     // Tattle's own rule file (shared/rules)
	FormatLittleSnitch = "lsrules"    // Little Snitch rule group
	FormatOpenSnitch   = "opensnitch" // OpenSnitch rule files (one rule each) and their list directories
)

// MaxImportFiles bounds the files of one ImportFiles call (rule files plus list files).
const MaxImportFiles = 20000

// ImportFile is one file of an import, named as the user named it (for messages).
type ImportFile struct {
	Name string
	Data []byte
}

// ImportListDir is an OpenSnitch list directory a rule names ("lists" operators), with its files.
type ImportListDir struct {
	Path  string // as the rules name it
	Files []ImportFile
}

// ImportRequest is one import: the files of one format, whose they are, and whether to only preview.
type ImportRequest struct {
	Format   string
	Files    []ImportFile
	ListDirs []ImportListDir
	System   bool // system rules (manage-rules); false: the caller's own rules
	DryRun   bool // convert and check everything, change nothing
}

// ImportSummary counts what an import did (or, with DryRun, would do). Summary is the line to show.
type ImportSummary struct {
	Files    uint32 // source files read
	RulesIn  uint32 // source rules (each entry of a block list counts)
	Exact    uint32 // imported with their whole meaning
	Reported uint32 // imported in part, or imported disabled and flagged
	Refused  uint32 // not imported
	Imported uint32 // Tattle rules made
	Lists    uint32 // named lists made
	Summary  string
	// Preview is, with DryRun, the rules the import would make as they would be stored (ids, owners and list
	// names as the helper would give them); empty for a real import, whose rules List returns.
	Preview []Rule
}

// Modes of the helper.
const (
	ModeAlert       = "alert"
	ModeSilentAllow = "silent-allow"
	ModeSilentDeny  = "silent-deny"
	// ModeLearn (started by Daemon.Learn, for a time): undecided connections are allowed, and each (app, user,
	// host, port, protocol) seen becomes a disabled rule marked Learned for review; at Status.LearnUntil the
	// helper returns to alert by itself.
	ModeLearn = "learn"
)

// MaxLearnSeconds bounds one learning period (a day).
const MaxLearnSeconds = 24 * 3600

// MaxLearned bounds the learned proposals kept at once; beyond it learning still allows but proposes nothing.
const MaxLearned = 10000

// Default actions for questions nobody answered in time.
const (
	DefaultAllow = "allow"
	DefaultDeny  = "deny"
)

// Fail policies: what happens to undecided connections while tattled is not running. Connections of
// applications a rule already denies something are always held back (dropped); the policy is for the rest.
const (
	FailPass = "pass" // let them through unasked
	FailDrop = "drop" // drop their packets until tattled is back (TCP retries, so an answer then still counts)
)

// Scopes of an answer: which of the application's connections the resulting rule covers.
const (
	ScopeHost   = "host"   // this host (its name when known, else its address), this port and protocol
	ScopeDomain = "domain" // every host in the host's domain, any port (needs a known host name)
	ScopePort   = "port"   // any host, this port and protocol
	ScopeAny    = "any"    // any connection
)

// Settings are the helper's settings. SetSettings validates them whole; an invalid value changes nothing.
type Settings struct {
	Mode            string // ModeAlert, ModeSilentAllow or ModeSilentDeny; ModeLearn while learning (Learn)
	DefaultAction   string // DefaultAllow or DefaultDeny: applied once when a question goes unanswered
	QuestionTimeout uint32 // seconds a question waits for an answer, MinQuestionTimeout..MaxQuestionTimeout
	FailPolicy      string // FailPass or FailDrop
	HistoryDays     uint32 // days of connection history kept, 1..MaxHistoryDays
	// SystemDefault is applied to a system process's question when no administrator's agent can be asked, or
	// none answered: DefaultAllow (shipped, logged; the system's own traffic is never cut because nobody was
	// there) or DefaultDeny. "" means DefaultAllow.
	SystemDefault string
	// Protected makes every answer to a question need the answering user's own password too
	// (manage-own-rules), not only rule changes made otherwise. Default off.
	Protected bool
	// AllowGUIScripting lets the alert act on synthetic input and accessibility actions (AT-SPI), so that
	// assistive and test tools can press its buttons; off, only real input events count. An administrator's
	// setting, like the others. Default off.
	AllowGUIScripting bool
}

// Bounds of Settings.
const (
	MinQuestionTimeout = 1
	MaxQuestionTimeout = 3600
	MaxHistoryDays     = 3650
)

// Question asks an agent whether an application may make a connection. Held attempts of one application, run
// by one user, to one host (any port, one protocol) share one question.
type Question struct {
	ID      uint64
	Exe     string // executable path
	Dev     uint64 // executable identity (device, inode)
	Ino     uint64
	Package string // "flatpak:ID", "snap:NAME" or "appimage:PATH" when the process runs in one, else ""
	Via     string // the script the interpreter Exe runs (absolute path); "" for none; ViaUnidentified if not known
	PID     uint32
	UID     uint32
	User    string // the user's name, or the uid in decimal
	Comm    string // the process's name for itself (shown, never trusted)
	Host    string // the host name the application looked up, "" when unknown
	// Reverse is, when Host is "", the address's reverse name (a PTR answer seen on the wire, or /etc/hosts),
	// to be shown marked as such: whoever controls the address chooses it, so it never decides anything.
	Reverse  string
	Addr     string // the destination address
	Port     uint16
	Protocol string // tcp or udp
	Created  int64  // Unix milliseconds
	Deadline int64  // Unix milliseconds: the default applies then
	Default  string // DefaultAllow or DefaultDeny
	Attempts uint32 // held attempts sharing this question so far
	// Changed: a rule was made for this program, but its file has changed since (rewritten in place or
	// replaced by a file that is not its package's), so it is asked about again.
	Changed bool
	// Ports are the destination ports the question's attempts went to (one application, user and host share
	// one question whatever the port), in the order seen, at most MaxQuestionPorts; PortCount counts them all.
	Ports     []uint16
	PortCount uint32
	// Domain is what the domain scope covers: the registrable domain of Host (rules.RegistrableDomain), "" when
	// Host is unknown. Agents show it as it is, so the label and the rule agree.
	Domain string
	// System marks a question about a system process (root, a system user, nobody): it is asked of an
	// administrator's agent and its answer makes a system rule after polkit authentication.
	System bool
	// Waiting is how many more questions the helper holds for this agent behind this one.
	Waiting uint32
}

// DNSPort is the port of DNS servers. A destination on it is shown as a DNS server ("DNS server 10.0.0.1"),
// never under a host name that happened to resolve to its address; Question.Host and Flow.Host stay "".
const DNSPort = 53

// DNSServerLabel names a DNS server's address for people.
func DNSServerLabel(addr string) string { return "DNS server " + addr }

// MaxQuestionPorts bounds Question.Ports.
const MaxQuestionPorts = 64

// Answer is a user's decision. Duration and Until take the values of shared/rules (rules.DurationOnce …);
// Until is Unix seconds, for rules.DurationUntilTime only.
type Answer struct {
	Action   string // rules.ActionAllow or rules.ActionDeny
	Scope    string // ScopeHost, ScopeDomain, ScopePort or ScopeAny
	Duration string
	Until    int64
}

// ViaUnidentified in Question.Via and Flow.Via: the interpreter runs a script Tattle could not identify (it
// was gone, or named by a file descriptor); no rule can name it, so an answer covers that connection only.
const ViaUnidentified = "(unidentified script)"

// NoOwner in Rule.Owner marks a system rule (applies to every user).
const NoOwner int64 = -1

// Rule is a rule on the wire: the fields of shared/rules.Rule, times as Unix seconds (0: unset), Owner as
// NoOwner or a uid, plus where the rule lives.
type Rule struct {
	ID          string
	Application string
	Owner       int64
	Direction   string
	Remote      string
	Port        string
	Protocol    string
	Action      string
	Duration    string
	Until       int64
	Enabled     bool
	Note        string
	Created     int64
	Modified    int64
	Source      string // file holding the rule
	ReadOnly    bool   // an administrator's rule group: changed by editing its file
	Via         string // the script an interpreter runs (rules.Rule.Via); "" for none
	SHA256      string // the executable's content the rule was made for (rules.Rule.SHA256); "" for any
	// Unapproved is true for a rule that arrived from outside the app (Import) until its owner approves it
	// (Rules.Approve, with authentication): shown as "not approved". Set by the helper only: Add and Update
	// ignore what the caller says.
	Unapproved bool
	// Factory marks a rule of a factory group (shipped with Tattle, share/tattle/rules.d; ReadOnly too):
	// SetEnabled switches it (remembered by the helper), Remove and Update refuse it with ErrReadOnly.
	Factory bool
	// Learned marks a rule learning mode proposed (disabled until approved; see ModeLearn). Set by the helper
	// only; Approve enables it.
	Learned bool
}

// Status describes the helper.
type Status struct {
	Version       string
	Backend       string
	Mode          string
	Rules         uint32
	KernelEntries uint32
	Problems      uint32
	EventsLost    uint64
	Pending       uint32 // open questions
	Holding       string // how held connections reach the helper: "nftables queue", "xtables NFQUEUE" or "off: <why>"
	Names         string // how host names are learned, or "off: <why>"
	Traffic       string // how bytes are counted: "tcx", "tc clsact" (before Linux 6.6), or "off: <why>"
	LearnUntil    int64  // in ModeLearn: Unix seconds when the mode returns to alert; else 0
}

// Problem is a rule file the helper refused; the rules it held before stay in force.
type Problem struct {
	File  string
	Error string
	Since int64
}

// HistoryQuery selects entries of the connection history (Monitor.History); empty fields match everything.
// A caller without monitor-all sees its own processes' entries only.
type HistoryQuery struct {
	App     string // executable path, exact
	Host    string // part of the host name or of the address:port
	Verdict string // allow, deny or undecided
	Since   int64  // Unix milliseconds, 0: from the start
	Until   int64  // Unix milliseconds, 0: until now
	Offset  uint32 // entries to skip (paging), newest first
	Limit   uint32 // at most 1000; 100 when 0
	Text    string // part of the executable, the script, the host name or the address:port (the app's search)
}

// HistoryEntry is one decided (or undecided) connection attempt in the history.
type HistoryEntry struct {
	Time     int64 // Unix milliseconds
	Exe      string
	Via      string
	UID      uint32
	Dest     string
	Host     string
	Protocol string
	Verdict  string
	RuleID   string
}

// TrafficBucket is the payload bytes of the history's flows in one time span (Monitor.Traffic).
type TrafficBucket struct {
	Start    int64 // Unix milliseconds
	Sent     uint64
	Received uint64
}

// Flow is the kernel's account of one application's attempts to one destination.
type Flow struct {
	Exe       string
	Dev       uint64
	Ino       uint64
	UID       uint32
	Dest      string // address:port
	Host      string // the host name the application looked up for the address, "" when unknown
	Reverse   string // when Host is "": the address's reverse name, shown marked as such (see Question)
	Protocol  string
	Attempts  uint64
	Allowed   uint64
	Denied    uint64
	Undecided uint64
	FirstSeen int64 // Unix milliseconds
	LastSeen  int64
	LastPID   uint32
	Verdict   string
	RuleID    string
	Via       string // the script the interpreter Exe runs, when known; see Question.Via
	// Layer-4 payload bytes and packets of the flow's sockets (kernel counters; a socket's first packet sent
	// from outside its program, as when a held connection is let go, leaves that socket uncounted).
	TxBytes   uint64
	RxBytes   uint64
	TxPackets uint64
	RxPackets uint64
}
