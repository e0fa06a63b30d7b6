#!/bin/bash
# The systemd ring's checks inside the VM (tests/systemd), run by tattle-vm-check.service at the end of every
# boot. Boot 1 installs the package with apt and checks the running system, then powers off (the test boots the machine again); boot 2 checks what
# survived the reboot, removes the package and powers off. Results go to the second serial port as lines:
#   CHECK NAME PASS|FAIL DETAIL     FIGURE NAME VALUE     LOG TEXT     PHASE-DONE N
set -u
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
phasefile=/var/lib/tattle-vm-phase
phase=$(cat "$phasefile" 2>/dev/null || echo 1)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "$*" >&3; }
pass() { say "CHECK $1 PASS ${*:2}"; }
fail() { say "CHECK $1 FAIL ${*:2}"; }
# expect NAME WANT GOT DETAIL: PASS when GOT equals WANT
expect() { if [ "$3" = "$2" ]; then pass "$1" "$4 ($3)"; else fail "$1" "$4: got '$3', want '$2'"; fi; }
figure() { say "FIGURE $1 ${*:2}"; }
logs() { sed 's/^/LOG /' >&3; }
show() { systemctl show -p "$1" --value tattled.service; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# journal_fields N: the last N journal entries of this boot about tattled.service, with the helper's own fields
# (ERROR=, BACKEND=...), which the short output leaves out.
journal_fields() {
	journalctl -b -u tattled.service -o json --no-pager | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    extra = " ".join("%s=%s" % (k, v) for k, v in e.items()
                     if not k.startswith("_") and k not in ("MESSAGE", "PRIORITY", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER",
                                                            "SYSLOG_TIMESTAMP", "CODE_LINE", "CODE_FILE", "MESSAGE_ID", "INVOCATION_ID",
                                                            "UNIT", "TID", "SYSLOG_PID") and not k.startswith("__"))
    print("%.3f %s %s %s" % (int(e["__MONOTONIC_TIMESTAMP"]) / 1e6, e.get("SYSLOG_IDENTIFIER", "?"), e.get("MESSAGE"), extra))' | tail -n "$1"
}
deny_port=9
# tryconnect ADDR PORT: one TCP connect by bash (a binary, not a script: `bash -c` is identified as bash);
# prints connected, EPERM (a deny rule in the kernel), ECONNREFUSED (nothing listens) or what else happened.
tryconnect() {
	local out
	if out=$(timeout 30 /usr/bin/bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); then
		echo connected
		return
	fi
	case "$out" in
	*"not permitted"*) echo EPERM ;;
	*refused*) echo ECONNREFUSED ;;
	*) echo "other: $out" ;;
	esac
}

