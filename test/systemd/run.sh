#!/bin/bash
# The user story under a real systemd: a Debian 12 container booted with
# systemd as PID 1 (systemd-nspawn -b, loopback only), greyd's .deb from
# build/pkg/ installed in it as an admin would, Postfix configured as
# README.md says, and every promise of the packaged units asserted on what
# an admin sees: SMTP replies, the mailbox, systemctl, the journal, files,
# greyd's admin commands, Redis (Debian's redis-server) and the metrics.
# See README.md here for the steps and what each one checks.
#
#   make systemd-test          # make package, then this
#   test/systemd/run.sh        # as root on Debian 12, after make package
#
# It installs systemd-container and mmdebstrap on the host if missing. The
# container's root is built once by mmdebstrap (--variant=minbase plus
# test/systemd/packages, from the host's apt sources) and cached in
# /var/tmp/greyd-systemd-root-<hash of the recipe>; each run boots a
# throw-away overlay of it and powers it off at the end, pass or fail,
# leaving no container, process or mount behind.
#
# Environment: SYSTEMD_TEST_CACHE (where roots and work files go,
# /var/tmp), SYSTEMD_TEST_TIMEOUT (the whole run's budget in seconds, 1200),
# SYSTEMD_TEST_KEEP=1 (keep the work directory with the container's files
# and logs).

# Scripts for the container are single-quoted on purpose: they expand there.
# shellcheck disable=SC2016
set -eu
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/test/systemd
SUITE=bookworm
CACHE=${SYSTEMD_TEST_CACHE:-/var/tmp}
BUDGET=${SYSTEMD_TEST_TIMEOUT:-1200}
KEEP=${SYSTEMD_TEST_KEEP:-0}

SOCK=/var/spool/postfix/greyd/socket
RCPT=story@story.test
RUN=$(date +%H%M%S)
# Postfix's replies to RCPT TO: greylisted, accepted, greyd unreachable.
GREYLISTED='^450 4\.2\.0 <story@story\.test>: Recipient address rejected: Greylisted, see http://postgrey\.schweikert\.ch/help/story\.test\.html$'
ACCEPTED='^250 2\.1\.5 Ok$'
NO_GREYD='^451 4\.3\.5 <story@story\.test>: Recipient address rejected: Server configuration problem$'

WORK=
NSPAWN=
PID1=
PID1_START=
MOUNTED=
CURSOR=
NSTEP=0
STEP="start"
SIGNAL=

say() { printf 'systemd-test: %s\n' "$*"; }
ok() { printf 'systemd-test:     ok: %s\n' "$*"; }
fail() {
	printf 'systemd-test: FAIL in step %d (%s): %s\n' "$NSTEP" "$STEP" "$*" >&2
	exit 1
}
step() {
	NSTEP=$((NSTEP + 1))
	STEP=$*
	[ "$SECONDS" -lt "$BUDGET" ] || fail "over the time budget of ${BUDGET}s (SYSTEMD_TEST_TIMEOUT)"
	say "[$NSTEP] $* (at ${SECONDS}s)"
}

# ---------------------------------------------------------------- cleanup

diagnose() {
	echo "==================== systemctl status greyd.socket greyd.service"
	inside -t 10 systemctl status --no-pager -l greyd.socket greyd.service 2>&1 || true
	echo "==================== journalctl -u greyd.socket -u greyd.service (last 80)"
	inside -t 10 journalctl --no-pager -n 80 -u greyd.socket -u greyd.service 2>&1 || true
	echo "==================== journalctl -u postfix@- (last 30)"
	inside -t 10 journalctl --no-pager -n 30 -u postfix@-.service 2>&1 || true
	echo "==================== journalctl -u greyd-p0f.service (last 30)"
	inside -t 10 journalctl --no-pager -n 30 -u greyd-p0f.service 2>&1 || true
	echo "==================== container console (last 30 lines)"
	tail -n 30 "$WORK/console.log" 2>/dev/null || true
	echo "===================="
}

