#!/bin/bash
# End-to-end test: a real Postfix (Debian's package, chrooted smtpd), the
# real greyd on /var/spool/postfix/greyd/socket, and a real SMTP client
# (swaks) on loopback. Each scenario is asserted on what the client sees,
# on Postfix's log and on the delivered mailbox; scenario 8 runs greyd on
# a redis-server of its own, scenario "score" greyd in selective mode score
# with Postfix resolving through a fake DNS server. See README.md here.
#
#   make e2e                  # builds build/greyd, then runs this
#   test/e2e/run.sh           # as root on Debian 12; installs postfix, swaks,
#                             # redis-server
#
# Environment: GREYD (binary, default build/greyd), E2E_SMTP_PORT (2525),
# E2E_STRICT_RELOAD=0 (scenario 7 falls back to SIGHUP, and says so, when
# greyd does not reload by itself; by default that is a failure).
#
# The machine's /etc/postfix is not touched: Postfix runs with
# `postfix -c /var/tmp/greyd-e2e/postfix` on Debian's queue directory.
# Everything started here is stopped on exit, pass or fail.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/test/e2e
WORK=/var/tmp/greyd-e2e # fixed: main.cf and greyd.hcl name it
PFDIR=$WORK/postfix     # the test's /etc/postfix
GDIR=$WORK/greyd        # the test's /etc/greyd
SPOOL=/var/spool/postfix
SOCKDIR=$SPOOL/greyd
SOCK=$SOCKDIR/socket
PORT=${E2E_SMTP_PORT:-2525}
GREYD=${GREYD:-$ROOT/build/greyd}
DELAY=5 # greylist.delay in greyd.hcl
USER_NAME=e2e
MAILBOX=/var/mail/$USER_NAME
RUN=$(date +%Y%m%d%H%M%S)
REDIS_DIR=$WORK/redis     # scenario 8's redis-server: socket, log
REDIS_SOCK=$REDIS_DIR/redis.sock

# The README lines the suite uses (checked against README.md and main.cf).
POLICY_LINE='    check_policy_service unix:greyd/socket'
FAILOPEN_LINE='    check_policy_service { unix:greyd/socket, default_action=DUNNO }'

# Client addresses (all outside mynetworks = 127.0.0.1/32) and the names
# the chroot's /etc/hosts gives them, so Postfix sees verified names.
HOSTS_LINES='127.0.0.2 client.sender-e2e.test
127.0.0.3 mx.addr-e2e.test
127.0.0.4 mx.trusted-e2e.test
127.0.0.5 mx.late-e2e.test
127.0.0.6 mx.redis-e2e.test'
# HELO names of clients /etc/hosts does not name (scenario "score").
EHLO_LINES='127.0.0.20 mx.good-e2e.test
127.0.0.21 mx.noptr-e2e.test
127.0.0.22 mx.listed-e2e.test'
CLIENT=127.0.0.2   # greylisted
WL_ADDR=127.0.0.3  # whitelisted by address (whitelist_clients.local)
WL_NAME=127.0.0.4  # whitelisted by name: trusted-e2e.test
LATE=127.0.0.5     # whitelisted by scenario 7, while greyd runs
RCLIENT=127.0.0.6  # a new client, greylisted by greyd on Redis (scenario 8)

GREYD_PID=
REDIS_PID=
PASSED=0
FAILED=0
STARTED_AT=$SECONDS
# What cleanup must undo: files in $UNDO name what this run (or an
# interrupted earlier one) created.
UNDO=$WORK/undo
chroot_hosts=
postfix_ours=

say() { printf 'e2e: %s\n' "$*"; }
die() {
	printf 'e2e: FATAL: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- cleanup

dump() {
	echo "==================== greyd log ($WORK/greyd.log)"
	cat "$WORK/greyd.log" 2>/dev/null || echo "(none)"
	if [ -e "$REDIS_DIR/redis.log" ]; then
		echo "==================== redis-server log ($REDIS_DIR/redis.log)"
		cat "$REDIS_DIR/redis.log"
	fi
	if [ -e "$WORK/score/dns.log" ]; then
		echo "==================== fake DNS server log ($WORK/score/dns.log)"
		cat "$WORK/score/dns.log"
	fi
	echo "==================== Postfix log ($WORK/postfix.log)"
	cat "$WORK/postfix.log" 2>/dev/null || echo "(none)"
	echo "==================== mailbox ($MAILBOX)"
	cat "$MAILBOX" 2>/dev/null || echo "(none)"
	echo "===================="
}

cleanup() {
	rc=$?
	set +e
	trap - EXIT INT TERM
	stop_greyd quiet
	stop_redis
	[ -z "${SCORE_DNS_PID:-}" ] || kill -TERM "$SCORE_DNS_PID" 2>/dev/null
	if [ -n "$postfix_ours" ]; then
		postfix -c "$PFDIR" stop >/dev/null 2>&1
		wait_postfix_stopped
	fi
	if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
		dump
	fi
	[ -n "$chroot_hosts" ] && cp /etc/hosts "$SPOOL/etc/hosts" # what Debian's start script puts there
	undo
	if [ "$rc" -eq 0 ] && [ "$FAILED" -ne 0 ]; then
		rc=1
	fi
	say "$PASSED passed, $FAILED failed ($((SECONDS - STARTED_AT))s)"
	if [ "$rc" -ne 0 ]; then
		say "FAILED (logs above; work files in $WORK)"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ setup

made() {
	mkdir -p "$UNDO"
	: >"$UNDO/$1"
}

# undo [WHAT...]: remove what was made (everything by default).
undo() {
	local w
	[ $# -gt 0 ] || set -- policy-rc.d sockdir user
	for w in "$@"; do
		[ -e "$UNDO/$w" ] || continue
		case $w in
		policy-rc.d) rm -f /usr/sbin/policy-rc.d ;;
		sockdir) rm -f "$SOCK" && rmdir "$SOCKDIR" 2>/dev/null ;;
		user) userdel "$USER_NAME" 2>/dev/null && rm -f "$MAILBOX" ;;
		esac
		rm -f "$UNDO/$w"
	done
}

install_packages() {
	local missing="" p
	for p in postfix swaks redis-server; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing$missing"
	printf '%s\n' 'postfix postfix/main_mailer_type select Local only' \
		"postfix postfix/mailname string $(hostname)" | debconf-set-selections
	# Without systemd, the package would start Debian's own Postfix
	# instance on the queue directory this test uses (and redis-server its
	# own server on port 6379): forbid that.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made policy-rc.d
	fi
	local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends install)
	mkdir -p "$WORK"
	# shellcheck disable=SC2086 # $missing is a list of names
	if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" $missing >"$WORK/apt.log" 2>&1; then
		apt-get -q -o DPkg::Lock::Timeout=300 update >>"$WORK/apt.log" 2>&1 || true
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive "${apt[@]}" $missing >>"$WORK/apt.log" 2>&1 ||
			{ cat "$WORK/apt.log"; die "apt-get install$missing failed"; }
	fi
	undo policy-rc.d
}

