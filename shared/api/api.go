// Package api is the D-Bus contract between tattled and its clients (the GTK app, tattlectl): names, methods,
// errors and the wire types, with the same Go types on both ends.
//
// Object /io/github/tattlefw/Tattle1 on the system bus name io.github.tattlefw.Tattle1 implements:
//
//	io.github.tattlefw.Tattle1.Daemon
//	    properties Version s, Backend s, Mode s   (org.freedesktop.DBus.Properties; Mode emits changes)
//	    Status() -> (Status)                      anyone
//	    SetMode(s mode)                            manage-rules
//	io.github.tattlefw.Tattle1.Rules
//	    List() -> a(Rule)                          system rules and the caller's own; all with manage-rules
//	    Add(a(Rule)) -> as ids                     own rules: answer-prompts; system or others': manage-rules
//	    Update(Rule)                               same as Add, for the rule's current and new owner
//	    Remove(as ids)                             same as Add
//	    SetEnabled(s id, b enabled)                same as Add
//	    Import(s format, ay data, b system) -> (u imported, as skipped)
//	    Export(s format) -> (ay data, as skipped)  the rules the caller may list
//	    Problems() -> a(Problem)                   anyone
//	    signal Changed()
//	io.github.tattlefw.Tattle1.Monitor
//	    Flows() -> a(Flow)                         the caller's processes; everyone's with monitor-all
//	    Subscribe(), Unsubscribe()                 start or stop FlowsChanged for the caller (same visibility)
//	    signal FlowsChanged(a(Flow))               unicast to each subscriber, at most once a second, with the
//	                                               flows whose attempts changed since the last batch
//
// Every call that changes state checks polkit for the caller (subject: its bus name), honouring the message's
// allow-interactive-authorization flag. Root is always authorized.
package api

import "github.com/godbus/dbus/v5"

// Names on the bus.
const (
	BusName          = "io.github.tattlefw.Tattle1"
	ObjectPath       = dbus.ObjectPath("/io/github/tattlefw/Tattle1")
	DaemonInterface  = BusName + ".Daemon"
	RulesInterface   = BusName + ".Rules"
	MonitorInterface = BusName + ".Monitor"
	ChangedSignal    = RulesInterface + ".Changed"
)

// polkit actions (data/io.github.tattlefw.tattle.policy).
const (
	ActionManageRules   = "io.github.tattlefw.tattle.manage-rules"
	ActionAnswerPrompts = "io.github.tattlefw.tattle.answer-prompts"
	ActionMonitorAll    = "io.github.tattlefw.tattle.monitor-all"
)

// D-Bus error names. Messages are written for people: what failed and what to do.
const (
	ErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	ErrInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
	ErrFailed       = "org.freedesktop.DBus.Error.Failed"
	ErrNotFound     = BusName + ".Error.NotFound"
	ErrReadOnly     = BusName + ".Error.ReadOnly"
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
	FormatOpenSnitch   = "opensnitch" // one OpenSnitch rule file
)

// Modes of the helper.
const (
	ModeAlert       = "alert"
	ModeSilentAllow = "silent-allow"
	ModeSilentDeny  = "silent-deny"
)

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
}

// Problem is a rule file the helper refused; the rules it held before stay in force.
type Problem struct {
	File  string
	Error string
	Since int64
}

// Flow is the kernel's account of one application's attempts to one destination.
type Flow struct {
	Exe       string
	Dev       uint64
	Ino       uint64
	UID       uint32
	Dest      string // address:port
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
}