# stopped PID: true when the process is gone (a zombie counts as gone).
stopped() {
	local st
	st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

# start_time PID: when the process started (clock ticks since boot), to
# tell it from a later process that got the same pid.
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'; }

# find_pid1: sets PID1 (and PID1_START) to the container's PID 1, nspawn's
# child whose pid is 1 in its own namespace, if it has one yet.
find_pid1() {
	local p
	# shellcheck disable=SC2013 # the file holds pids separated by spaces
	for p in $(cat /proc/"$NSPAWN"/task/*/children 2>/dev/null); do
		awk '/^NSpid:/ { one = (NF > 2 && $NF == 1) } END { exit !one }' "/proc/$p/status" 2>/dev/null || continue
		PID1=$p
		PID1_START=$(start_time "$p")
		[ -n "$PID1_START" ] || PID1=
		return 0
	done
	return 0
}

# init_alive: the container's PID 1 still runs: the same process (pid and
# start time), whether or not systemd-nspawn does. If nspawn dies, its
# container lives on without it, reparented to the host's init.
init_alive() { [ -n "$PID1" ] && ! stopped "$PID1" && [ "$(start_time "$PID1")" = "$PID1_START" ]; }
nspawn_alive() { [ -n "$NSPAWN" ] && ! stopped "$NSPAWN"; }
container_gone() { ! nspawn_alive && ! init_alive; }

# record_pids: the work directory's pids file, for reap_stale_runs of a
# later run should this one be killed before its cleanup.
record_pids() { echo "$$ ${NSPAWN:--} ${PID1:--} ${PID1_START:--}" >"$WORK/pids"; }

# halt_container: powers the container off (SIGRTMIN+4 to its systemd is
# "systemctl poweroff"; sent again every 2 s, since a PID 1 that has not set
# up its handlers yet ignores it); after 30 s asks nspawn to stop it, after
# 10 s more kills the container's PID 1 (which ends every process of its
# PID namespace) and nspawn. Each by its pid, and the container's PID 1 also
# when nspawn is gone already.
halt_container() {
	local i
	[ -n "$NSPAWN$PID1" ] || return 0
	[ -n "$PID1" ] || ! nspawn_alive || find_pid1
	for i in $(seq 150); do
		container_gone && break
		if [ $((i % 10)) -eq 1 ] && init_alive; then
			kill -s RTMIN+4 "$PID1" 2>/dev/null
		fi
		sleep 0.2
	done
	if ! container_gone && nspawn_alive; then
		say "the container did not power off within 30s: stopping systemd-nspawn (pid $NSPAWN)"
		kill -TERM "$NSPAWN" 2>/dev/null
		for _ in $(seq 50); do
			container_gone && break
			sleep 0.2
		done
	fi
	if ! container_gone; then
		if init_alive; then
			say "killing the container's PID 1 (pid $PID1)"
			kill -KILL "$PID1" 2>/dev/null
		fi
		if nspawn_alive; then
			say "killing systemd-nspawn (pid $NSPAWN)"
			kill -KILL "$NSPAWN" 2>/dev/null
		fi
		for _ in $(seq 50); do
			container_gone && break
			sleep 0.2
		done
		container_gone || say "still running 10s after SIGKILL: the container's PID 1 (pid ${PID1:-unknown}) or systemd-nspawn (pid ${NSPAWN:-none})"
	fi
	[ -z "$NSPAWN" ] || wait "$NSPAWN" 2>/dev/null || true
	NSPAWN=
	PID1=
	PID1_START=
	[ -z "$WORK" ] || record_pids
}

# reap_stale_runs: containers and mounts of earlier runs that were killed
# before their cleanup (SIGKILL, a CI timeout): each work directory has the
# pids of its script, nspawn and the container's PID 1 (with its start
# time); a directory whose script is gone is cleaned up here.
reap_stale_runs() {
	local d script nsp p1 p1start
	for d in "$CACHE"/greyd-systemd-run.*; do
		[ -f "$d/pids" ] || continue
		read -r script nsp p1 p1start <"$d/pids" || continue
		if [ "$script" != - ] && ! stopped "$script" && grep -qs 'run\.sh' "/proc/$script/cmdline"; then
			continue # a run in progress
		fi
		say "    cleaning up after a run that was killed: $d"
		if [ "$p1" != - ] && ! stopped "$p1" && [ "$(start_time "$p1")" = "$p1start" ]; then
			say "    killing its container's PID 1 (pid $p1)"
			kill -KILL "$p1" 2>/dev/null
		fi
		if [ "$nsp" != - ] && ! stopped "$nsp" && grep -qx systemd-nspawn "/proc/$nsp/comm" 2>/dev/null; then
			kill -KILL "$nsp" 2>/dev/null
		fi
		for _ in $(seq 50); do
			{ [ "$p1" = - ] || stopped "$p1"; } && break
			sleep 0.2
		done
		if grep -qF " $d/root " /proc/mounts; then
			umount "$d/root" 2>/dev/null || umount -l "$d/root" || say "    cannot unmount $d/root"
		fi
		rm -rf --one-file-system "$d"
	done
	return 0
}

unmount_root() {
	[ -n "$MOUNTED" ] || return 0
	umount "$WORK/root" 2>/dev/null || umount -l "$WORK/root" || say "cannot unmount $WORK/root"
	MOUNTED=
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [ "$rc" -ne 0 ] && [ -z "$SIGNAL" ] && init_alive; then
		diagnose >&2
	fi
	halt_container
	unmount_root
	if [ -n "$WORK" ]; then
		if [ "$KEEP" = 1 ]; then
			say "kept $WORK (SYSTEMD_TEST_KEEP=1)"
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	if [ "$rc" -eq 0 ]; then
		say "PASS: $NSTEP steps in ${SECONDS}s"
	elif [ -n "$SIGNAL" ]; then
		say "INTERRUPTED by $SIGNAL in step $NSTEP ($STEP) after ${SECONDS}s"
	else
		say "FAILED in step $NSTEP ($STEP) after ${SECONDS}s"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'SIGNAL=SIGINT; exit 130' INT
trap 'SIGNAL=SIGTERM; exit 143' TERM

# ------------------------------------------------------- inside the container

# inside [-t SECONDS] CMD...: runs CMD in the container (all its namespaces,
# its root and working directory), with a clean environment; killed after
# SECONDS (60).
inside() {
	local t=60
	if [ "$1" = -t ]; then
		t=$2
		shift 2
	fi
	timeout -k 5 "$t" nsenter -t "$PID1" -m -u -i -n -p -r -w \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb \
		SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive "$@"
}

# insh [-t SECONDS] SCRIPT [ARG...]: runs a shell script in the container.
insh() {
	local t=60
	if [ "$1" = -t ]; then
		t=$2
		shift 2
	fi
	local script=$1
	shift
	inside -t "$t" /bin/sh -c "$script" sh "$@"
}

# wait_until DESC SECONDS CMD...: CMD every 0.2 s until it succeeds.
wait_until() {
	local desc=$1 end=$((SECONDS + $2))
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || fail "$desc"
		sleep 0.2
	done
}

# prop UNIT PROPERTY: a property of a unit (systemctl show).
prop() { inside systemctl show -p "$2" --value "$1"; }

# state UNIT: its ActiveState.
state() { prop "$1" ActiveState; }

is_state() { [ "$(state "$1")" = "$2" ]; }

mainpid() { prop greyd.service MainPID; }

# running_greyd: true when greyd.service is active with a main process.
running_greyd() { is_state greyd.service active && [ "$(mainpid)" -gt 0 ]; }

# new_greyd OLDPID: greyd.service active with another main process.
new_greyd() {
	local p
	is_state greyd.service active || return 1
	p=$(mainpid)
	[ "$p" -gt 0 ] && [ "$p" != "$1" ]
}

# replaced OLDPID WHAT: within 15 s of WHAT, greyd.service is active again
# with another main process.
replaced() {
	local end=$((SECONDS + 15))
	until new_greyd "$1"; do
		[ "$SECONDS" -lt "$end" ] ||
			fail "greyd.service not running again within 15s of $2: $(state greyd.service), result $(prop greyd.service Result), main pid $(mainpid) (was $1), $(prop greyd.service NRestarts) restarts"
		sleep 0.2
	done
}

# mode PATH: "type owner:group mode" of PATH in the container.
mode() { inside stat -c '%F %U:%G %a' "$1" 2>/dev/null || echo missing; }

expect_mode() {
	local got
	got=$(mode "$1")
	[ "$got" = "$2" ] || fail "$1: $got, want $2"
}

absent() { ! inside test -e "$1"; }

expect_absent() { absent "$1" || fail "$1 exists ($(mode "$1")), want it gone"; }

inode() { inside stat -c %i "$1" 2>/dev/null || echo missing; }

# greyd_pids: pids of every process named greyd in the container.
greyd_pids() {
	insh 'for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = greyd ] && echo "${p#/proc/}"; done; true'
}

# --------------------------------------------------------------- journal

# mark: later journal checks only see records written after this point.
# The cursor is the greyd unit's last record: with a filter, journalctl
# --after-cursor skips the first match when the cursor's record is not one.
mark() {
	CURSOR=$(inside journalctl -q -u greyd.service -n 1 -o export | sed -n 's/^__CURSOR=//p')
}

# records: the greyd unit's journal records (journalctl -u greyd) since
# the mark, one JSON object per line.
records() {
	inside journalctl -q --no-pager -u greyd.service -o json ${CURSOR:+"--after-cursor=$CURSOR"}
}

# logged PRIORITY ERE [SECONDS]: since the mark, within SECONDS (5),
# greyd itself (identifier greyd, facility mail) logged a line matching ERE
# from its start, at PRIORITY (journald's PRIORITY field, from greyd's "<N>"
# prefix).
logged() {
	local prio=$1 re=$2 wait=${3:-5} m
	for _ in $(seq $((wait * 5))); do
		m=$(records | grep -E "\"MESSAGE\":\"$re" | grep -F '"SYSLOG_IDENTIFIER":"greyd"') || true
		if [ -n "$m" ]; then
			printf '%s\n' "$m" | grep -qF '"SYSLOG_FACILITY":"2"' ||
				fail "journal: greyd's line /$re/ is not in facility mail (2): $(printf '%s\n' "$m" | head -n1)"
			printf '%s\n' "$m" | grep -qF "\"PRIORITY\":\"$prio\"" && return 0
			fail "journal: greyd logged /$re/ with $(printf '%s\n' "$m" | grep -o '"PRIORITY":"[0-9]"' | head -n1), want priority $prio"
		fi
		sleep 0.2
	done
	fail "journal: journalctl -u greyd has no line /$re/ of greyd (priority $prio) within ${wait}s"
}

# clean_start PID: since the mark, greyd's main process PID logged no
# warning and no error. Sandbox and packaging problems (a blocked system
# call, a missing directory) show up here first.
clean_start() {
	local bad
	bad=$(records | grep -F "\"_PID\":\"$1\"" | grep -E '"PRIORITY":"[0-4]"' | grep -o '"MESSAGE":"[^"]*' | cut -c12-) || true
	[ -z "$bad" ] || fail "greyd (pid $1) logged warnings or errors at start under the packaged unit: $bad"
}

# sd_logged ERE: within 10 s of the mark, systemd logged ERE about greyd.
sd_logged() {
	for _ in $(seq 50); do
		records | grep -F '"SYSLOG_IDENTIFIER":"systemd"' | grep -qE "\"MESSAGE\":\"$1" && return 0
		sleep 0.2
	done
	fail "journal: systemd logged no /$1/ about greyd.service within 10s"
}

# ---------------------------------------- admin commands, Redis, metrics

CTL=/run/greyd/control.sock

# cli NAME STATUS CMD...: CMD (one of greyd's admin commands) in the
# container exits with STATUS; its output (stdout and stderr) is kept as
# NAME.
cli() {
	local name=$1 want=$2 rc=0
	shift 2
	inside "$@" >"$WORK/cli/$name.txt" 2>&1 || rc=$?
	if [ "$rc" != "$want" ]; then
		sed 's/^/systemd-test:     | /' "$WORK/cli/$name.txt" >&2
		fail "$* exited with $rc, want $want (output above)"
	fi
}

# says NAME ERE: a line of the output of cli NAME matches ERE.
says() {
	grep -qE "$2" "$WORK/cli/$1.txt" && return 0
	sed 's/^/systemd-test:     | /' "$WORK/cli/$1.txt" >&2
	fail "the output of \"$1\" (above) has no line /$2/"
}

# control_up: greyd answers on its control socket (greyd stats as root).
control_up() { inside -t 10 greyd stats >/dev/null 2>&1; }

redis_up() { [ "$(inside -t 10 redis-cli ping 2>/dev/null)" = PONG ]; }

# redis_key PART...: the one key of the container's Redis that contains
# every PART (fixed strings), or fails.
redis_key() {
	local keys k part
	keys=$(inside -t 10 redis-cli --scan --pattern '*') || fail "redis-cli --scan failed"
	k=$(printf '%s\n' "$keys")
	for part in "$@"; do
		k=$(printf '%s\n' "$k" | grep -F -- "$part") || true
	done
	[ "$(printf '%s' "$k" | grep -c .)" -eq 1 ] ||
		fail "Redis: want one key with $*, have: $(printf '%s\n' "$keys" | tr '\n' ' ')"
	printf '%s\n' "$k"
}

# scrape NAME: GET http://127.0.0.1:9386/metrics in the container, with
# bash's /dev/tcp (minbase has neither curl nor wget); the body is kept as
# NAME.
scrape() {
	inside -t 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9386 &&
		printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:9386\r\n\r\n" >&3 && cat <&3' 2>&1 |
		tr -d '\r' >"$WORK/$1.http" || true
	head -n1 "$WORK/$1.http" | grep -qE '^HTTP/1\.[01] 200 ' ||
		fail "GET http://127.0.0.1:9386/metrics: \"$(head -n1 "$WORK/$1.http")\", want 200"
	sed '1,/^$/d' "$WORK/$1.http" >"$WORK/$1.prom"
}

# metric NAME SERIES: the value of SERIES (name{labels} as the text format
# writes it) in scrape NAME.
metric() {
	local l
	l=$(awk -v s="$2 " 'index($0, s) == 1 { print; exit }' "$WORK/$1.prom")
	[ -n "$l" ] || fail "GET /metrics: no $2 (metrics kept as $1.prom)"
	printf '%s\n' "${l##* }"
}

# ------------------------------------------------------------------- SMTP

# smtp NAME CLIENT SENDER: one SMTP session from CLIENT (a loopback address
# outside Postfix's mynetworks) to $RCPT; the transcript is kept as NAME.
smtp() {
	inside -t 50 swaks --server 127.0.0.1 --port 25 --local-interface "$2" \
		--helo client.example --from "$3" --to "$RCPT" \
		--header "Subject: greyd systemd-test $RUN [$1]" --timeout 45 \
		>"$WORK/smtp/$1.txt" 2>&1 || true
}

# rcpt NAME: Postfix's reply to RCPT TO in session NAME.
rcpt() {
	awk '/^ -> RCPT TO:/ { if ((getline line) > 0) { sub(/^<(-|\*\*) +/, "", line); print line }; exit }' "$WORK/smtp/$1.txt"
}

# expect_rcpt NAME ERE: the RCPT reply of session NAME matches ERE.
expect_rcpt() {
	local got
	got=$(rcpt "$1")
	if ! [[ $got =~ $2 ]]; then
		sed 's/^/systemd-test:     | /' "$WORK/smtp/$1.txt" >&2
		fail "SMTP session $1: RCPT TO answered \"$got\", want /$2/"
	fi
}

# headers NAME: for each copy of session NAME's message in the mailbox, its
# X-Greylist header lines ("|"-separated), or "none"; one line per copy.
headers() {
	inside cat /var/mail/story 2>/dev/null | awk -v tok="[$1]" '
		function flush() { if (msg && hit) print (h == "" ? "none" : h) }
		/^From / { flush(); msg = 1; inhdr = 1; hit = 0; h = ""; next }
		inhdr && /^$/ { inhdr = 0; next }
		inhdr && /^X-Greylist:/ { h = (h == "" ? $0 : h "|" $0) }
		inhdr && /^Subject:/ && index($0, tok) { hit = 1 }
		END { flush() }'
}

# delivered NAME: session NAME's message is in the mailbox within 15 s,
# once; prints its X-Greylist header(s) or "none".
delivered() {
	local h=
	for _ in $(seq 75); do
		h=$(headers "$1")
		[ -n "$h" ] && break
		sleep 0.2
	done
	[ -n "$h" ] || fail "the message of SMTP session $1 was not delivered to /var/mail/story within 15s"
	[ "$(printf '%s\n' "$h" | wc -l)" -eq 1 ] || fail "the message of SMTP session $1 was delivered more than once"
	printf '%s\n' "$h"
}

# ------------------------------------------------------------------ host

install_host_tools() {
	local missing="" pair
	for pair in systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux \
		timeout:coreutils sha256sum:coreutils; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
	done
	[ -n "$missing" ] || return 0
	say "apt-get install$missing"
	local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends install)
	# shellcheck disable=SC2086 # a list of package names
	if ! DEBIAN_FRONTEND=noninteractive timeout 600 "${apt[@]}" $missing >/tmp/greyd-systemd-apt.log 2>&1; then
		timeout 300 apt-get -q -o DPkg::Lock::Timeout=300 update >>/tmp/greyd-systemd-apt.log 2>&1 || true
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive timeout 600 "${apt[@]}" $missing >>/tmp/greyd-systemd-apt.log 2>&1 ||
			{ tail -n 20 /tmp/greyd-systemd-apt.log >&2; fail "apt-get install$missing"; }
	fi
	rm -f /tmp/greyd-systemd-apt.log
}

PACKAGES=$(sed -e 's/#.*//' "$HERE/packages" | xargs)

# host_sources: the host's apt source files for $SUITE (the container uses
# the same mirrors); none means mmdebstrap's default, deb.debian.org.
host_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		sed 's/#.*//' "$f" | grep -Eq "(^|[[:space:]])$SUITE(-[a-z]+)?([[:space:]]|\$)" && echo "$f"
	done
	return 0
}

# build_root DIR: the container's root. The hash of this function and of
# the package list names the cache, so changing either rebuilds it.
build_root() {
	local dir=$1 cvu="" cdate="" t
	local -a sources opts
	mapfile -t sources < <(host_sources)
	# The host's apt settings for stale Release files (snapshot mirrors).
	eval "$(apt-config shell cvu Acquire::Check-Valid-Until cdate Acquire::Check-Date)"
	opts=(--variant=minbase "--include=${PACKAGES// /,}")
	[ -z "$cvu" ] || opts+=("--aptopt=Acquire::Check-Valid-Until \"$cvu\"")
	[ -z "$cdate" ] || opts+=("--aptopt=Acquire::Check-Date \"$cdate\"")
	timeout 900 mmdebstrap "${opts[@]}" "$SUITE" "$dir" "${sources[@]}" >"$dir.log" 2>&1 ||
		{ tail -n 30 "$dir.log" >&2; fail "mmdebstrap (log above)"; }
	rm -f "$dir.log"
	# A fixed host name (greyd's X-Greylist header names it), and no
	# timers that would reach for the network or the disk during a run.
	echo greyd-test >"$dir/etc/hostname"
	for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
		fstrim.timer logrotate.timer man-db.timer; do
		[ -e "$dir/lib/systemd/system/$t" ] && ln -sf /dev/null "$dir/etc/systemd/system/$t"
	done
	# redis-server's package enables it; the story starts it when it needs it.
	systemctl --root="$dir" --quiet disable redis-server.service ||
		fail "systemctl --root disable redis-server.service"
	return 0
}

# cached_root: sets ROOTFS to the cached root, building it if needed.
cached_root() {
	local key base d t0
	key=$( (declare -f build_root host_sources && echo "$PACKAGES $SUITE") | sha256sum | cut -c1-16)
	base=$CACHE/greyd-systemd-root-$key
	mkdir -p "$CACHE"
	exec 9>"$CACHE/greyd-systemd-root.lock"
	flock -w 900 9 || fail "another run holds $CACHE/greyd-systemd-root.lock"
	# Roots of other recipes, and builds that died, unless mounted.
	for d in "$CACHE"/greyd-systemd-root-*; do
		if [ -e "$d" ] && [ "$d" != "$base" ] && ! grep -qF "$d" /proc/mounts; then
			rm -rf --one-file-system "$d"
		fi
	done
	if [ -d "$base" ]; then
		say "    cached: $base"
	else
		say "    building $base: mmdebstrap --variant=minbase $SUITE + $PACKAGES"
		t0=$SECONDS
		rm -rf --one-file-system "$base.tmp"
		build_root "$base.tmp"
		mv "$base.tmp" "$base"
		say "    built in $((SECONDS - t0))s ($(du -sh "$base" | cut -f1))"
	fi
	exec 9>&-
	ROOTFS=$base
}

# build_upgrade V1 DIR: builds greyd V1+1 (patch level) from a copy of the
# source tree with dist/package.sh into DIR; VERSION, debian/changelog and
# CHANGELOG.md get the new version in the copy only.
build_upgrade() {
	local v1=$1 dir=$2 v2 src=$WORK/src maint epoch
	v2=$(echo "$v1" | awk -F. '{ printf "%d.%d.%d", $1, $2, $3 + 1 }')
	dpkg --compare-versions "$v2" gt "$v1" || fail "cannot make a version above $v1"
	mkdir "$src"
	tar -C "$ROOT" --exclude=./.git --exclude=./build -cf - . | tar -C "$src" -xf -
	echo "$v2" >"$src/VERSION"
	maint=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$ROOT/debian/changelog" | head -n1)
	epoch=$(date +%s)
	{
		printf 'greyd (%s) unstable; urgency=medium\n\n  * Upgrade test build (test/systemd/run.sh).\n\n -- %s  %s\n\n' \
			"$v2" "$maint" "$(date -u -R -d "@$epoch")"
		cat "$ROOT/debian/changelog"
	} >"$src/debian/changelog"
	awk -v v="$v2" '!done && /^## / { print "## " v "\n\n- Upgrade test build.\n"; done = 1 } { print }' \
		"$ROOT/CHANGELOG.md" >"$src/CHANGELOG.md"
	(cd "$src" && SOURCE_DATE_EPOCH=$epoch timeout 600 ./dist/package.sh) >"$WORK/package-$v2.log" 2>&1 ||
		{ tail -n 30 "$WORK/package-$v2.log" >&2; fail "dist/package.sh for $v2 (log above)"; }
	cp "$src"/build/pkg/greyd_"$v2"_*.deb "$dir/"
	rm -rf "$src"
	V2=$v2
}

# boot: boots the root at $WORK/root; sets NSPAWN and PID1.
boot() {
	local t0=$SECONDS st="" end
	SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --register=no --keep-unit \
		--private-network --machine="greyd-test-$$" -D "$WORK/root" -b --console=pipe \
		</dev/null >>"$WORK/console.log" 2>&1 &
	NSPAWN=$!
	record_pids
	for _ in $(seq 100); do
		find_pid1
		[ -z "$PID1" ] || break
		stopped "$NSPAWN" && { tail -n 20 "$WORK/console.log" >&2; fail "systemd-nspawn exited (console above)"; }
		sleep 0.1
	done
	[ -n "$PID1" ] || fail "no container PID 1 under systemd-nspawn (pid $NSPAWN) within 10s"
	record_pids
	# Before it execs systemd, its root is not the container's yet.
	wait_until "the container's PID 1 ($PID1) did not become systemd within 10s" 10 \
		grep -qx systemd "/proc/$PID1/comm"
	# Until PID 1 listens, systemctl says "offline"; then --wait waits for
	# the end of the boot.
	end=$((SECONDS + 90))
	while [ "$SECONDS" -lt "$end" ]; do
		st=$(inside -t 60 systemctl is-system-running --wait 2>/dev/null) || true
		case $st in running | degraded | maintenance | stopping) break ;; esac
		stopped "$NSPAWN" && { tail -n 20 "$WORK/console.log" >&2; fail "systemd-nspawn exited (console above)"; }
		sleep 0.2
	done
	if [ "$st" != running ]; then
		inside -t 10 systemctl --failed --no-pager >&2 || true
		fail "the container's systemd is \"${st:-not answering}\" after 90s, want running"
	fi
	ok "systemd $(inside systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') is PID 1 (host pid $PID1), system running after $((SECONDS - t0))s"
}

# power_off: systemctl poweroff; the container's PID 1 and nspawn must be
# gone within 30 s.
power_off() {
	inside -t 10 systemctl poweroff >/dev/null 2>&1 || true
	for _ in $(seq 150); do
		container_gone && break
		sleep 0.2
	done
	init_alive && fail "the container's PID 1 (pid $PID1) still runs 30s after systemctl poweroff"
	nspawn_alive && fail "systemd-nspawn (pid $NSPAWN) still runs 30s after systemctl poweroff"
	wait "$NSPAWN" 2>/dev/null || true
	NSPAWN=
	PID1=
	PID1_START=
	record_pids
}

# snapshot: what the package may touch, for comparing before and after.
snapshot() {
	insh 'find /etc /usr /var/lib -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/lib/ucf \
		-o -path /var/lib/systemd/timers -o -path /var/lib/postfix -o -path /var/lib/rsyslog -o -path /var/lib/redis \) -prune \
		-o -printf "%p %M %u:%g\n"; find /var/spool/postfix -maxdepth 1 -printf "%p %M %u:%g\n"' |
		grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-? |^/etc/\.pwd\.lock ' | sort
}

# ------------------------------------------------------------------- main

step "host: root, tools, the package to test"
[ "$(id -u)" -eq 0 ] || fail "run as root (it boots a container)"
install_host_tools
grep -qw overlay /proc/filesystems || say "    no overlayfs: each run copies the root instead"
ARCH=$(dpkg --print-architecture)
set -- "$ROOT"/build/pkg/greyd_*_"$ARCH".deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	fail "want exactly one build/pkg/greyd_*_$ARCH.deb (run make package)"
fi
DEB1=$1
V1=$(dpkg-deb -f "$DEB1" Version)
ok "$(basename "$DEB1") (greyd $V1); host: $(systemd-nspawn --version | head -n1), $(mmdebstrap --version)"

step "Debian 12 root (mmdebstrap --variant=minbase $SUITE), cached under $CACHE"
reap_stale_runs
cached_root

WORK=$(mktemp -d "$CACHE/greyd-systemd-run.XXXXXX")
record_pids
mkdir "$WORK/smtp" "$WORK/cli" "$WORK/pkgs" "$WORK/upper" "$WORK/ovl" "$WORK/root"
cp "$DEB1" "$WORK/pkgs/"

step "a second package, greyd $V1 + 1, for the upgrade (dist/package.sh on a copy of the tree)"
t0=$SECONDS
V2=
build_upgrade "$V1" "$WORK/pkgs"
DEB2=$(basename "$WORK"/pkgs/greyd_"$V2"_*.deb)
ok "$DEB2 in $((SECONDS - t0))s"

step "boot the container: systemd as PID 1, private network (loopback only)"
if mount -t overlay greyd-systemd-test -o "lowerdir=$ROOTFS,upperdir=$WORK/upper,workdir=$WORK/ovl" "$WORK/root" 2>/dev/null; then
	MOUNTED=1
else
	cp -a --reflink=auto "$ROOTFS/." "$WORK/root/"
fi
mkdir "$WORK/root/root/greyd-test"
cp "$WORK"/pkgs/*.deb "$HERE/watchdog.conf" "$WORK/root/root/greyd-test/"
boot

step "Postfix as README.md says: its restriction list in main.cf, smtpd chrooted"
# Debian's master.cf: column 5 is "chroot"; y is Debian's default.
[ "$(inside postconf -M smtp/inet | awk '{ print $5 }')" = y ] || fail "smtpd does not run chrooted: $(inside postconf -M smtp/inet)"
BLOCK=$(sed -n '/^    smtpd_recipient_restrictions =$/,/^$/p' "$ROOT/README.md" | sed -e '/^$/d' -e 's/^    //')
case $BLOCK in *"check_policy_service unix:greyd/socket") ;; *) fail "README.md has no smtpd_recipient_restrictions block ending in check_policy_service unix:greyd/socket" ;; esac
inside useradd -m story
# Loopback clients other than 127.0.0.1 are strangers: outside mynetworks.
inside postconf -e 'myhostname = mx.story.test' 'mydestination = $myhostname, story.test, localhost' \
	'mynetworks = 127.0.0.1/32'
inside env BLOCK="$BLOCK" sh -c 'printf "%s\n" "$BLOCK" >>/etc/postfix/main.cf'
inside postfix reload >/dev/null 2>&1 || fail "postfix reload"
ok "main.cf: $(printf '%s' "$BLOCK" | tr -s ' \n' ' '); postfix reload"
snapshot >"$WORK/before"

step "dpkg -i $(basename "$DEB1"): greyd.socket enabled and listening, greyd.service not started"
insh "dpkg -i /root/greyd-test/$(basename "$DEB1") </dev/null" >"$WORK/install.log" 2>&1 ||
	{ cat "$WORK/install.log" >&2; fail "dpkg -i"; }
sed 's/^/systemd-test:     | /' "$WORK/install.log"
grep -Eiv '^(Selecting|\(Reading|Preparing|Unpacking|Setting up|Created symlink)' "$WORK/install.log" | grep . &&
	fail "dpkg -i printed something unexpected (above)"
for u in greyd.socket greyd.service; do
	[ "$(inside systemctl is-enabled $u)" = enabled ] || fail "$u is not enabled"
done
is_state greyd.socket active || fail "greyd.socket is $(state greyd.socket), want active"
expect_mode "$SOCK" "socket root:postfix 660"
expect_mode /var/spool/postfix/greyd "directory root:root 755"
is_state greyd.service inactive || fail "greyd.service is $(state greyd.service) before any connection, want inactive"
[ -z "$(greyd_pids)" ] || fail "a greyd process runs before any connection"
expect_mode /var/lib/greyd "directory greyd:greyd 750"
expect_absent /run/greyd
ok "greyd.socket enabled, active; $SOCK root:postfix 0660; greyd.service enabled, inactive; no greyd process"
expect_mode /etc/greyd/conf.d "directory root:root 755"
[ -z "$(inside ls -A /etc/greyd/conf.d)" ] || fail "the package put files into /etc/greyd/conf.d: $(inside ls -A /etc/greyd/conf.d | xargs)"
[ "$(inside dpkg-query -S /etc/greyd/conf.d)" = "greyd: /etc/greyd/conf.d" ] ||
	fail "dpkg-query -S /etc/greyd/conf.d: $(inside dpkg-query -S /etc/greyd/conf.d 2>&1), want greyd's"
ok "/etc/greyd/conf.d: empty, root:root 0755, the package's"

step "first mail from a new client: 450, greyd started by its socket, as user greyd, sandboxed"
T1=$SECONDS
smtp m1 127.0.1.2 "s1-$RUN@sender.test"
expect_rcpt m1 "$GREYLISTED"
ok "RCPT TO: $(rcpt m1)"
running_greyd || fail "greyd.service is $(state greyd.service) after the first connection, want active"
P=$(mainpid)
[ "$(inside stat -c %U "/proc/$P")" = greyd ] || fail "greyd (pid $P) runs as $(inside stat -c %U "/proc/$P"), want greyd"
inside cat "/proc/$P/status" >"$WORK/status"
for want in 'NoNewPrivs:	1' 'Seccomp:	2' 'CapEff:	0000000000000000' 'CapBnd:	0000000000000000'; do
	grep -qxF "$want" "$WORK/status" || fail "greyd's /proc/$P/status lacks \"$want\": $(grep -F "${want%%:*}:" "$WORK/status")"
done
fd1=$(inside readlink "/proc/$P/fd/1")
fd2=$(inside readlink "/proc/$P/fd/2")
[ "$fd1" = /dev/null ] || fail "greyd's stdout is $fd1, want /dev/null"
case $fd2 in socket:*) ;; *) fail "greyd's stderr is $fd2, want the journal's stream socket (its logs go nowhere)" ;; esac
expect_mode /run/greyd "directory greyd:greyd 750"
expect_mode /var/lib/greyd/greyd.db "regular file greyd:greyd 600"
ok "greyd.service active, main pid $P, user greyd, no capabilities, seccomp, no new privileges; stdout /dev/null, stderr $fd2 (journal)"
ok "/run/greyd greyd:greyd 0750, /var/lib/greyd/greyd.db greyd:greyd 0600"

step "the journal: greyd's own lines under journalctl -u greyd, facility mail, with their priorities"
CURSOR=
logged 6 "greyd $V1 started: listening on unix:/var/spool/postfix/greyd/socket; database /var/lib/greyd/greyd\\.db"
logged 5 "action=greylist, reason=new, client_name=unknown, client_address=127\\.0\\.1\\.2, sender=s1-$RUN@sender\\.test, recipient=story@story\\.test\""
clean_start "$P"
ok "start line at info (6), decision line at notice (5), identifier greyd, facility mail (2); no warning or error"
# rsyslog, fed by journald, files them with Postfix's.
wait_until "/var/log/mail.log has no greyd decision line within 10s" 10 \
	inside grep -qE " greyd\\[$P\\]: action=greylist, reason=new, .*sender=s1-$RUN@sender\\.test" /var/log/mail.log
inside grep -qE " postfix/smtpd\\[[0-9]+\\]: NOQUEUE: reject: .*from=<s1-$RUN@sender\\.test>" /var/log/mail.log ||
	fail "/var/log/mail.log has no Postfix reject line for s1"
ok "/var/log/mail.log: greyd[$P]: action=greylist, ... next to Postfix's NOQUEUE line"
exposure=$(inside systemd-analyze security --no-pager greyd.service | sed -n 's/.*Overall exposure level for greyd.service: \([0-9.]*\).*/\1/p')
awk -v l="$exposure" 'BEGIN { exit !(l != "" && l <= 2.0) }' || fail "systemd-analyze security greyd.service: exposure \"$exposure\", want at most 2.0"
ok "systemd-analyze security greyd.service under systemd: exposure $exposure"

step "retry before the delay (the packaged 5m): 450 again"
# greyd counts whole seconds: a retry within the first second is "new".
sleep $((T1 + 2 - SECONDS > 0 ? T1 + 2 - SECONDS : 0))
smtp m2 127.0.1.2 "s1-$RUN@sender.test"
expect_rcpt m2 "$GREYLISTED"
logged 5 "action=greylist, reason=early-retry \\([0-9]+s missing\\), client_name=unknown, client_address=127\\.0\\.1\\.2, sender=s1-$RUN@sender\\.test"
ok "early-retry, at notice (5)"

step "greyd's admin commands on its control socket, as root: explain, list, stats, a runtime whitelist entry"
expect_mode "$CTL" "socket greyd:greyd 660"
cli explain 1 greyd explain 127.0.1.2 unknown "s1-$RUN@sender.test" story@story.test
says explain '^triplet +[^ ]+ / s1-[^ ]*@sender\.test / story@story\.test'
says explain '^decision +greylist, reason=early-retry \([0-9]+s missing\)$'
says explain '^reply +DEFER_IF_PERMIT .*Greylisted'
ok "$CTL greyd:greyd 0660; greyd explain (the last greylisted triplet): exit 1, $(grep -E '^triplet ' "$WORK/cli/explain.txt" | tr -s ' '); $(grep -E '^decision ' "$WORK/cli/explain.txt" | tr -s ' ')"
cli list 0 greyd list -client 127.0.1.2
says list '^triplet +pending .* s1-[^ ]*@sender\.test story@story\.test$'
cli stats 0 greyd stats
says stats '^store +healthy'
says stats '^ +greylist +early-retry +1$'
ok "greyd list -client 127.0.1.2: the triplet, pending; greyd stats: store healthy, 1 early-retry"
smtp c1 127.0.8.2 "s21-$RUN@sender.test"
expect_rcpt c1 "$GREYLISTED"
cli wl-add 0 greyd whitelist add -comment "systemd-test" client 127.0.8.2
mark
smtp c2 127.0.8.2 "s22-$RUN@sender.test"
expect_rcpt c2 "$ACCEPTED"
logged 5 "action=pass, reason=client whitelist, client_name=unknown, client_address=127\\.0\\.8\\.2, sender=s22-$RUN@sender\\.test"
[ "$(delivered c2)" = none ] || fail "mail of a runtime-whitelisted client got an X-Greylist header"
cli wl-remove 0 greyd whitelist remove client 127.0.8.2
smtp c3 127.0.8.2 "s23-$RUN@sender.test"
expect_rcpt c3 "$GREYLISTED"
ok "greyd whitelist add client 127.0.8.2: a new triplet of it passes at once, no header; removed: greylisted again"

step "the control socket: members of group greyd too, nobody else; back after systemctl restart greyd"
inside useradd --system --no-create-home --shell /usr/sbin/nologin --groups greyd opsadmin
cli stats-member 0 setpriv --reuid=opsadmin --regid=opsadmin --init-groups greyd stats
says stats-member '^store +healthy'
cli stats-nobody 3 setpriv --reuid=nobody --regid=nogroup --clear-groups greyd stats
says stats-nobody "$CTL"
ok "a member of group greyd (opsadmin): greyd stats works; nobody: exit 3, $(head -n1 "$WORK/cli/stats-nobody.txt")"
mark
P=$(mainpid)
RUN_INODE=$(inode /run/greyd)
inside systemctl restart greyd.service
replaced "$P" "systemctl restart greyd"
wait_until "greyd stats does not answer within 10s of systemctl restart greyd" 10 control_up
expect_mode "$CTL" "socket greyd:greyd 660"
[ "$(inode /run/greyd)" = "$RUN_INODE" ] || fail "/run/greyd was recreated by systemctl restart (RuntimeDirectoryPreserve=restart)"
logged 6 "control socket /run/greyd/control\\.sock"
clean_start "$(mainpid)"
ok "systemctl restart greyd (pid $P -> $(mainpid)): $CTL back, greyd:greyd 0660, in the same /run/greyd"

step "an admin sets the delay in a drop-in, /etc/greyd/conf.d/50-local.hcl (5m -> 3s): applied by itself"
mark
P=$(mainpid)
insh 'umask 022; printf "greylist {\n  delay = \"3s\"\n}\n" >/etc/greyd/conf.d/50-local.hcl'
logged 6 "reload \\(.*\\): ok, "
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted (pid $P -> $(mainpid)), want a reload in place"
shipped=$(inside dpkg-query -W -f '${Conffiles}\n' greyd | awk '$1 == "/etc/greyd/greyd.hcl" { print $2 }')
[ "$(inside md5sum /etc/greyd/greyd.hcl | cut -d' ' -f1)" = "${shipped:-none}" ] ||
	fail "/etc/greyd/greyd.hcl is not the package's any more (md5 $shipped)"
cli check-config 0 greyd check-config
says check-config '^ +delay += "3s" +# conf\.d/50-local\.hcl:2$'
ok "greyd reloaded by itself (same pid); greyd.hcl as shipped; greyd check-config: $(grep -E '^ +delay ' "$WORK/cli/check-config.txt" | tr -s ' ')"
sleep $((T1 + 4 - SECONDS > 0 ? T1 + 4 - SECONDS : 0))
smtp m3 127.0.1.2 "s1-$RUN@sender.test"
expect_rcpt m3 "$ACCEPTED"
logged 5 "action=pass, reason=triplet found, delay=[0-9]+, client_name=unknown, client_address=127\\.0\\.1\\.2, sender=s1-$RUN@sender\\.test"
h=$(delivered m3)
[[ $h =~ ^X-Greylist:\ delayed\ [0-9]+\ seconds\ by\ greyd-$V1\ at\ greyd-test\;\ .+$ ]] ||
	fail "the delivered message's X-Greylist header(s): \"$h\", want exactly one \"X-Greylist: delayed N seconds by greyd-$V1 at greyd-test; ...\""
ok "the same triplet, 450 before the drop-in, now passes (greyd explain consumed nothing); delivered with one header: $h"

step "an admin edits the conffile /etc/greyd/greyd.hcl itself (hostname for the X-Greylist header): applied by itself"
mark
P=$(mainpid)
inside sed -i -E 's/^([[:space:]]*hostname[[:space:]]*=[[:space:]]*)""/\1"mx.story.test"/' /etc/greyd/greyd.hcl
inside grep -qE '^[[:space:]]*hostname[[:space:]]*=[[:space:]]*"mx\.story\.test"' /etc/greyd/greyd.hcl ||
	fail "sed did not set the hostname in /etc/greyd/greyd.hcl"
logged 6 "reload \\(.*\\): ok, "
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted (pid $P -> $(mainpid)), want a reload in place"
cli check-config-2 0 greyd check-config
says check-config-2 '^ +hostname += "mx\.story\.test" +# greyd\.hcl:[0-9]+$'
says check-config-2 '^ +delay += "3s" +# conf\.d/50-local\.hcl:2$'
T8=$SECONDS
smtp h1 127.0.7.2 "s8-$RUN@sender.test"
expect_rcpt h1 "$GREYLISTED"
sleep $((T8 + 4 - SECONDS > 0 ? T8 + 4 - SECONDS : 0))
smtp h2 127.0.7.2 "s8-$RUN@sender.test"
expect_rcpt h2 "$ACCEPTED"
h=$(delivered h2)
[[ $h =~ ^X-Greylist:\ delayed\ [0-9]+\ seconds\ by\ greyd-$V1\ at\ mx\.story\.test\;\ .+$ ]] ||
	fail "the delivered message's X-Greylist header(s): \"$h\", want one \"X-Greylist: delayed N seconds by greyd-$V1 at mx.story.test; ...\""
ok "reloaded (same pid); check-config: hostname from greyd.hcl, delay from the drop-in; a new triplet: 450, then delivered with: $h"

step "an admin adds a client to /etc/greyd/whitelist_clients.local: applied by itself"
smtp m4 127.0.2.3 "s4-$RUN@sender.test"
expect_rcpt m4 "$GREYLISTED"
mark
inside sh -c 'echo 127.0.2.3 >>/etc/greyd/whitelist_clients.local'
logged 6 "reload \\(.*\\): ok, "
smtp m5 127.0.2.3 "s5-$RUN@sender.test"
expect_rcpt m5 "$ACCEPTED"
logged 5 "action=pass, reason=client whitelist, client_name=unknown, client_address=127\\.0\\.2\\.3, sender=s5-$RUN@sender\\.test"
[ "$(delivered m5)" = none ] || fail "whitelisted mail got an X-Greylist header"
ok "127.0.2.3: 450, then whitelisted without a reload: passes, no header"

step "a typo in the drop-in: greyd keeps the running configuration, systemctl reload greyd fails"
mark
P=$(mainpid)
inside sed -i 's/"3s"/"3x"/' /etc/greyd/conf.d/50-local.hcl
logged 3 'error: reload \(.*\) failed with 1 problem\(s\): still running the previous configuration'
logged 3 'error: (/etc/greyd/)?conf\.d/50-local\.hcl:2:[0-9]+: .*3x'
ok "greyd's own reload failed, at error (3), naming the drop-in's file:line:col"
if inside systemctl reload greyd.service >"$WORK/reload.log" 2>&1; then
	fail "systemctl reload greyd succeeded with a broken configuration"
fi
is_state greyd.service active || fail "greyd.service is $(state greyd.service) after the failed reload, want active"
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted by the failed reload (pid $P -> $(mainpid))"
records | grep -F '"SYSLOG_IDENTIFIER":"greyd"' | grep -qE '"MESSAGE":"greyd check-config: 1 problem\(s\) in /etc/greyd' ||
	fail "journalctl -u greyd lacks check-config's \"greyd check-config: 1 problem(s) in /etc/greyd\""
smtp m6 127.0.2.3 "s6-$RUN@sender.test"
expect_rcpt m6 "$ACCEPTED"
T7=$SECONDS
smtp m7 127.0.3.2 "s7-$RUN@sender.test"
expect_rcpt m7 "$GREYLISTED"
ok "systemctl reload failed ($(head -n1 "$WORK/reload.log")); same pid $P still answers: whitelist and greylisting as before"
mark
inside sed -i 's/"3x"/"3s"/' /etc/greyd/conf.d/50-local.hcl
logged 6 "reload \\(.*\\): ok, "
inside systemctl reload greyd.service || fail "systemctl reload greyd with the repaired configuration"
logged 6 "reload \\(SIGHUP.*\\): ok, "
ok "repaired: greyd reloaded by itself; systemctl reload greyd works (SIGHUP)"

step "kill -9 greyd: systemd restarts it, the socket stays, mail gets an answer"
inside systemctl reset-failed greyd.service
mark
P=$(mainpid)
SOCK_INODE=$(inode "$SOCK")
RUN_INODE=$(inode /run/greyd)
N0=$(prop greyd.service NRestarts)
insh 'kill -KILL "$1"' "$P"
t0=$SECONDS
# Right away, before RestartSec= has passed: Postfix waits on the socket.
smtp m8 127.0.4.2 "s8-$RUN@sender.test"
expect_rcpt m8 "$GREYLISTED"
answered=$((SECONDS - t0))
replaced "$P" "kill -9"
[ "$(prop greyd.service NRestarts)" -gt "$N0" ] || fail "greyd.service was not restarted by systemd (NRestarts $N0)"
sd_logged 'greyd.service: Main process exited, code=killed, status=9/KILL'
[ "$(inode "$SOCK")" = "$SOCK_INODE" ] || fail "$SOCK was replaced (inode $SOCK_INODE -> $(inode "$SOCK"))"
[ "$(inode /run/greyd)" = "$RUN_INODE" ] || fail "/run/greyd was recreated by the restart (RuntimeDirectoryPreserve=restart)"
ok "restarted (pid $P -> $(mainpid)); a mail sent right after the kill was answered 450 within ${answered}s; socket and /run/greyd kept"
wait_until "greyd stats does not answer within 10s of the restart (the control socket the killed greyd left behind)" 10 control_up
expect_mode "$CTL" "socket greyd:greyd 660"
ok "the control socket the killed greyd left in /run/greyd was replaced: greyd stats answers"
sleep $((T7 + 4 - SECONDS > 0 ? T7 + 4 - SECONDS : 0))
smtp m9 127.0.3.2 "s7-$RUN@sender.test"
expect_rcpt m9 "$ACCEPTED"
ok "the triplet greylisted before the crash passes after it (state kept)"

step "SIGABRT (what the watchdog sends; a Go runtime crash): stack dump in the journal, restarted"
inside systemctl reset-failed greyd.service
mark
P=$(mainpid)
insh 'kill -ABRT "$1"' "$P"
replaced "$P" "SIGABRT"
sd_logged 'greyd.service: Main process exited, code=(killed|dumped), status=6/ABRT'
logged 6 'SIGABRT: abort'
logged 6 'goroutine [0-9]+ '
ok "killed by SIGABRT after the goroutine dump (in the journal); restarted (pid $P -> $(mainpid))"

step "watchdog: a greyd that stops pinging (SIGSTOP) is killed and restarted (test drop-in WatchdogSec=3s)"
inside install -D -m 0644 /root/greyd-test/watchdog.conf /etc/systemd/system/greyd.service.d/watchdog.conf
inside systemctl daemon-reload
inside systemctl reset-failed greyd.service
inside systemctl restart greyd.service
[ "$(prop greyd.service WatchdogUSec)" = 3s ] || fail "WatchdogUSec is $(prop greyd.service WatchdogUSec) with the drop-in, want 3s"
P=$(mainpid)
sleep 4
if [ "$(mainpid)" != "$P" ] || ! is_state greyd.service active; then
	fail "greyd was restarted while it pinged the watchdog"
fi
mark
insh 'kill -STOP "$1"' "$P"
replaced "$P" "SIGSTOP (watchdog)"
sd_logged 'greyd.service: Watchdog timeout \(limit 3s\)!'
ok "pinged for 4s; stopped: watchdog timeout, restarted (pid $P -> $(mainpid))"
inside rm -r /etc/systemd/system/greyd.service.d
inside systemctl daemon-reload
inside systemctl restart greyd.service
[ "$(prop greyd.service WatchdogUSec)" = 30s ] || fail "WatchdogUSec is $(prop greyd.service WatchdogUSec) without the drop-in, want the packaged 30s"
ok "drop-in removed: the packaged WatchdogSec=30s again"

step "upgrade: dpkg -i $DEB2 over $V1"
P=$(mainpid)
SOCK_INODE=$(inode "$SOCK")
HCL_SUM=$(inside sha256sum /etc/greyd/greyd.hcl)
DROPIN_SUM=$(inside sha256sum /etc/greyd/conf.d/50-local.hcl)
LOCAL_SUM=$(inside sha256sum /etc/greyd/whitelist_clients.local)
mark
# The socket is checked every 10 ms while dpkg runs.
insh -t 180 '
	( while :; do if [ -S "$1" ]; then echo present; else echo "missing $(date +%T.%N)"; fi; sleep 0.01; done ) >/root/socket-poll.log 2>&1 &
	poller=$!
	sleep 0.2
	rc=0
	dpkg -i "/root/greyd-test/$2" </dev/null >/root/upgrade.log 2>&1 || rc=$?
	sleep 0.5
	kill "$poller"
	exit "$rc"' "$SOCK" "$DEB2" || { inside cat /root/upgrade.log >&2; fail "dpkg -i $DEB2"; }
inside cat /root/upgrade.log | sed 's/^/systemd-test:     | /'
inside cat /root/upgrade.log | grep -Eiv '^(\(Reading|Preparing|Unpacking|Setting up)' | grep . &&
	fail "the upgrade printed something unexpected (above)"
polls=$(inside grep -c . /root/socket-poll.log)
missing=$(inside grep -c '^missing' /root/socket-poll.log) || true
[ "$missing" -eq 0 ] || fail "$SOCK was missing $missing times during the upgrade: $(inside grep -m3 '^missing' /root/socket-poll.log | tr '\n' ' ')"
[ "$polls" -gt 20 ] || fail "only $polls checks of the socket during the upgrade"
[ "$(inode "$SOCK")" = "$SOCK_INODE" ] || fail "$SOCK was replaced during the upgrade"
[ "$(inside dpkg-query -W -f '${Version}' greyd)" = "$V2" ] || fail "dpkg says greyd $(inside dpkg-query -W -f '${Version}' greyd), want $V2"
[ "$(inside /usr/sbin/greyd -version)" = "greyd $V2" ] || fail "/usr/sbin/greyd -version: $(inside /usr/sbin/greyd -version)"
replaced "$P" "the upgrade"
logged 6 "greyd $V2 started: listening on unix:/var/spool/postfix/greyd/socket"
clean_start "$(mainpid)"
ok "socket present in all $polls checks (same inode); greyd restarted on $V2 (pid $P -> $(mainpid))"
[ "$(inside sha256sum /etc/greyd/greyd.hcl)" = "$HCL_SUM" ] || fail "the upgrade changed the admin's /etc/greyd/greyd.hcl"
inside grep -qE '^[[:space:]]*hostname[[:space:]]*=[[:space:]]*"mx\.story\.test"' /etc/greyd/greyd.hcl || fail "the admin's hostname edit is gone"
[ "$(inside sha256sum /etc/greyd/conf.d/50-local.hcl)" = "$DROPIN_SUM" ] || fail "the upgrade changed /etc/greyd/conf.d/50-local.hcl"
[ "$(inside ls -A /etc/greyd/conf.d)" = 50-local.hcl ] || fail "/etc/greyd/conf.d after the upgrade: $(inside ls -A /etc/greyd/conf.d | xargs), want only the admin's 50-local.hcl"
[ "$(inside sha256sum /etc/greyd/whitelist_clients.local)" = "$LOCAL_SUM" ] || fail "the upgrade changed /etc/greyd/whitelist_clients.local"
left=$(inside find /etc/greyd -name '*.dpkg-*')
[ -z "$left" ] || fail "the upgrade left $left"
for u in greyd.socket greyd.service; do
	[ "$(inside systemctl is-enabled $u)" = enabled ] || fail "$u is no longer enabled after the upgrade"
done
is_state greyd.socket active || fail "greyd.socket is $(state greyd.socket) after the upgrade"
smtp m10 127.0.1.2 "s1-$RUN@sender.test"
expect_rcpt m10 "$ACCEPTED"
logged 5 "action=pass, reason=triplet found, client_name=unknown, client_address=127\\.0\\.1\\.2, sender=s1-$RUN@sender\\.test"
ok "conffile edit (hostname), conf.d/50-local.hcl and whitelist_clients.local kept; units still enabled; the first triplet is still known (state kept)"

step "reboot: greyd.socket listens and greyd.service runs after boot, state kept"
mark
power_off
boot
is_state greyd.socket active || fail "greyd.socket is $(state greyd.socket) after boot"
expect_mode "$SOCK" "socket root:postfix 660"
wait_until "greyd.service not active after boot (it is enabled: WantedBy=multi-user.target)" 10 running_greyd
logged 6 "greyd $V2 started: listening on unix:/var/spool/postfix/greyd/socket"
clean_start "$(mainpid)"
expect_mode /run/greyd "directory greyd:greyd 750"
wait_until "greyd stats does not answer within 10s of the boot" 10 control_up
expect_mode "$CTL" "socket greyd:greyd 660"
smtp m11 127.0.3.2 "s7-$RUN@sender.test"
expect_rcpt m11 "$ACCEPTED"
ok "socket listening, greyd started at boot, /run/greyd and its control socket made again; a known triplet passes"

step "README's TCP socket: the packaged inet.conf drop-in and check_policy_service inet:127.0.0.1:10023"
# README's order: stopped before the drop-in, systemd removes the unix
# socket (RemoveOnStop= applies to the sockets a unit has when it stops).
inside systemctl stop greyd.socket
inside mkdir -p /etc/systemd/system/greyd.socket.d
inside cp /usr/share/doc/greyd/examples/greyd.socket.d/inet.conf /etc/systemd/system/greyd.socket.d/
inside systemctl daemon-reload
inside systemctl start greyd.socket
is_state greyd.socket active || fail "greyd.socket with inet.conf is $(state greyd.socket)"
[ "$(prop greyd.socket Listen)" = "127.0.0.1:10023 (Stream)" ] || fail "greyd.socket with inet.conf listens on $(prop greyd.socket Listen)"
expect_absent "$SOCK"
inside sed -i 's|check_policy_service unix:greyd/socket$|check_policy_service inet:127.0.0.1:10023|' /etc/postfix/main.cf
inside grep -q 'check_policy_service inet:127\.0\.0\.1:10023$' /etc/postfix/main.cf || fail "main.cf: the policy line was not changed"
inside postfix reload >/dev/null 2>&1 || fail "postfix reload"
mark
smtp m12 127.0.6.2 "s12-$RUN@sender.test"
expect_rcpt m12 "$GREYLISTED"
running_greyd || fail "greyd.service is $(state greyd.service) after a TCP connection"
logged 6 "greyd $V2 started: listening on tcp:127\\.0\\.0\\.1:10023"
logged 5 "action=greylist, reason=new, client_name=unknown, client_address=127\\.0\\.6\\.2"
clean_start "$(mainpid)"
ok "greyd.socket on 127.0.0.1:10023, greyd (AF_UNIX only in its sandbox) answers over it: 450"
inside systemctl stop greyd.socket
inside rm -r /etc/systemd/system/greyd.socket.d
inside systemctl daemon-reload
inside systemctl start greyd.socket
inside sed -i 's|check_policy_service inet:127\.0\.0\.1:10023$|check_policy_service unix:greyd/socket|' /etc/postfix/main.cf
inside postfix reload >/dev/null 2>&1 || fail "postfix reload"
expect_mode "$SOCK" "socket root:postfix 660"
smtp m13 127.0.6.2 "s13-$RUN@sender.test"
expect_rcpt m13 "$GREYLISTED"
ok "drop-in removed: back on $SOCK"

step "several MX hosts: greyd on Redis over TCP (redis-server, README's tcp.conf drop-in) with metrics; settings in conf.d"
inside systemctl start redis-server.service || fail "systemctl start redis-server"
wait_until "redis-server does not answer PING on 127.0.0.1:6379 within 10s of systemctl start" 10 redis_up
mark
P=$(mainpid)
insh 'umask 022; printf "database {\n  redis {\n    url = \"redis://127.0.0.1:6379/0\"\n  }\n}\n" >/etc/greyd/conf.d/60-redis.hcl'
logged 4 'warning: database.redis changed in conf.d/60-redis.hcl:[0-9]+: restart greyd to apply it'
insh 'umask 022; printf "metrics {\n  listen = \"127.0.0.1:9386\"\n}\n" >/etc/greyd/conf.d/70-metrics.hcl'
logged 4 'warning: metrics changed in .*: restart greyd to apply it'
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted (pid $P -> $(mainpid)) by a reload"
ok "conf.d/60-redis.hcl and 70-metrics.hcl: reloaded by itself, one warning per setting that needs a restart"
# With the test's watchdog drop-in too (WatchdogSec=3s): a greyd that
# stopped pinging while Redis is down would be killed within the outage.
inside install -D -m 0644 /root/greyd-test/watchdog.conf /etc/systemd/system/greyd.service.d/watchdog.conf
TCP_BLOCK=$(sed -n '/^    mkdir -p \/etc\/systemd\/system\/greyd\.service\.d$/,/^$/p' "$ROOT/README.md" | sed -e '/^$/d' -e 's/^    //')
case $TCP_BLOCK in
*"cp /usr/share/doc/greyd/examples/greyd.service.d/tcp.conf /etc/systemd/system/greyd.service.d/"*"systemctl restart greyd") ;;
*) fail "README.md has no block that installs greyd.service.d/tcp.conf and restarts greyd" ;;
esac
mark
insh -t 90 "set -e
$TCP_BLOCK" >"$WORK/tcp-conf.log" 2>&1 || { cat "$WORK/tcp-conf.log" >&2; fail "README's commands for tcp.conf (output above)"; }
replaced "$P" "README's commands for tcp.conf (systemctl restart greyd)"
P=$(mainpid)
N0=$(prop greyd.service NRestarts)
af=$(prop greyd.service RestrictAddressFamilies)
for fam in AF_UNIX AF_INET AF_INET6; do
	[[ " $af " == *" $fam "* ]] || fail "RestrictAddressFamilies with tcp.conf: \"$af\", want $fam in it"