# The pid of a running Postfix master on Debian's queue directory, if any.
master_pid() {
	local pid
	pid=$(tr -dc 0-9 2>/dev/null <"$SPOOL/pid/master.pid") || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_postfix_stopped() {
	local i
	for i in $(seq 100); do
		master_pid >/dev/null || return 0
		sleep 0.1
	done
	return 1
}

check_readme() {
	local readme block
	readme=$(cat "$ROOT/README.md")
	block=$(sed -n '/^smtpd_recipient_restrictions =/,/^$/p' "$HERE/main.cf" | sed '/^$/d; s/^/    /')
	[[ $block == *"$POLICY_LINE" ]] ||
		die "test/e2e/main.cf: the restriction list must end with: $POLICY_LINE"
	[[ $readme == *"$block"* ]] ||
		die "README.md's Postfix section no longer shows the lines the suite uses; it must contain:
$block"
	block=$(sed -n '/^smtpd_data_restrictions =/,/^$/p' "$HERE/main.cf" | sed '/^$/d; s/^/    /')
	[[ $block == *"$POLICY_LINE" && $readme == *"$block"* ]] ||
		die "README.md's Postfix section must show the DATA restriction the suite uses (test/e2e/main.cf):
$block"
	[[ $readme == *"$FAILOPEN_LINE"* ]] ||
		die "README.md no longer shows the fail-open line the suite uses:
$FAILOPEN_LINE"
}

setup_postfix() {
	local pid
	if pid=$(master_pid); then
		if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "MAIL_CONFIG=$PFDIR"; then
			say "stopping the Postfix a previous run left (pid $pid)"
			postfix -c "$PFDIR" stop >/dev/null 2>&1 || kill "$pid"
			wait_postfix_stopped || die "the previous run's Postfix (pid $pid) does not stop"
		else
			die "a Postfix master (pid $pid) already runs on $SPOOL; stop it first (postfix stop): this test runs its own Postfix on that queue directory"
		fi
	fi

	rm -rf "$PFDIR" "$WORK/postfix.log"
	mkdir -p "$PFDIR"
	cp "$HERE/main.cf" "$PFDIR/main.cf"
	# Debian's pristine master.cf, with the smtpd service on $PORT.
	sed -E "s/^smtp([[:space:]]+inet[[:space:]])/$PORT\1/" /usr/share/postfix/master.cf.dist >"$PFDIR/master.cf"
	awk -v p="$PORT" '$1 == p && $2 == "inet" && $5 == "y" && $8 == "smtpd" { ok = 1 } END { exit !ok }' "$PFDIR/master.cf" ||
		die "Debian's master.cf no longer runs smtpd chrooted: $(grep -E '^smtp[[:space:]]+inet' /usr/share/postfix/master.cf.dist)"
	printf 'postmaster: %s\n' "$USER_NAME" >"$PFDIR/aliases"
	postalias "$PFDIR/aliases"

	# What Debian's init script and postfix@.service do before starting:
	# copy resolv.conf, hosts, services, ... and libraries into the chroot.
	MAIL_CONFIG=$PFDIR /usr/lib/postfix/configure-instance.sh - ||
		die "/usr/lib/postfix/configure-instance.sh failed"
	postfix -c "$PFDIR" start >"$WORK/postfix-start.log" 2>&1 ||
		{ cat "$WORK/postfix-start.log"; die "postfix start failed"; }
	postfix_ours=1
	# Name the test clients inside the chroot only (no DNS, verified
	# names). After the start, whose check would warn that the chroot's
	# copy differs from /etc/hosts; smtpd reads it at each lookup.
	{
		cat /etc/hosts
		echo "$HOSTS_LINES"
	} >"$SPOOL/etc/hosts"
	chroot_hosts=1
	local i banner=""
	for i in $(seq 50); do
		# shellcheck disable=SC2016 # $1 is the inner shell's
		banner=$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && read -r l <&3 && echo "$l" && printf "QUIT\r\n" >&3' _ "$PORT" 2>/dev/null) && break
		sleep 0.2
	done
	case $banner in
	*"ESMTP greyd-e2e"*) ;;
	"") die "Postfix does not answer on 127.0.0.1:$PORT" ;;
	*) die "127.0.0.1:$PORT is another server ($banner); set E2E_SMTP_PORT" ;;
	esac
	say "Postfix $(postconf -c "$PFDIR" -h mail_version) listening on 127.0.0.1:$PORT (smtpd chrooted in $SPOOL)"
}

setup_greyd() {
	[ -x "$GREYD" ] || die "$GREYD missing: run 'make e2e' (it builds it first)"
	local pid
	pid=$(cat "$WORK/greyd.pid" 2>/dev/null) || true
	if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-config $GDIR"; then
		say "stopping the greyd a previous run left (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	pid=$(cat "$WORK/redis.pid" 2>/dev/null) || true
	if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$REDIS_SOCK"; then
		say "stopping the redis-server a previous run left (pid $pid)"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$GDIR" "$WORK/state" "$WORK/greyd.log" "$REDIS_DIR" "$WORK/redis.pid"
	mkdir -p "$GDIR"
	cp "$HERE/greyd.hcl" "$GDIR/greyd.hcl"
	cp "$ROOT/etc/greyd/whitelist_clients" "$ROOT/etc/greyd/whitelist_recipients" "$GDIR/"
	printf '# greyd e2e\n%s\ntrusted-e2e.test\n' "$WL_ADDR" >"$GDIR/whitelist_clients.local"
	printf '# greyd e2e\n' >"$GDIR/whitelist_recipients.local"
	# As greyd.socket's DirectoryMode=0755: smtpd (user postfix) must get in.
	if [ ! -d "$SOCKDIR" ]; then
		mkdir -m 0755 "$SOCKDIR"
		made sockdir
	fi
	rm -f "$SOCK" # a previous run's
	start_greyd
	say "$("$GREYD" -version 2>&1 | head -n1) on $SOCK ($(stat -c '%a %U:%G' "$SOCK"))"
}

setup_user() {
	if ! id "$USER_NAME" >/dev/null 2>&1; then
		useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
		made user
	fi
	rm -f "$MAILBOX"
}

# ------------------------------------------------------------------ greyd

sock_answers() {
	perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1' "$SOCK" 2>/dev/null
}

start_greyd() {
	echo "---- greyd started by e2e at $(date '+%F %T')" >>"$WORK/greyd.log"
	"$GREYD" -config "$GDIR" >>"$WORK/greyd.log" 2>&1 &
	GREYD_PID=$!
	echo "$GREYD_PID" >"$WORK/greyd.pid"
	local i
	for i in $(seq 100); do
		kill -0 "$GREYD_PID" 2>/dev/null || {
			wait "$GREYD_PID" || true
			GREYD_PID=
			die "greyd exited at start (log below)"
		}
		sock_answers && return 0
		sleep 0.1
	done
	die "greyd does not answer on $SOCK after 10s"
}