wait_active() { # wait_active TIMEOUT [OLDPID]: until tattled is active with a main PID other than OLDPID
	local end=$(($(date +%s) + $1))
	while [ "$(date +%s)" -lt "$end" ]; do
		if [ "$(show ActiveState)" = active ] && [ "$(show MainPID)" != 0 ] && [ "$(show MainPID)" != "${2:-x}" ]; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

say "PHASE $phase at $(uptime_s) s after boot"
if [ "$phase" = 1 ]; then
	t0=$(uptime_s)
	if apt-get install -y -q /root/tattle.deb >/tmp/apt.log 2>&1; then
		pass apt-install "apt-get install ./tattle.deb in $(awk "BEGIN{printf \"%.1f\", $(uptime_s) - $t0}") s"
	else
		fail apt-install "apt-get install failed"
		logs </tmp/apt.log
	fi
	expect unit-enabled enabled "$(systemctl is-enabled tattled.service)" "the package enabled the unit"
	wait_active 60 || true
	expect unit-active active "$(systemctl is-active tattled.service)" "the package started the helper"
	[ "$(systemctl is-active tattled.service)" = active ] || journal_fields 30 | logs
	status=$(show StatusText)
	case "$status" in
	"enforcing with the lsm backend"*) pass status-text "STATUS= from sd_notify: $status" ;;
	*) fail status-text "STATUS=: '$status', want 'enforcing with the lsm backend...'" ;;
	esac
	systemctl status --no-pager tattled.service 2>&1 | head -n 12 | logs
	expect notify-type notify "$(show Type)" "readiness through sd_notify"

	sec=$(systemd-analyze security --no-pager tattled.service 2>&1 | grep 'Overall exposure level')
	score=$(echo "$sec" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
	figure exposure "$score $(echo "$sec" | awk '{print $(NF-1)}')"
	if [ -n "$score" ] && awk "BEGIN{exit !($score <= 4.0)}"; then pass security "systemd-analyze security: $score"; else fail security "systemd-analyze security: '$sec'"; fi

	# Enforcement under the hardening: a system rule (root is an administrator for polkit) denies bash's
	# connections to port 9: connect() fails with EPERM.
	if out=$(tattlectl --no-interactive rules add --deny --app /usr/bin/bash --remote 127.0.0.1 --port "$deny_port" --id vm-deny 2>&1); then
		pass rule-add "tattlectl rules add over D-Bus, authorized by polkit: $out"
	else
		fail rule-add "$out"
	fi
	sleep 1
	expect enforce-deny EPERM "$(tryconnect 127.0.0.1 "$deny_port")" "a deny rule makes connect() fail"
	# polkit decides: a user who is no administrator may not add system rules.
	useradd -m alice 2>/dev/null
	runuser -u alice -- tattlectl --no-interactive rules add --deny --app any --remote 127.0.0.2 >/tmp/alice.log 2>&1
	expect polkit-denies 4 "$?" "a non-administrator's system rule: tattlectl exit status (4 = access denied)"

	# Holding: an undecided connection waits for the terminal agent, which allows it once.
	res=$(hold-check 8080 2>&1)
	case "$res" in
	"asked=yes connect=connected"*) pass hold "held, asked and answered by tattlectl agent: $res" ;;
	*) fail hold "$res" ;;
	esac

	# D-Bus activation: stopped, the helper is started by systemd on the first call; the pinned programs
	# enforce meanwhile.
	systemctl stop tattled.service
	expect stopped inactive "$(systemctl is-active tattled.service)" "systemctl stop"
	expect enforce-while-stopped EPERM "$(tryconnect 127.0.0.1 "$deny_port")" "pinned programs enforce with the helper stopped"
	tattlectl status >/tmp/status.log 2>&1
	expect dbus-activation "0 active" "$? $(systemctl is-active tattled.service)" "tattlectl status activates the helper through systemd"
	logs </tmp/status.log
	# Names: the DNS answer capture (a BPF program of its own) works under the hardening too.
	case "$(grep '^Host names:' /tmp/status.log)" in
	*"learned from DNS answers in the kernel"*) pass names "$(grep '^Host names:' /tmp/status.log | cut -c1-80)" ;;
	*) fail names "$(grep '^Host names:' /tmp/status.log)" ;;
	esac
	expect no-problems "Problems:        0" "$(grep '^Problems:' /tmp/status.log)" "the helper reports no problems under the hardening"
	wait_active 30 || true

	# Watchdog: a stopped (SIGSTOP) helper misses its pings; systemd restarts it.
	old=$(show MainPID)
	restarts=$(show NRestarts)
	kill -STOP "$old"
	t0=$(uptime_s)
	sleep 3
	expect enforce-while-hung EPERM "$(tryconnect 127.0.0.1 "$deny_port")" "pinned programs enforce with the helper hung"
	if wait_active 120 "$old"; then
		t=$(awk "BEGIN{printf \"%.1f\", $(uptime_s) - $t0}")
		figure watchdog_restart_s "$t (WatchdogSec=$(show WatchdogUSec))"
		pass watchdog "SIGSTOPped helper replaced after $t s: pid $old -> $(show MainPID), restarts $restarts -> $(show NRestarts)"
	else
		fail watchdog "helper pid $old not replaced within 120 s: $(show ActiveState) $(show MainPID)"
	fi
	journalctl -u tattled.service --no-pager -n 200 | grep -i -m 3 'watchdog' | logs
	expect enforce-after-restart EPERM "$(tryconnect 127.0.0.1 "$deny_port")" "the restarted helper enforces"

	# journald: structured fields from the helper's slog records.
	entry=$(journalctl -u tattled.service -o json --no-pager | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") == "tattled" and "BACKEND" in e and "CODE_FILE" in e:
        print(json.dumps({k: e[k] for k in ("MESSAGE", "PRIORITY", "BACKEND", "VERSION", "REUSED_PINS", "CODE_FUNC", "SYSLOG_IDENTIFIER") if k in e}))
        break')
	if [ -n "$entry" ]; then pass journald "journalctl -o json: $entry"; else fail journald "no entry with BACKEND and CODE_FILE fields"; journalctl -u tattled -o json --no-pager | tail -n 3 | logs; fi

	# Settings and rules to find again after the reboot.
	tattlectl --no-interactive mode silent-allow >/dev/null 2>&1
	expect mode-set silent-allow "$(tattlectl mode 2>/dev/null | awk '{print $NF}')" "tattlectl mode silent-allow"
	echo 2 >"$phasefile"
	sync
	say "PHASE-DONE 1"
	# A cold reboot: the test starts the machine again (a warm reboot under TCG stalled the second boot).
	systemctl poweroff
	exit 0
fi

if [ "$phase" = 2 ]; then
	wait_active 60 || true
	expect boot-active active "$(systemctl is-active tattled.service)" "started at boot"
	# Before the network: network-pre.target may only be reached once tattled's start job is done (READY=1).
	# ActiveEnterTimestamp is no measure of that: it is the *last* activation, moved by any restart (the watchdog,
	# Restart=on-failure, a D-Bus activation). PID 1's own journal records are: the first "Started" of
	# tattled.service (its start job done, JOB_RESULT=done) must come before "Reached target network-pre.target",
	# in the journal's order (one writer, PID 1), and the unit must be ordered Before= the target it Wants=.
	order=$(journalctl -b -o json --no-pager _PID=1 MESSAGE_ID=39f53479d3a045ac8e11786248231fbf | python3 -c '
import json, sys
first = {}
for line in sys.stdin:
    e = json.loads(line)
    u = e.get("UNIT")
    if u in ("tattled.service", "network-pre.target") and e.get("JOB_TYPE") == "start" and u not in first:
        first[u] = (len(first), int(e["__MONOTONIC_TIMESTAMP"]), e.get("JOB_RESULT"))
t, n = first.get("tattled.service"), first.get("network-pre.target")
print(t[1] if t else 0, n[1] if n else 0, t[2] if t else "-", "yes" if t and n and t[0] < n[0] else "no")')
	read -r ready netpre result tfirst <<<"$order"
	before=$(show Before)
	wants=$(show Wants)
	figure boot_to_enforcing_s "$(awk "BEGIN{printf \"%.2f\", $ready / 1e6}") (kernel start to the first READY=1 of this boot; rules applied before READY)"
	figure boot_restarts "$(show NRestarts) (restarts of tattled.service since boot)"
	case " $before " in *" network-pre.target "*) ordered=yes ;; *) ordered=no ;; esac
	case " $wants " in *" network-pre.target "*) wanted=yes ;; *) wanted=no ;; esac
	if [ "$ordered" = yes ] && [ "$wanted" = yes ] && [ "$result" = done ] && [ "$tfirst" = yes ]; then
		pass before-network "started (READY=1) at $ready us, network-pre.target reached at $netpre us, after it in PID 1's journal; Before= and Wants= network-pre.target"
	else
		fail before-network "first start: result $result at $ready us, network-pre.target at $netpre us, tattled first: $tfirst; Before=network-pre.target: $ordered, Wants=: $wanted"
		journalctl -b --no-pager -u tattled.service -u network-pre.target | head -n 40 | logs
	fi
	systemd-analyze 2>&1 | head -n 1 | logs
	expect rule-survived 1 "$(tattlectl rules list 2>/dev/null | grep -c vm-deny)" "the deny rule is there after the reboot"
	expect enforce-after-reboot EPERM "$(tryconnect 127.0.0.1 "$deny_port")" "and enforces"
	expect mode-survived silent-allow "$(tattlectl mode 2>/dev/null | awk '{print $NF}')" "the mode setting survived"
	if apt-get remove -y -q tattle >/tmp/apt.log 2>&1; then pass apt-remove "apt-get remove tattle"; else fail apt-remove "apt-get remove failed"; logs </tmp/apt.log; fi
	if [ -e /sys/fs/bpf/tattle ]; then fail removed-pins "/sys/fs/bpf/tattle remains: $(ls /sys/fs/bpf/tattle)"; else pass removed-pins "no /sys/fs/bpf/tattle"; fi
	if nft list table inet tattle >/dev/null 2>&1; then fail removed-nft "table inet tattle remains"; else pass removed-nft "no nft table inet tattle"; fi
	# The removal stops the helper on purpose: the unit ends inactive (then unloaded), never failed.
	unit=$(systemctl show -p LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus tattled.service | tr '\n' ' ')
	if pgrep -x tattled >/dev/null; then
		fail removed-unit "a tattled process still runs ($unit)"
	elif [ "$(systemctl is-failed tattled.service)" = failed ]; then
		fail removed-unit "the unit was left failed: $unit"
		logs </tmp/apt.log
		journal_fields 40 | logs
	else
		pass removed-unit "no tattled process, unit $(systemctl is-active tattled.service): $unit"
	fi
	expect removed-enforce ECONNREFUSED "$(tryconnect 127.0.0.1 "$deny_port")" "nothing denies any more"
	say "PHASE-DONE 2"
	systemctl poweroff
fi