done
[ "$(prop greyd.service WatchdogUSec)" = 3s ] || fail "WatchdogUSec is $(prop greyd.service WatchdogUSec) with the test drop-in, want 3s"
logged 6 "greyd $V2 started: listening on unix:/var/spool/postfix/greyd/socket; database redis redis://127\\.0\\.0\\.1:6379/0"
logged 6 "redis: connected to 127\\.0\\.0\\.1:6379"
logged 6 "metrics on http://127\\.0\\.0\\.1:9386/metrics"
clean_start "$P"
st=$(prop greyd.service StatusText)
[[ $st == *"; redis: connected to 127.0.0.1:6379"* ]] ||
	fail "systemctl status greyd says \"$st\", want \"redis: connected to 127.0.0.1:6379\" in it (README: When Redis fails)"
exposure=$(inside systemd-analyze security --no-pager greyd.service | sed -n 's/.*Overall exposure level for greyd.service: \([0-9.]*\).*/\1/p')
awk -v l="$exposure" 'BEGIN { exit !(l != "" && l <= 2.0) }' || fail "systemd-analyze security greyd.service with tcp.conf: exposure \"$exposure\", want at most 2.0"
ok "restarted (pid $P): database redis://127.0.0.1:6379/0, connected; metrics on 127.0.0.1:9386; no warning or error at start"
ok "systemctl status greyd: Status: \"$st\""
ok "RestrictAddressFamilies=$af; systemd-analyze security with tcp.conf: exposure $exposure"
T20=$SECONDS
smtp r1 127.0.9.2 "s20-$RUN@sender.test"
expect_rcpt r1 "$GREYLISTED"
logged 5 "action=greylist, reason=new, client_name=unknown, client_address=127\\.0\\.9\\.2, sender=s20-$RUN@sender\\.test"
key=$(redis_key '}t:' s20- story@story.test)
ttl=$(inside redis-cli ttl "$key")
[ "$ttl" -gt 0 ] || fail "Redis key $key: TTL $ttl, want one (every key expires by itself)"
ok "a new triplet: 450; in Redis: $key (TTL ${ttl}s)"
sleep $((T20 + 4 - SECONDS > 0 ? T20 + 4 - SECONDS : 0))
smtp r2 127.0.9.2 "s20-$RUN@sender.test"
expect_rcpt r2 "$ACCEPTED"
logged 5 "action=pass, reason=triplet found, delay=[0-9]+, client_name=unknown, client_address=127\\.0\\.9\\.2, sender=s20-$RUN@sender\\.test"
h=$(delivered r2)
[[ $h =~ ^X-Greylist:\ delayed\ [0-9]+\ seconds\ by\ greyd-$V2\ at\ mx\.story\.test\;\ .+$ ]] ||
	fail "the delivered message's X-Greylist header(s): \"$h\", want one \"X-Greylist: delayed N seconds by greyd-$V2 at mx.story.test; ...\""