# stop_greyd [quiet]: SIGTERM, as systemd stops it; returns greyd's exit
# status (and 124 if it did not stop within 15 s, after a SIGKILL).
stop_greyd() {
	[ -n "$GREYD_PID" ] || return 0
	local pid=$GREYD_PID i st=0
	GREYD_PID=
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		[ "${1:-}" = quiet ] || say "greyd (pid $pid) ignored SIGTERM for 15s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid" 2>/dev/null || st=$?
	return "$st"
}

# ------------------------------------------------------------------ redis

# start_redis: a redis-server of this run's own, on a unix socket in $WORK,
# without persistence; it dies with this script even on SIGKILL.
start_redis() {
	mkdir -p "$REDIS_DIR"
	setpriv --pdeathsig KILL redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
		--save "" --appendonly no --daemonize no --dir "$REDIS_DIR" \
		--logfile "$REDIS_DIR/redis.log" >"$REDIS_DIR/stdout.log" 2>&1 &
	REDIS_PID=$!
	echo "$REDIS_PID" >"$WORK/redis.pid"
	local i
	for i in $(seq 100); do
		[ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
		kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start: $(cat "$REDIS_DIR/stdout.log")"
		sleep 0.1
	done
	die "redis-server does not answer on $REDIS_SOCK after 10s"
}

stop_redis() {
	[ -n "$REDIS_PID" ] || return 0
	local pid=$REDIS_PID i
	REDIS_PID=
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# rcli ARG...: redis-cli on this run's redis-server.
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }

# ------------------------------------------------------------- assertions

why=""       # why the current scenario failed
SESSIONS=""  # its SMTP sessions, printed when it fails
flunk() {
	why=$*
	return 1
}

# smtp NAME CLIENT_IP FROM TO[,TO...]: one SMTP session with swaks; the
# transcript goes to $WORK/smtp/NAME.txt. The message's subject carries
# [greyd-e2e RUN NAME], which is how the mailbox checks find it.
smtp() {
	local name=$1 ip=$2 from=$3 to=$4
	SESSIONS="$SESSIONS $name"
	swaks --server 127.0.0.1 --port "$PORT" --local-interface "$ip" \
		--ehlo "$(printf '%s\n%s\n' "$HOSTS_LINES" "$EHLO_LINES" | awk -v ip="$ip" '$1 == ip { print $2 }')" \
		--from "$from" --to "$to" --timeout 30 \
		--header "Subject: [greyd-e2e $RUN $name]" \
		--body "greyd end-to-end test, session $name" \
		>"$WORK/smtp/$name.txt" 2>&1 || true
}

# The server's replies in session NAME, one per line, without swaks' marks.
replies() {
	sed -nE 's/^<(\*\*|-|~) +//p' "$WORK/smtp/$1.txt"
}

# saw NAME ERE: the client saw a server reply matching ERE.
saw() {
	replies "$1" | grep -Eq -- "$2" || flunk "SMTP session $1: no reply matching /$2/"
}

# not_saw NAME ERE
not_saw() {
	if replies "$1" | grep -Eq -- "$2"; then
		flunk "SMTP session $1: unexpected reply /$2/: $(replies "$1" | grep -E -- "$2" | head -n1)"
	fi
}

# logged ERE [N]: Postfix's log gets at least N (1) lines matching ERE
# within 10 s (postlogd writes asynchronously).
logged() {
	local n=${2:-1} i c=0
	for i in $(seq 100); do
		c=$(grep -Ec -- "$1" "$WORK/postfix.log" 2>/dev/null) || true
		c=${c:-0}
		[ "$c" -ge "$n" ] && return 0
		sleep 0.1
	done
	flunk "Postfix's log: $c line(s) matching /$1/, want $n"
}

# not_logged ERE: Postfix's log has no line matching ERE.
not_logged() {
	if grep -Eq -- "$1" "$WORK/postfix.log" 2>/dev/null; then
		flunk "Postfix's log: unexpected line: $(grep -E -- "$1" "$WORK/postfix.log" | head -n1)"
	fi
}

# greyd_logged ERE: greyd's log has a line matching ERE within 3 s
# (greyd writes decision lines in batches, at most 100 ms late).
greyd_logged() {
	for _ in $(seq 30); do
		grep -Eq -- "$1" "$WORK/greyd.log" && return 0
		sleep 0.1
	done
	flunk "greyd's log: no line matching /$1/"
}

# headers NAME: for each message of session NAME in the mailbox, its
# X-Greylist header lines (or "none"), one message per line, "|"-separated.
headers() {
	awk -v tok="[greyd-e2e $RUN $1]" '
		function flush() { if (msg && hit) print (h == "" ? "none" : h) }
		/^From / { flush(); msg = 1; inhdr = 1; hit = 0; h = ""; next }
		inhdr && /^$/ { inhdr = 0; next }
		inhdr && /^X-Greylist:/ { h = (h == "" ? $0 : h "|" $0) }
		inhdr && /^Subject:/ && index($0, tok) { hit = 1 }
		END { flush() }' "$MAILBOX" 2>/dev/null
}

# delivered NAME N: N copies of session NAME's message reach the mailbox
# within 15 s.
delivered() {
	local i c=0
	for i in $(seq 150); do
		c=$(headers "$1" | wc -l)
		[ "$c" -ge "$2" ] && break
		sleep 0.1
	done
	[ "$c" -eq "$2" ] || flunk "mailbox $MAILBOX: $c cop(ies) of session $1's message, want $2"
}

# one_greylist_header NAME: every delivered copy has exactly one
# X-Greylist header, "delayed N seconds by greyd-..." with N >= DELAY.
one_greylist_header() {
	local h n re='^X-Greylist: delayed ([0-9]+) seconds by greyd-[^ ]+ at greyd-e2e\.test; .+'
	while IFS= read -r h; do
		case $h in
		none) flunk "mailbox: a copy of session $1's message has no X-Greylist header" || return 1 ;;
		*"|"*) flunk "mailbox: a copy of session $1's message has several X-Greylist headers: $h" || return 1 ;;
		esac
		[[ $h =~ $re ]] ||
			flunk "mailbox: unexpected header in session $1's message: $h" || return 1
		n=${BASH_REMATCH[1]}
		[ "$n" -ge "$DELAY" ] || flunk "mailbox: $h: delayed less than the $DELAY s delay" || return 1
	done < <(headers "$1")
}

# no_greylist_header NAME: mail that was never greylisted carries none.
no_greylist_header() {
	if headers "$1" | grep -qv '^none$'; then
		flunk "mailbox: session $1's message has $(headers "$1" | grep -v '^none$' | head -n1)"
	fi
}

# wait_until T: sleep until $SECONDS reaches T.
wait_until() {
	local left=$(($1 - SECONDS))
	[ "$left" -le 0 ] || sleep "$left"
}