ok "the retry after the delay (conf.d/50-local.hcl's 3s) passes; delivered with one header: $h"
cli list-redis 0 greyd list -client 127.0.9.2
says list-redis '^triplet +passed .* s20-[^ ]*@sender\.test story@story\.test$'
cli stats-redis 0 greyd stats
says stats-redis '^store +healthy'
scrape metrics-1
n=$(metric metrics-1 'greyd_decisions_total{action="greylist",reason="new"}')
[ "$n" = 1 ] || fail "greyd_decisions_total{action=\"greylist\",reason=\"new\"} is $n, want 1"
n=$(metric metrics-1 'greyd_decisions_total{action="pass",reason="triplet found"}')
[ "$n" = 1 ] || fail "greyd_decisions_total{action=\"pass\",reason=\"triplet found\"} is $n, want 1"
grep -qE "^greyd_build_info\\{.*version=\"$V2\".*\\} 1$" "$WORK/metrics-1.prom" ||
	fail "GET /metrics: no greyd_build_info{version=\"$V2\"} 1: $(grep '^greyd_build_info' "$WORK/metrics-1.prom")"
ok "greyd list and greyd stats on Redis work; GET /metrics: greylist/new 1, pass/triplet found 1; $(grep '^greyd_build_info' "$WORK/metrics-1.prom")"

step "Redis stopped: Postfix accepts (greyd answers DUNNO), greyd stays up; Redis started: greylisting resumes"
mark
inside systemctl stop redis-server.service || fail "systemctl stop redis-server"
! redis_up || fail "redis-server still answers after systemctl stop"
t0=$SECONDS
for i in 1 2 3 4 5; do
	smtp "r3-$i" "127.0.10.$((i + 1))" "s3$i-$RUN@sender.test"
	expect_rcpt "r3-$i" "$ACCEPTED"
done
logged 3 'error: store failed, answering DUNNO \(mail is not greylisted meanwhile\): '
logged 3 'error: redis: 127\.0\.0\.1:6379 is unreachable: '
[ "$(delivered r3-1)" = none ] || fail "mail passed during the outage got an X-Greylist header"
ok "5 new triplets while Redis is down: each \"$(rcpt r3-5)\", delivered without a header"
ok "journal: $(records | grep -F '"SYSLOG_IDENTIFIER":"greyd"' | grep -o '"MESSAGE":"error: redis: [^"]*' | head -n1 | cut -c12- | cut -c1-150)..."
sleep $((t0 + 5 - SECONDS > 0 ? t0 + 5 - SECONDS : 0))
is_state greyd.service active || fail "greyd.service is $(state greyd.service) while Redis is down, want active"
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted while Redis was down (pid $P -> $(mainpid))"
[ "$(prop greyd.service NRestarts)" = "$N0" ] || fail "greyd was restarted by systemd while Redis was down (NRestarts $N0 -> $(prop greyd.service NRestarts))"
records | grep -qF 'Watchdog timeout' && fail "systemd's watchdog fired while Redis was down"
cli stats-down 0 greyd stats
ok "$((SECONDS - t0))s into the outage (WatchdogSec=3s): greyd active, same pid $P, NRestarts $N0; greyd stats: $(grep -E '^store ' "$WORK/cli/stats-down.txt" | tr -s ' ' | cut -c1-120)"
mark
inside systemctl start redis-server.service || fail "systemctl start redis-server"
wait_until "redis-server does not answer PING within 10s of systemctl start" 10 redis_up
t0=$SECONDS
logged 4 'warning: redis works again: 127\.0\.0\.1:6379 was unreachable for ' 15
ok "greyd reconnected by itself $((SECONDS - t0))s after Redis answered again"
smtp r4 127.0.11.2 "s40-$RUN@sender.test"
expect_rcpt r4 "$GREYLISTED"
logged 5 "action=greylist, reason=new, client_name=unknown, client_address=127\\.0\\.11\\.2, sender=s40-$RUN@sender\\.test"
logged 4 'warning: store works again: '
key=$(redis_key '}t:' s40- story@story.test)
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted (pid $P -> $(mainpid))"
[ "$(prop greyd.service NRestarts)" = "$N0" ] || fail "greyd was restarted by systemd (NRestarts $N0 -> $(prop greyd.service NRestarts))"
scrape metrics-2
n=$(metric metrics-2 'greyd_decisions_total{action="error",reason="store error"}')
[ "$n" -ge 5 ] || fail "greyd_decisions_total{action=\"error\",reason=\"store error\"} is $n, want at least 5"
req=$(metric metrics-2 greyd_requests_total)
sum=$(awk '/^greyd_decisions_total\{/ { s += $NF } END { print s + 0 }' "$WORK/metrics-2.prom")
[ "$sum" = "$req" ] || fail "GET /metrics: the decisions add up to $sum, greyd_requests_total is $req"
ok "a new triplet: 450, in Redis ($key); same pid $P, no restart; metrics: $n store errors, $req requests = the sum of the decisions"

step "p0f: the shipped greyd-p0f.service under systemd, sandboxed; greyd scores an SMTP client by its answer"
t0=$SECONDS
# README's commands, with the container's only interface for README's eth0.
P0F_BLOCK=$(sed -n '/^    cp \/usr\/share\/doc\/greyd\/examples\/greyd-p0f\.service /,/^$/p' "$ROOT/README.md" | sed -e '/^$/d' -e 's/^    //')
case $P0F_BLOCK in
*"P0F_INTERFACE=eth0"*"systemctl enable --now greyd-p0f.service") ;;
*) fail "README.md has no block that installs greyd-p0f.service, sets P0F_INTERFACE=eth0 in a drop-in and enables it" ;;
esac
insh -t 90 "set -e
${P0F_BLOCK//P0F_INTERFACE=eth0/P0F_INTERFACE=lo}" >"$WORK/p0f-install.log" 2>&1 ||
	{ cat "$WORK/p0f-install.log" >&2; fail "README's commands for greyd-p0f.service (output above)"; }
p0f_up() { is_state greyd-p0f.service active && inside test -S /run/p0f/p0f.sock; }
wait_until "greyd-p0f.service is not active with /run/p0f/p0f.sock within 10s of systemctl enable --now" 10 p0f_up
PP=$(prop greyd-p0f.service MainPID)
[ "$PP" -gt 0 ] || fail "greyd-p0f.service is active without a main process"
cmd=$(inside cat "/proc/$PP/cmdline" | tr '\0' ' ')
[ "$cmd" = "/usr/sbin/p0f -i lo -f /etc/p0f/p0f.fp -s /run/p0f/p0f.sock tcp dst port 25 " ] ||
	fail "greyd-p0f.service runs \"$cmd\", want p0f on lo (the drop-in) with filter \"tcp dst port 25\""
inside cat "/proc/$PP/status" >"$WORK/p0f-status"
uid=$(awk '/^Uid:/ { print ($2 == $3 && $3 == $4 && $4 == $5) ? $2 : "mixed:" $0 }' "$WORK/p0f-status")
# systemd's dynamic users are 61184-65519 (DynamicUser=yes).
[[ $uid =~ ^[0-9]+$ ]] && [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] ||
	fail "p0f (pid $PP) runs as uid $uid, want one dynamic user (61184-65519)"
[ "$(prop greyd-p0f.service UID)" = "$uid" ] || fail "p0f runs as uid $uid, the unit's UID is $(prop greyd-p0f.service UID)"
# Only CAP_NET_RAW (bit 13) to capture; not in group greyd itself.
for want in 'CapEff:	0000000000002000' 'CapBnd:	0000000000002000' 'NoNewPrivs:	1' 'Seccomp:	2'; do
	grep -qxF "$want" "$WORK/p0f-status" || fail "p0f's /proc/$PP/status lacks \"$want\": $(grep -F "${want%%:*}:" "$WORK/p0f-status")"
done
# systemd lists the dynamic group as a supplementary group too.
[ "$(awk '/^Gid:/ { g = $2 } /^Groups:/ { $1 = ""; gs = $0 } END { sub(/^ +/, "", gs); sub(/ +$/, "", gs); print (gs == g || gs == "") ? "own" : gs }' "$WORK/p0f-status")" = own ] ||
	fail "p0f has other groups than its own: $(grep -E '^(Gid|Groups):' "$WORK/p0f-status" | tr '\n\t' '  ')"
[ "$(inside stat -c '%F %u:%G %a' /run/p0f)" = "directory $uid:greyd 750" ] ||
	fail "/run/p0f: $(inside stat -c '%F %u:%G %a' /run/p0f), want directory $uid:greyd 750"
[ "$(inside stat -c '%F %u %a' /run/p0f/p0f.sock)" = "socket $uid 666" ] ||
	fail "/run/p0f/p0f.sock: $(inside stat -c '%F %u %a' /run/p0f/p0f.sock), want a socket of uid $uid, 0666 (p0f's own mode)"
exposure=$(inside systemd-analyze security --no-pager greyd-p0f.service | sed -n 's/.*Overall exposure level for greyd-p0f.service: \([0-9.]*\).*/\1/p')
# At most dist/check-units.sh's bound for the unit.
awk -v l="$exposure" 'BEGIN { exit !(l != "" && l <= 2.0) }' || fail "systemd-analyze security greyd-p0f.service: exposure \"$exposure\", want at most 2.0"
ok "README's commands (P0F_INTERFACE=lo): greyd-p0f.service active, p0f (pid $PP) as dynamic uid $uid, CapEff CAP_NET_RAW only, no group but its own, seccomp, no new privileges"
ok "/run/p0f $uid:greyd 0750, p0f.sock 0666; systemd-analyze security greyd-p0f.service under systemd: exposure $exposure"
# The directory is the socket's only guard: group greyd gets through,
# others do not (perl is there for swaks).
P0F_CONNECT='use IO::Socket::UNIX; IO::Socket::UNIX->new(Peer => $ARGV[0]) or do { print "connect $ARGV[0]: $!\n"; exit 1 }; print "connected\n"'
cli p0f-member 0 setpriv --reuid=opsadmin --regid=opsadmin --init-groups perl -e "$P0F_CONNECT" /run/p0f/p0f.sock
says p0f-member '^connected$'
cli p0f-nobody 1 setpriv --reuid=nobody --regid=nogroup --clear-groups perl -e "$P0F_CONNECT" /run/p0f/p0f.sock
says p0f-nobody 'Permission denied'
ok "a member of group greyd (opsadmin) connects to /run/p0f/p0f.sock; nobody: $(head -n1 "$WORK/cli/p0f-nobody.txt")"
# The story's clients have no reverse DNS: rdns_missing alone reaches
# greylist_at. A client p0f fingerprints as Linux (README's "unix" block)
# scores 3 - 1 = 2 and passes at once; without p0f's answer its signals
# are unknown and count at their worst (windows 2, unix nothing): 5,
# greylisted. So the pass below is p0f's answer, through greyd. The
# timeout is README's 50ms times ten: a loaded CI machine, not p0f, would
# be slow.
mark
P=$(mainpid)
insh 'umask 022; cat >/etc/greyd/conf.d/80-p0f.hcl' <<'EOF'
selective {
  mode        = "score"
  greylist_at = 3
}
signals {
  rdns_missing = 3
}
p0f {
  socket  = "/run/p0f/p0f.sock"
  timeout = "500ms"
  os "windows" {
    name   = "^Windows"
    weight = 2
  }
  os "unix" {
    name   = "^(Linux|FreeBSD|OpenBSD)"
    weight = -1
  }
}
EOF
logged 6 "reload \\(.*\\): ok, "
[ "$(mainpid)" = "$P" ] || fail "greyd was restarted (pid $P -> $(mainpid)), want a reload in place"
# p0f reads the capture on its own time; the SMTP dialog on loopback may
# reach RCPT first. A connection of the client before its mail, seen in
# p0f's own report (its stdout, in the journal), makes p0f know it.
inside -t 50 swaks --server 127.0.0.1 --port 25 --local-interface 127.0.12.2 --quit-after banner --timeout 45 \
	>"$WORK/smtp/p0f-syn.txt" 2>&1 || true
p0f_report() { inside journalctl -q --no-pager -u greyd-p0f.service -o cat; }
p0f_saw() { p0f_report | grep -qE '^\| client += 127\.0\.12\.2/'; }
wait_until "journalctl -u greyd-p0f has no p0f report of a SYN of 127.0.12.2 within 10s" 10 p0f_saw
p0f_os=$(p0f_report | awk '/^\| client += 127\.0\.12\.2\// { f = 1 } f && /^\| os += / { sub(/^\| os += /, ""); print; exit }')
# p0f 3.09b's generic signature for a Linux SYN over loopback (MSS
# 65495): "Linux 2.2.x-3.x", params generic, distance 0.
[[ $p0f_os == Linux\ * ]] || fail "p0f's report for 127.0.12.2: os \"$p0f_os\", want Linux ..."
ok "p0f's report of 127.0.12.2's SYN in journalctl -u greyd-p0f: os = $p0f_os"
smtp p1 127.0.12.2 "s50-$RUN@sender.test"
expect_rcpt p1 "$ACCEPTED"
logged 5 "action=pass, reason=score, score=2, signals=rdns_missing:3,p0f\\.unix:-1, client_name=unknown, client_address=127\\.0\\.12\\.2, sender=s50-$RUN@sender\\.test"
[ "$(delivered p1)" = none ] || fail "mail passed by its score got an X-Greylist header"
clean_start "$P"
scrape metrics-p0f
n=$(metric metrics-p0f 'greyd_p0f_lookups_total{result="ok"}')
[ "$n" = 1 ] || fail "greyd_p0f_lookups_total{result=\"ok\"} is $n, want 1"
others=$(grep '^greyd_p0f_lookups_total{' "$WORK/metrics-p0f.prom" | grep -vF 'result="ok"') || true
[ -z "$others" ] || fail "GET /metrics: p0f lookups that failed: $others"
n=$(metric metrics-p0f 'greyd_decisions_total{action="pass",reason="score"}')
[ "$n" = 1 ] || fail "greyd_decisions_total{action=\"pass\",reason=\"score\"} is $n, want 1"
ok "a new client, no reverse DNS: 250 at once, score=2, signals=rdns_missing:3,p0f.unix:-1, delivered without a header; greyd_p0f_lookups_total: ok 1, nothing else"
cli explain-p0f 0 greyd explain 127.0.12.2 unknown "s50-$RUN@sender.test" story@story.test
says explain-p0f '^p0f +os_name "Linux", os_flavor "[^"]+", distance 0, match quality [0-9]+, in [0-9.]+ms$'
says explain-p0f '^  p0f\.unix +-1 match'
says explain-p0f '^score +2 \(greylist_at 3\): class pass'
ok "greyd explain: $(grep -E '^p0f ' "$WORK/cli/explain-p0f.txt" | tr -s ' '); $(grep -E '^score ' "$WORK/cli/explain-p0f.txt" | tr -s ' ')"
# p0f stopped: the signal is unknown, counted at its worst.
mark
inside systemctl disable --now greyd-p0f.service >"$WORK/p0f-disable.log" 2>&1 ||
	{ cat "$WORK/p0f-disable.log" >&2; fail "systemctl disable --now greyd-p0f.service"; }
is_state greyd-p0f.service inactive || fail "greyd-p0f.service is $(state greyd-p0f.service) after systemctl disable --now"
expect_absent /run/p0f
smtp p2 127.0.12.3 "s51-$RUN@sender.test"
expect_rcpt p2 "$GREYLISTED"
logged 5 "action=greylist, reason=new, score=5, signals=rdns_missing:3,p0f\\.windows:2\\?, client_name=unknown, client_address=127\\.0\\.12\\.3, sender=s51-$RUN@sender\\.test"
logged 4 'warning: p0f: cannot query /run/p0f/p0f\.sock: '
scrape metrics-p0f-2
n=$(metric metrics-p0f-2 'greyd_p0f_lookups_total{result="down"}')
[ "$n" = 1 ] || fail "greyd_p0f_lookups_total{result=\"down\"} is $n with p0f stopped, want 1"
ok "p0f stopped (/run/p0f gone): a new client of the same kind gets 450, score=5 (p0f.windows:2? counted at its worst); greyd warns that p0f cannot be queried; greyd_p0f_lookups_total{result=\"down\"} 1"
mark
inside rm /etc/greyd/conf.d/80-p0f.hcl
logged 6 "reload \\(.*\\): ok, "
inside rm -r /etc/systemd/system/greyd-p0f.service /etc/systemd/system/greyd-p0f.service.d
inside systemctl daemon-reload
expect_absent /etc/systemd/system/multi-user.target.wants/greyd-p0f.service
ok "drop-ins and unit removed, greyd reloaded (pid $(mainpid)); the p0f step took $((SECONDS - t0))s"

step "back to the local database: the Redis and metrics drop-ins removed, greyd restarted, redis-server stopped"
mark
P=$(mainpid)
inside rm /etc/greyd/conf.d/60-redis.hcl /etc/greyd/conf.d/70-metrics.hcl
inside rm -r /etc/systemd/system/greyd.service.d
inside systemctl daemon-reload
inside systemctl restart greyd.service
replaced "$P" "systemctl restart greyd"
inside systemctl stop redis-server.service || fail "systemctl stop redis-server"
[ "$(prop greyd.service RestrictAddressFamilies)" = AF_UNIX ] ||
	fail "RestrictAddressFamilies without tcp.conf: $(prop greyd.service RestrictAddressFamilies), want AF_UNIX"
[ "$(prop greyd.service WatchdogUSec)" = 30s ] || fail "WatchdogUSec is $(prop greyd.service WatchdogUSec) without the drop-in, want the packaged 30s"
logged 6 "greyd $V2 started: listening on unix:/var/spool/postfix/greyd/socket; database /var/lib/greyd/greyd\\.db"
clean_start "$(mainpid)"
inside -t 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9386' 2>/dev/null && fail "something still listens on 127.0.0.1:9386"
smtp r5 127.0.3.2 "s7-$RUN@sender.test"
expect_rcpt r5 "$ACCEPTED"
logged 5 "action=pass, reason=triplet found, client_name=unknown, client_address=127\\.0\\.3\\.2, sender=s7-$RUN@sender\\.test"
ok "greyd (pid $(mainpid)) on /var/lib/greyd/greyd.db again, AF_UNIX only, no metrics listener; a triplet it knew before passes"

step "dpkg -r greyd: stopped and gone; configuration, database and user stay; Postfix answers 451"
insh 'dpkg -r greyd </dev/null' >"$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log" >&2; fail "dpkg -r"; }
sed 's/^/systemd-test:     | /' "$WORK/remove.log"
grep -Eiv '^(\(Reading|Removing)' "$WORK/remove.log" | grep . && fail "dpkg -r printed something unexpected (above)"
for u in greyd.socket greyd.service; do
	is_state $u inactive || fail "$u is $(state $u) after dpkg -r"