GREYLISTED='Recipient address rejected: Greylisted, see http://postgrey\.schweikert\.ch/help/e2e\.test\.html'

# reject450 NAME RCPT: the client got greyd's 450 for RCPT.
reject450() {
	local r=${2//+/\\+}
	saw "$1" "^450 4\.2\.0 <$r>: $GREYLISTED\$"
}

# never_rejected SENDER: Postfix rejected nothing from SENDER.
never_rejected() {
	not_logged "NOQUEUE: reject: .* from=<${1//+/\\+}> "
}

# noqueue SENDER RCPT N: Postfix logged N greylisting rejects for them.
noqueue() {
	local s=${1//+/\\+} r=${2//+/\\+}
	logged "NOQUEUE: reject: RCPT from [^ ]+: 450 4\.2\.0 <$r>: $GREYLISTED; from=<$s> to=<$r> " "$3"
}

# accepted NAME RCPT...: each RCPT got 250, the message was queued, and
# Postfix logged its local delivery to each.
accepted() {
	local name=$1 r
	shift
	for r in "$@"; do
		saw "$name" "^250 2\.1\.5 Ok" || return 1
		r=${r//+/\\+}
		logged "postfix/local\[[0-9]+\]: [0-9A-Za-z]+: (to|.*, orig_to)=<$r>, .*status=sent \(delivered to mailbox\)" || return 1
	done
	saw "$name" "^250 2\.0\.0 Ok: queued as " || return 1
	[ "$(replies "$name" | grep -Ec '^250 2\.1\.5 ')" -eq $# ] || flunk "SMTP session $name: not every recipient got 250"
}

scenario() {
	local n=$1 title=$2
	why=""
	SESSIONS=""
	if "scenario_$n"; then
		PASSED=$((PASSED + 1))
		echo "PASS scenario $n: $title${NOTE:+ ($NOTE)}"
	else
		FAILED=$((FAILED + 1))
		echo "FAIL scenario $n: $title: ${why:-failed}"
		local s
		for s in $SESSIONS; do
			echo "---- SMTP session $s (swaks transcript)"
			cat "$WORK/smtp/$s.txt"
		done
	fi
	NOTE=""
}
NOTE=""

# -------------------------------------------------------------- scenarios

S1="s1-$RUN@sender-e2e.test"
T1=0

scenario_1() { # first attempt: 450 with greyd's text for every recipient
	smtp s1 "$CLIENT" "$S1" "e2e+s1a@e2e.test,e2e+s1b@e2e.test"
	T1=$SECONDS
	reject450 s1 e2e+s1a@e2e.test || return 1
	reject450 s1 e2e+s1b@e2e.test || return 1
	not_saw s1 '^250 2\.0\.0' || return 1
	noqueue "$S1" e2e+s1a@e2e.test 1 || return 1
	noqueue "$S1" e2e+s1b@e2e.test 1 || return 1
	logged "connect from client\.sender-e2e\.test\[127\.0\.0\.2\]" || return 1
	greyd_logged "action=greylist, reason=new, client_name=client\.sender-e2e\.test, client_address=127\.0\.0\.2, sender=$S1, recipient=e2e\+s1a@e2e\.test" || return 1
	delivered s1 0
}

scenario_2() { # retry before the delay: 450 again
	# At least a second later: greyd, like Postgrey, counts in whole
	# seconds and calls a retry within the first attempt's second "new".
	wait_until $((T1 + 2))
	smtp s2 "$CLIENT" "$S1" "e2e+s1a@e2e.test,e2e+s1b@e2e.test"
	[ $((SECONDS - T1)) -lt "$DELAY" ] || flunk "too slow: the retry came after the delay" || return 1
	reject450 s2 e2e+s1a@e2e.test || return 1
	reject450 s2 e2e+s1b@e2e.test || return 1
	noqueue "$S1" e2e+s1a@e2e.test 2 || return 1
	noqueue "$S1" e2e+s1b@e2e.test 2 || return 1
	greyd_logged "action=greylist, reason=early-retry \([0-9]+s missing\), .*sender=$S1, recipient=e2e\+s1a@e2e\.test" || return 1
	delivered s2 0
}

scenario_3() { # retry after the delay: 250, one X-Greylist header per message
	wait_until $((T1 + DELAY + 1))
	smtp s3 "$CLIENT" "$S1" "e2e+s1a@e2e.test,e2e+s1b@e2e.test"
	accepted s3 e2e+s1a@e2e.test e2e+s1b@e2e.test || return 1
	delivered s3 2 || return 1 # one copy per recipient, same mailbox
	one_greylist_header s3 || return 1
	greyd_logged "action=pass, reason=triplet found, delay=[0-9]+, .*sender=$S1, recipient=e2e\+s1a@e2e\.test" || return 1
	NOTE="$(headers s3 | head -n1)"
}

scenario_4() { # whitelisted client address, client name, recipient: at once
	local s4a="s4a-$RUN@sender-e2e.test" s4b="s4b-$RUN@sender-e2e.test" s4c="s4c-$RUN@sender-e2e.test"
	smtp s4a "$WL_ADDR" "$s4a" e2e+s4a@e2e.test
	never_rejected "$s4a" || return 1
	accepted s4a e2e+s4a@e2e.test || return 1
	delivered s4a 1 || return 1
	no_greylist_header s4a || return 1
	greyd_logged "action=pass, reason=client whitelist, .*sender=$s4a" || return 1

	smtp s4b "$WL_NAME" "$s4b" e2e+s4b@e2e.test
	never_rejected "$s4b" || return 1
	accepted s4b e2e+s4b@e2e.test || return 1
	logged "client=mx\.trusted-e2e\.test\[127\.0\.0\.4\]" || return 1
	delivered s4b 1 || return 1
	no_greylist_header s4b || return 1
	greyd_logged "action=pass, reason=client whitelist, client_name=mx\.trusted-e2e\.test, .*sender=$s4b" || return 1

	smtp s4c "$CLIENT" "$s4c" postmaster@e2e.test
	never_rejected "$s4c" || return 1
	accepted s4c postmaster@e2e.test || return 1
	delivered s4c 1 || return 1
	no_greylist_header s4c || return 1
	greyd_logged "action=pass, reason=recipient whitelist, .*sender=$s4c, recipient=postmaster@e2e\.test" || return 1
}

scenario_5() { # greyd restarted between the first attempt and the retry
	local s5="s5-$RUN@sender-e2e.test" t st=0
	smtp s5-first "$CLIENT" "$s5" e2e+s5@e2e.test
	t=$SECONDS
	reject450 s5-first e2e+s5@e2e.test || return 1
	noqueue "$s5" e2e+s5@e2e.test 1 || return 1
	stop_greyd || st=$?
	[ "$st" -eq 0 ] || flunk "greyd exited with status $st on SIGTERM" || return 1
	start_greyd
	wait_until $((t + DELAY + 1))
	smtp s5-retry "$CLIENT" "$s5" e2e+s5@e2e.test
	accepted s5-retry e2e+s5@e2e.test || return 1
	delivered s5-retry 1 || return 1
	one_greylist_header s5-retry
}

# Rewrites the policy line of the running Postfix's main.cf and reloads.
set_policy_line() {
	local from=$1 to=$2 n
	grep -qxF -- "$from" "$PFDIR/main.cf" || die "main.cf has no line '$from'"
	awk -v from="$from" -v to="$to" '$0 == from { $0 = to } { print }' "$PFDIR/main.cf" >"$PFDIR/main.cf.new"
	mv "$PFDIR/main.cf.new" "$PFDIR/main.cf"
	n=$(grep -c 'postfix/master.*: reload' "$WORK/postfix.log" || true)
	postfix -c "$PFDIR" reload >/dev/null 2>&1 || die "postfix reload failed"
	logged 'postfix/master.*: reload' $((n + 1)) || die "Postfix did not reload"
}

scenario_6() { # greyd stopped: default defers (451), fail-open accepts
	local s6a="s6a-$RUN@sender-e2e.test" s6b="s6b-$RUN@sender-e2e.test" st=0
	stop_greyd || st=$?
	# README: without default_action, Postfix defers.
	smtp s6a "$CLIENT" "$s6a" e2e+s6a@e2e.test
	# README's fail-open setting.
	set_policy_line "$POLICY_LINE" "$FAILOPEN_LINE"
	smtp s6b "$CLIENT" "$s6b" e2e+s6b@e2e.test
	set_policy_line "$FAILOPEN_LINE" "$POLICY_LINE"
	start_greyd

	[ "$st" -eq 0 ] || flunk "greyd exited with status $st on SIGTERM" || return 1
	saw s6a '^451 4\.3\.5 <e2e\+s6a@e2e\.test>: Recipient address rejected: Server configuration problem$' || return 1
	logged 'warning: problem talking to server greyd/socket' || return 1
	never_rejected "$s6b" || return 1
	accepted s6b e2e+s6b@e2e.test || return 1
	delivered s6b 1 || return 1
	no_greylist_header s6b
}

scenario_7() { # whitelist edit applies to the next session, no restart
	local i s
	smtp s7-before "$LATE" "s7-before-$RUN@sender-e2e.test" e2e+s7@e2e.test
	reject450 s7-before e2e+s7@e2e.test || return 1
	# An admin's edit, in place.
	printf '%s\n' "$LATE" >>"$GDIR/whitelist_clients.local"
	# A fresh sender each time: only the whitelist can let it through.
	for i in $(seq 10); do
		sleep 1
		s="s7-try$i"
		smtp "$s" "$LATE" "$s-$RUN@sender-e2e.test" e2e+s7@e2e.test
		if replies "$s" | grep -q '^250 2\.0\.0 Ok: queued'; then
			accepted "$s" e2e+s7@e2e.test || return 1
			delivered "$s" 1 || return 1
			NOTE="hot reload: applied within ${i}s of the edit, no signal"
			return 0
		fi
		reject450 "$s" e2e+s7@e2e.test || return 1
	done
	if [ "${E2E_STRICT_RELOAD:-1}" != 0 ]; then
		flunk "greyd did not pick up the edit of whitelist_clients.local within 10s (no hot reload; E2E_STRICT_RELOAD=0 tries SIGHUP then)"
		return 1
	fi
	say "scenario 7: no hot reload within 10s; sending SIGHUP"
	kill -HUP "$GREYD_PID"
	sleep 1
	s="s7-hup"
	smtp "$s" "$LATE" "$s-$RUN@sender-e2e.test" e2e+s7@e2e.test
	accepted "$s" e2e+s7@e2e.test || return 1
	delivered "$s" 1 || return 1
	NOTE="NEEDED SIGHUP: greyd did not reload by itself within 10s"
}

scenario_8() { # greyd on Redis: 450 for a new client, the retry passes with the header
	local s8="s8-$RUN@sender-e2e.test" t st=0 keys key v
	# What README's "Several MX hosts" says: a redis block in database,
	# here in a conf.d drop-in (read after greyd.hcl).
	stop_greyd || st=$?
	[ "$st" -eq 0 ] || flunk "greyd exited with status $st on SIGTERM" || return 1
	start_redis
	mkdir -p "$GDIR/conf.d"
	printf 'database {\n  redis { url = "unix://%s" }\n}\n' "$REDIS_SOCK" >"$GDIR/conf.d/redis.hcl"
	start_greyd
	greyd_logged "redis: connected to unix:$REDIS_SOCK" || return 1

	smtp s8-first "$RCLIENT" "$s8" e2e+s8@e2e.test
	t=$SECONDS
	reject450 s8-first e2e+s8@e2e.test || return 1
	not_saw s8-first '^250 2\.0\.0' || return 1
	noqueue "$s8" e2e+s8@e2e.test 1 || return 1
	greyd_logged "action=greylist, reason=new, client_name=mx\.redis-e2e\.test, client_address=127\.0\.0\.6, sender=$s8, recipient=e2e\+s8@e2e\.test" || return 1
	# The triplet is in Redis (this Redis is new: nothing else is).
	keys=$(rcli --scan) || flunk "redis-cli --scan failed" || return 1
	key=$(printf '%s\n' "$keys" | grep -F 'e2e+s8@e2e.test') ||
		flunk "Redis holds no key for the triplet (keys: ${keys//$'\n'/ })" || return 1

	wait_until $((t + DELAY + 1))
	smtp s8-retry "$RCLIENT" "$s8" e2e+s8@e2e.test
	accepted s8-retry e2e+s8@e2e.test || return 1
	delivered s8-retry 1 || return 1
	one_greylist_header s8-retry || return 1
	greyd_logged "action=pass, reason=triplet found, delay=[0-9]+, client_name=mx\.redis-e2e\.test, .*sender=$s8" || return 1
	v=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
	NOTE="Redis $v, key $key; $(headers s8-retry | head -n1)"
}

# ----------------------------------------------------------------- tarpit

# The tarpit (issue 22): a client with an invalid HELO (helo_invalid = 1,
# tarpit_at = 1, no DNS needed) waits TP_DURATION seconds at RCPT instead
# of being greylisted. Self-contained: its own addresses and names (added
# to the chroot's hosts here), its own conf.d drop-in, run last.
TP_DURATION=3
TP_ABANDON=8
TP_HOSTS='127.0.0.7 mx.patient-e2e.test
127.0.0.8 mx.impatient-e2e.test
127.0.0.9 mx.two-e2e.test'

# tp_smtp NAME CLIENT_IP FROM TO[,TO...] TIMEOUT: smtp with the HELO
# "tarpit" (a single label: invalid) and swaks' reply timeout TIMEOUT.
tp_smtp() {
	local name=$1 ip=$2 from=$3 to=$4 timeout=$5
	SESSIONS="$SESSIONS $name"
	swaks --server 127.0.0.1 --port "$PORT" --local-interface "$ip" --ehlo tarpit \
		--from "$from" --to "$to" --timeout "$timeout" \
		--header "Subject: [greyd-e2e $RUN $name]" \
		--body "greyd end-to-end test, session $name" \
		>"$WORK/smtp/$name.txt" 2>&1 || true
}

scenario_tarpit() { # a patient client delivered in its session; one that leaves greylisted
	local sp="tp1-$RUN@sender-e2e.test" si="tp2-$RUN@sender-e2e.test" s2="tp3-$RUN@sender-e2e.test"
	local st=0 t took patient
	stop_greyd || st=$?
	[ "$st" -eq 0 ] || flunk "greyd exited with status $st on SIGTERM" || return 1
	mkdir -p "$GDIR/conf.d"
	printf '%s\n' 'selective {' '  mode        = "score"' '  greylist_at = 3' '  tarpit_at   = 1' '}' \
		'signals {' '  helo_invalid = 1' '}' \
		'tarpit {' "  duration       = \"${TP_DURATION}s\"" '  max_concurrent = 5' "  abandon_delay  = \"${TP_ABANDON}s\"" '}' \
		>"$GDIR/conf.d/tarpit.hcl"
	echo "$TP_HOSTS" >>"$SPOOL/etc/hosts"
	start_greyd

	# Patient (swaks waits 30 s for a reply): delivered in its first
	# session, after about the tarpit, with no 4xx and no X-Greylist.
	t=$SECONDS
	tp_smtp tp-patient 127.0.0.7 "$sp" e2e+tp1@e2e.test 30
	patient=$((SECONDS - t))
	never_rejected "$sp" || return 1
	not_saw tp-patient '^4[0-9][0-9] ' || return 1
	accepted tp-patient e2e+tp1@e2e.test || return 1
	[ "$patient" -ge "$TP_DURATION" ] ||
		flunk "the patient session took ${patient}s, less than the ${TP_DURATION}s tarpit" || return 1
	delivered tp-patient 1 || return 1
	no_greylist_header tp-patient || return 1
	greyd_logged "action=tarpit, reason=tarpit, score=1, signals=helo_invalid:1, sleep=$TP_DURATION, client_name=mx\.patient-e2e\.test, client_address=127\.0\.0\.7, sender=$sp, recipient=e2e\+tp1@e2e\.test" || return 1
	greyd_logged "action=pass, reason=tarpit, waited=[0-9]+, client_name=mx\.patient-e2e\.test, client_address=127\.0\.0\.7, sender=$sp, recipient=e2e\+tp1@e2e\.test, recipient_count=1" || return 1

	# Impatient (1 s timeout): leaves during the wait; its next attempt
	# gets the 450 (abandoned), and the one after abandon_delay passes.
	tp_smtp tp-impatient 127.0.0.8 "$si" e2e+tp2@e2e.test 1
	not_saw tp-impatient '^250 2\.0\.0' || return 1
	greyd_logged "action=tarpit, reason=tarpit, .*client_address=127\.0\.0\.8, sender=$si" || return 1
	logged "disconnect from mx\.impatient-e2e\.test\[127\.0\.0\.8\]" || return 1
	t=$SECONDS
	tp_smtp tp-impatient-2 127.0.0.8 "$si" e2e+tp2@e2e.test 30
	reject450 tp-impatient-2 e2e+tp2@e2e.test || return 1
	greyd_logged "action=greylist, reason=tarpit-abandoned, client_name=mx\.impatient-e2e\.test, client_address=127\.0\.0\.8, sender=$si" || return 1
	wait_until $((t + TP_ABANDON + 1))
	tp_smtp tp-impatient-3 127.0.0.8 "$si" e2e+tp2@e2e.test 30
	accepted tp-impatient-3 e2e+tp2@e2e.test || return 1
	delivered tp-impatient-3 1 || return 1
	one_greylist_header tp-impatient-3 || return 1

	# Two recipients: one wait, the second RCPT passes, DATA (no
	# recipient, recipient_count=2) passes both triplets.
	tp_smtp tp-two 127.0.0.9 "$s2" "e2e+tp3a@e2e.test,e2e+tp3b@e2e.test" 30
	never_rejected "$s2" || return 1
	accepted tp-two e2e+tp3a@e2e.test e2e+tp3b@e2e.test || return 1
	delivered tp-two 2 || return 1 # a copy per recipient
	greyd_logged "action=pass, reason=tarpit-session, client_name=mx\.two-e2e\.test, client_address=127\.0\.0\.9, sender=$s2, recipient=e2e\+tp3b@e2e\.test" || return 1
	greyd_logged "action=pass, reason=tarpit, waited=[0-9]+, client_name=mx\.two-e2e\.test, client_address=127\.0\.0\.9, sender=$s2, recipient_count=2" || return 1
	t=$SECONDS
	tp_smtp tp-two-again 127.0.0.9 "$s2" "e2e+tp3a@e2e.test,e2e+tp3b@e2e.test" 30
	took=$((SECONDS - t))
	accepted tp-two-again e2e+tp3a@e2e.test e2e+tp3b@e2e.test || return 1
	delivered tp-two-again 2 || return 1
	[ "$took" -lt "$TP_DURATION" ] || flunk "the next message of tp-two took ${took}s: tarpitted again" || return 1
	greyd_logged "action=pass, reason=triplet found, client_name=mx\.two-e2e\.test, .*sender=$s2, recipient=e2e\+tp3b@e2e\.test" || return 1
	NOTE="patient session ${patient}s with a ${TP_DURATION}s tarpit"
}

# ------------------------------------------------------------------- main

[ "$(id -u)" -eq 0 ] || die "run as root (installs Postfix, runs it on $SPOOL)"
check_readme
install_packages
mkdir -p "$WORK"
rm -rf "$WORK/smtp"
mkdir -p "$WORK/smtp"
setup_user
setup_postfix
setup_greyd

scenario 1 "first attempt: 450 with greyd's text, Postfix logs NOQUEUE reject"
scenario 2 "retry before the delay: 450 again"
scenario 3 "retry after the delay: 250, one X-Greylist header per message with 2 recipients"
scenario 4 "whitelisted client address, client name and recipient (postmaster@): accepted at once"
scenario 5 "greyd restarted between attempt and retry: retry accepted"
scenario 6 "greyd stopped: 451 by default, accepted with default_action=DUNNO"
scenario 7 "edit of whitelist_clients.local: next session whitelisted without restart"
scenario 8 "greyd on Redis (conf.d redis block, redis-server on a unix socket): 450 for a new client, retry after the delay delivered with one X-Greylist header"

# ---------------------------------------------------------- greyd report

# The senders of scenario 7 that were greylisted before the edit of the
# whitelist took effect (each a triplet of its own, never retried).
late_greylisted() {
	local f n=0
	for f in "$WORK"/smtp/s7-try*.txt; do
		[ -e "$f" ] || continue
		replies "$(basename "$f" .txt)" | grep -q '^450 4\.2\.0 ' && n=$((n + 1))
	done
	echo "$n"
}

# report NAME ARGS...: greyd report against the running greyd; stdout in
# $WORK/report-NAME.out, stderr (the summary) in $WORK/report-NAME.err.
report() {
	local name=$1 st=0
	shift
	"$GREYD" report -config "$GDIR" "$@" >"$WORK/report-$name.out" 2>"$WORK/report-$name.err" || st=$?
	[ "$st" -eq 0 ] || flunk "greyd report $*: exit status $st: $(cat "$WORK/report-$name.err")"
}

# summary_is NAME LINE: greyd report NAME's summary is LINE.
summary_is() {
	grep -qxF -- "$2" "$WORK/report-$1.err" ||
		flunk "greyd report ($1): summary $(grep '^greyd report: [0-9]' "$WORK/report-$1.err"), want: $2"
}

scenario_9() { # greyd report: the fatal triplets of the logs of this run
	local k ip
	k=$(late_greylisted)
	# Postfix's log and greyd's, as a site keeps them. Greylisted:
	# s1 (2 recipients, 2 attempts each), s5, s7-before, the k late ones
	# of scenario 7, s8; retried and passed (greyd's pass lines say so):
	# s1's, s5, s8.
	cat "$WORK/postfix.log" "$WORK/greyd.log" >"$WORK/report.log"
	report both -show-tries "$WORK/report.log" || return 1
	summary_is both "greyd report: $((5 + k)) triplets greylisted ($((7 + k)) attempts): 4 retried and passed, $((1 + k)) never retried" || return 1
	# One line each: TRIES ADDRESS NAME SENDER RECIPIENT, all of scenario 7's
	# client; senders as greyd keys them (the run's number is "#").
	[ "$(wc -l <"$WORK/report-both.out")" -eq $((1 + k)) ] ||
		flunk "greyd report: $(wc -l <"$WORK/report-both.out") lines, want $((1 + k)): $(cat "$WORK/report-both.out")" || return 1
	ip=$(awk '$2 != "127.0.0.5" { print $2; exit }' "$WORK/report-both.out")
	[ -z "$ip" ] || flunk "greyd report: a fatal triplet of $ip: $(cat "$WORK/report-both.out")" || return 1
	grep -qE '^1 +127\.0\.0\.5 mx\.late-e2e\.test s7-before-#@sender-e2e\.test e2e\+s7@e2e\.test$' "$WORK/report-both.out" ||
		flunk "greyd report: no line for s7-before: $(cat "$WORK/report-both.out")" || return 1

	# Postfix's log alone: what got through is the running greyd's to
	# say. It runs on Redis since scenario 8 and knows s8's triplet,
	# passed; the earlier ones, in the buntdb file it no longer reads,
	# count as forgotten, hence never retried (as postgreyreport counts
	# a triplet its database lost).
	report postfix "$WORK/postfix.log" || return 1
	summary_is postfix "greyd report: $((5 + k)) triplets greylisted ($((7 + k)) attempts): 1 retried and passed, $((4 + k)) never retried" || return 1
	if grep -q ' 127\.0\.0\.6 ' "$WORK/report-postfix.out"; then
		flunk "greyd report: s8's triplet, passed on Redis, is listed: $(grep ' 127\.0\.0\.6 ' "$WORK/report-postfix.out")"
		return 1
	fi
	NOTE="$(grep '^greyd report: [0-9]' "$WORK/report-both.err")"
}

scenario 9 "greyd report on Postfix's and greyd's logs: the never-retried triplets, the summary; against greyd on Redis"

# ------------------------------------------- selective greylisting (score)

# Scenario "score" is self-contained: Postfix is restarted in a mount
# namespace of its own whose /etc/resolv.conf and nsswitch.conf (and the
# chroot's) send host lookups that /etc/hosts does not answer to a fake DNS
# server (greyd-bench -serve-dns) on $SCORE_DNS:53, so client_name is
# Postfix's own verdict; a greyd in mode score, with its own configuration
# directory and database, asks the same server. Afterwards Postfix runs
# again as before and the usual greyd is back.
GREYD_BENCH=${GREYD_BENCH:-$ROOT/build/greyd-bench}
SCORE_DIR=$WORK/score # zone, resolv.conf, nsswitch.conf, DNS log
SCORE_DNS=127.0.0.29
SCORE_GOOD=127.0.0.20   # PTR and A agree: passes at first sight
SCORE_NOPTR=127.0.0.21  # no PTR: client_name=unknown, greylisted
SCORE_LISTED=127.0.0.22 # PTR and A agree, but on the DNSBL: greylisted
SCORE_DNS_PID=

start_score_dns() {
	local pid i
	pid=$(cat "$WORK/score-dns.pid" 2>/dev/null) || true
	if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-serve-dns -tcp $SCORE_DNS:53"; then
		kill -TERM "$pid" 2>/dev/null || true
	fi
	[ -x "$GREYD_BENCH" ] || die "$GREYD_BENCH missing: run 'make e2e' (it builds it first)"
	rm -rf "$SCORE_DIR"
	mkdir -p "$SCORE_DIR"
	cat >"$SCORE_DIR/e2e.zone" <<ZONE
good-e2e.test           SOA 60
mx.good-e2e.test        A $SCORE_GOOD
listed-e2e.test         SOA 60
mx.listed-e2e.test      A $SCORE_LISTED
0.0.127.in-addr.arpa    SOA 60
20.0.0.127.in-addr.arpa PTR mx.good-e2e.test
22.0.0.127.in-addr.arpa PTR mx.listed-e2e.test
bl.e2e-dns.test         SOA 60
22.0.0.127.bl.e2e-dns.test A 127.0.0.2
ZONE
	"$GREYD_BENCH" -serve-dns -tcp "$SCORE_DNS:53" -zone "$SCORE_DIR/e2e.zone" -dns-log 2>"$SCORE_DIR/dns.log" &
	SCORE_DNS_PID=$!
	echo "$SCORE_DNS_PID" >"$WORK/score-dns.pid"
	for i in $(seq 50); do
		grep -q 'listening on' "$SCORE_DIR/dns.log" && return 0
		kill -0 "$SCORE_DNS_PID" 2>/dev/null || break
		sleep 0.1
	done
	die "the fake DNS server did not start on $SCORE_DNS:53: $(cat "$SCORE_DIR/dns.log")"
}

stop_score_dns() {
	[ -n "$SCORE_DNS_PID" ] || return 0
	kill -TERM "$SCORE_DNS_PID" 2>/dev/null || true
	wait "$SCORE_DNS_PID" 2>/dev/null || true
	SCORE_DNS_PID=
}

# restart_postfix [resolver]: stop Postfix and start it again, with
# "resolver" in the fake DNS server's mount namespace.
restart_postfix() {
	local i banner=""
	postfix -c "$PFDIR" stop >/dev/null 2>&1 || true
	wait_postfix_stopped || die "Postfix does not stop"
	if [ "${1:-}" = resolver ]; then
		printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$SCORE_DNS" >"$SCORE_DIR/resolv.conf"
		printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nservices: files\n' >"$SCORE_DIR/nsswitch.conf"
		# shellcheck disable=SC2016 # the inner shell's variables
		unshare -m --propagation private sh -ec '
			for f in resolv.conf nsswitch.conf; do
				mount --bind "$2/$f" "/etc/$f"
				mount --bind "$2/$f" "$3/etc/$f"
			done
			exec postfix -c "$1" start' _ "$PFDIR" "$SCORE_DIR" "$SPOOL" >"$WORK/postfix-start.log" 2>&1 ||
			{ cat "$WORK/postfix-start.log"; die "postfix start in a mount namespace failed"; }
	else
		postfix -c "$PFDIR" start >"$WORK/postfix-start.log" 2>&1 ||
			{ cat "$WORK/postfix-start.log"; die "postfix start failed"; }
	fi
	for i in $(seq 50); do
		# shellcheck disable=SC2016 # $1 is the inner shell's
		banner=$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && read -r l <&3 && echo "$l" && printf "QUIT\r\n" >&3' _ "$PORT" 2>/dev/null) && break
		sleep 0.2
	done
	[[ $banner == *"ESMTP greyd-e2e"* ]] || die "Postfix does not answer on 127.0.0.1:$PORT after its restart"
}

# start_score_greyd: greyd in mode score on the usual socket, from
# $WORK/greyd-score (the test's greyd.hcl, the whitelists, conf.d/score.hcl).
start_score_greyd() {
	local GDIR=$WORK/greyd-score # start_greyd's, for this greyd
	rm -rf "$GDIR" "$WORK/state-score"
	mkdir -p "$GDIR/conf.d" "$WORK/state-score"
	cp "$HERE/greyd.hcl" "$ROOT/etc/greyd/whitelist_clients" "$ROOT/etc/greyd/whitelist_recipients" "$GDIR/"
	printf '# greyd e2e\n' >"$GDIR/whitelist_clients.local"
	printf '# greyd e2e\n' >"$GDIR/whitelist_recipients.local"
	cat >"$GDIR/conf.d/score.hcl" <<HCL
database {
  path = "$WORK/state-score/greyd.db"
}
selective {
  mode        = "score"
  greylist_at = 3
}
signals {
  rdns_missing = 3
  helo_invalid = 1
}
dnsbl "bl.e2e-dns.test" {
  weight = 3
}
dns {
  servers = ["$SCORE_DNS:53"]
  budget  = "2s"
}
HCL
	"$GREYD" check-config -config "$GDIR" >/dev/null 2>"$WORK/check-config-score.err" ||
		die "greyd rejects the score configuration: $(cat "$WORK/check-config-score.err")"
	start_greyd
}

# score_dns_asked TYPE NAME: the fake DNS server got a query for NAME.
score_dns_asked() {
	grep -qF -- "dnstest: udp $1 $2: " "$SCORE_DIR/dns.log" ||
		grep -qF -- "dnstest: tcp $1 $2: " "$SCORE_DIR/dns.log" ||
		flunk "the fake DNS server was not asked $1 $2 (its log: $SCORE_DIR/dns.log)"
}

scenario_score_run() {
	local good="sc-good-$RUN@sender-e2e.test" noptr="sc-noptr-$RUN@sender-e2e.test" listed="sc-listed-$RUN@sender-e2e.test" t
	smtp sc-good "$SCORE_GOOD" "$good" e2e+scgood@e2e.test
	logged "connect from mx\.good-e2e\.test\[127\.0\.0\.20\]" || return 1
	never_rejected "$good" || return 1
	accepted sc-good e2e+scgood@e2e.test || return 1
	delivered sc-good 1 || return 1
	no_greylist_header sc-good || return 1
	greyd_logged "action=pass, reason=score, score=0, client_name=mx\.good-e2e\.test, client_address=127\.0\.0\.20, sender=$good" || return 1
	score_dns_asked PTR 20.0.0.127.in-addr.arpa || return 1 # Postfix's reverse lookup
	score_dns_asked A mx.good-e2e.test || return 1          # and its forward check
	score_dns_asked A 20.0.0.127.bl.e2e-dns.test || return 1 # greyd's DNSBL lookup

	smtp sc-noptr-first "$SCORE_NOPTR" "$noptr" e2e+scnoptr@e2e.test
	t=$SECONDS
	logged "connect from unknown\[127\.0\.0\.21\]" || return 1
	reject450 sc-noptr-first e2e+scnoptr@e2e.test || return 1
	noqueue "$noptr" e2e+scnoptr@e2e.test 1 || return 1
	greyd_logged "action=greylist, reason=new, score=3, signals=rdns_missing:3, client_name=unknown, client_address=127\.0\.0\.21, sender=$noptr" || return 1

	smtp sc-listed "$SCORE_LISTED" "$listed" e2e+sclisted@e2e.test
	logged "connect from mx\.listed-e2e\.test\[127\.0\.0\.22\]" || return 1
	reject450 sc-listed e2e+sclisted@e2e.test || return 1
	greyd_logged "action=greylist, reason=new, score=3, signals=dnsbl\.bl\.e2e-dns\.test:3, client_name=mx\.listed-e2e\.test, client_address=127\.0\.0\.22, sender=$listed" || return 1
	delivered sc-listed 0 || return 1

	wait_until $((t + DELAY + 1))
	smtp sc-noptr-retry "$SCORE_NOPTR" "$noptr" e2e+scnoptr@e2e.test
	accepted sc-noptr-retry e2e+scnoptr@e2e.test || return 1
	delivered sc-noptr-retry 1 || return 1
	one_greylist_header sc-noptr-retry || return 1
	greyd_logged "action=pass, reason=triplet found, delay=[0-9]+, .*client_address=127\.0\.0\.21, sender=$noptr" || return 1
	NOTE="$(grep -c '^dnstest: ' "$SCORE_DIR/dns.log") queries to the fake DNS server; $(headers sc-noptr-retry | head -n1)"
}

scenario_score() {
	local st=0 rc=0
	stop_greyd || st=$?
	[ "$st" -eq 0 ] || flunk "greyd exited with status $st on SIGTERM" || return 1
	start_score_dns
	restart_postfix resolver
	start_score_greyd
	scenario_score_run || rc=1
	stop_greyd || true
	restart_postfix
	stop_score_dns
	start_greyd
	return "$rc"
}

scenario score "selective greylisting, mode score, Postfix resolving through the fake DNS server: PTR and A agree: delivered at once; no PTR (unknown): 450, delivered after the delay; on the DNSBL: 450"

scenario tarpit "tarpit (${TP_DURATION}s): patient client delivered in its session, impatient one 450 then passed after abandon_delay, two recipients through DATA"