done
[ -z "$(greyd_pids)" ] || fail "greyd still runs after dpkg -r: pid $(greyd_pids)"
for f in "$SOCK" /run/greyd /usr/sbin/greyd /lib/systemd/system/greyd.socket /lib/systemd/system/greyd.service; do
	expect_absent "$f"
done
for f in /etc/greyd/greyd.hcl /etc/greyd/whitelist_clients /etc/greyd/whitelist_recipients \
	/etc/greyd/whitelist_clients.local /etc/greyd/conf.d/50-local.hcl /var/lib/greyd/greyd.db; do
	inside test -f "$f" || fail "dpkg -r removed $f"
done
inside grep -qE '^[[:space:]]*hostname[[:space:]]*=[[:space:]]*"mx\.story\.test"' /etc/greyd/greyd.hcl || fail "dpkg -r lost the admin's edit"
inside getent passwd greyd >/dev/null || fail "dpkg -r removed the greyd user"
smtp m14 127.0.5.2 "s14-$RUN@sender.test"
expect_rcpt m14 "$NO_GREYD"
ok "units stopped, socket, /run/greyd, binary and units gone; /etc/greyd (with conf.d/50-local.hcl), /var/lib/greyd/greyd.db, user greyd kept"
ok "Postfix: $(rcpt m14) (README: greyd stopped)"

step "dpkg -P greyd: configuration and state gone; the greyd user and the admin's own files stay"
insh 'dpkg -P greyd </dev/null' >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "dpkg -P"; }
sed 's/^/systemd-test:     | /' "$WORK/purge.log"
grep -Eiv "^(\\(Reading|Purging|dpkg: warning: while removing greyd, directory '/etc/greyd(/conf\\.d)?' not empty so not removed)" "$WORK/purge.log" | grep . &&
	fail "dpkg -P printed something unexpected (above)"
inside getent passwd greyd >/dev/null || fail "dpkg -P removed the greyd user (Debian keeps system users)"
snapshot >"$WORK/after"
{
	cat "$WORK/before"
	printf '%s\n' "/etc/greyd drwxr-xr-x root:root" "/etc/greyd/whitelist_clients.local -rw-r--r-- root:root" \
		"/etc/greyd/conf.d drwxr-xr-x root:root" "/etc/greyd/conf.d/50-local.hcl -rw-r--r-- root:root"
} | sort >"$WORK/expected"
diff -u "$WORK/expected" "$WORK/after" >&2 ||
	fail "after dpkg -P the system differs from before dpkg -i (diff above; expected: the admin's whitelist_clients.local and conf.d/50-local.hcl)"
ok "as before dpkg -i, apart from the greyd user and group and the admin's whitelist_clients.local and conf.d/50-local.hcl"

step "power off"
power_off
unmount_root
ok "container stopped, root unmounted"
