#!/usr/bin/env bash
# bench/run.sh — throughput and latency of greyd against Postgrey and against
# the null policy server (greyd-bench -serve-null, the ceiling), over unix
# sockets in a temporary directory. Prints one table. Everything it starts is
# stopped on exit; nothing listens on TCP and nothing leaves this machine.
#
# Usage: bench/run.sh            (as root on Debian if Postgrey is not installed)
#
# Environment (all optional):
#   BENCH_DURATION   measured time per cell (greyd-bench -d)     default 10s
#   BENCH_CONNS      connection counts                           default "1 8 64"
#   BENCH_WORKLOADS  workloads                                   default "mixed new repeat whitelisted"
#   BENCH_SERVERS    servers to measure                          default "null greyd postgrey"
#   BENCH_FLAGS      extra greyd-bench flags, e.g. "-pipeline 4" default none
#   GREYD            prebuilt greyd binary                       default: go build ./cmd/greyd
#   GREYD_SYNC       greyd database sync (never|everysecond|always) default: greyd's default
#                    ("always" is the durability Postgrey has: one fdatasync per request)
#   TMPDIR           where the sockets and databases live; TMPDIR=/dev/shm takes the
#                    disk (fsync latency) out of the picture
#   BENCH_KEEP=1     keep the temporary directory (logs, JSON results)
#
# Default: 4 workloads x 3 connection counts x 3 servers x 10 s ≈ 6-7 minutes.
set -euo pipefail

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNS:-"1 8 64"}
WORKLOADS=${BENCH_WORKLOADS:-"mixed new repeat whitelisted"}
SERVERS=${BENCH_SERVERS:-"null greyd postgrey"}
FLAGS=${BENCH_FLAGS:-}
DELAY=300 # seconds; Postgrey's default, and greyd's "5m"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WL_CLIENTS=$ROOT/etc/greyd/whitelist_clients
WL_RECIPIENTS=$ROOT/etc/greyd/whitelist_recipients
TMP=$(mktemp -d "${TMPDIR:-/tmp}/greyd-bench.XXXXXX")
BIN=$TMP/bin
PIDS=()

log() { printf 'bench: %s\n' "$*" >&2; }

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Postgrey from Debian ------------------------------------------------------
install_postgrey() {
	[ -x /usr/sbin/postgrey ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		log "Postgrey is not installed and this is not root on Debian: skipping it"
		return 1
	fi
	log "installing postgrey from Debian"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgrey >"$TMP/apt.log" 2>&1; then
		apt-get update -qq >>"$TMP/apt.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgrey >>"$TMP/apt.log" 2>&1 ||
			{ log "apt-get install postgrey failed:"; tail -5 "$TMP/apt.log" >&2; return 1; }
	fi
	# The package enables and (where services can start) starts its own
	# daemon on --inet=10023. We run a private copy: stop and disable that one.
	local pidfile pid
	for pidfile in /run/postgrey.pid /var/run/postgrey.pid; do
		[ -f "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		if [ -n "$pid" ] && ps -p "$pid" -o args= 2>/dev/null | grep -q postgrey; then
			log "stopping the packaged postgrey (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	systemctl disable postgrey >/dev/null 2>&1 || update-rc.d postgrey disable >/dev/null 2>&1 || true
}

# --- build ---------------------------------------------------------------------
mkdir -p "$BIN"
(cd "$ROOT" && go build -o "$BIN/greyd-bench" ./cmd/greyd-bench)
if [ -n "${GREYD:-}" ]; then
	cp "$GREYD" "$BIN/greyd"
elif ! (cd "$ROOT" && go build -o "$BIN/greyd" ./cmd/greyd) >"$TMP/greyd-build.log" 2>&1; then
	log "greyd does not build, leaving it out:"
	head -5 "$TMP/greyd-build.log" >&2
	rm -f "$BIN/greyd"
fi

# ready SOCKET PID NAME: wait until a real request over SOCKET is answered.
ready() {
	local sock=$1 pid=$2 name=$3
	for _ in $(seq 100); do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited during startup:"
			tail -5 "$TMP/$name.log" >&2
			return 1
		fi
		if [ -S "$sock" ] &&
			"$BIN/greyd-bench" -unix "$sock" -n 1 -c 1 -w whitelisted -timeout 2s -json >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	log "$name did not answer within 10 s"
	return 1
}

declare -A SOCK=() PID=()
# started NAME: record the last background job as server NAME and wait for it.
started() {
	PIDS+=($!)
	PID[$1]=$!
	ready "$TMP/$1.sock" "${PID[$1]}" "$1" && SOCK[$1]=$TMP/$1.sock
}

start_null() {
	"$BIN/greyd-bench" -serve-null -unix "$TMP/null.sock" 2>"$TMP/null.log" &
	started null
}

start_greyd() {
	[ -x "$BIN/greyd" ] || return 1
	cat >"$TMP/greyd.hcl" <<EOF
listen {
  unix         = "$TMP/greyd.sock"
  socket_group = ""
}
database {
  path = "$TMP/greyd.db"
  ${GREYD_SYNC:+sync = \"$GREYD_SYNC\"}
}
greylist { delay = "${DELAY}s" }
whitelist {
  clients    = ["$WL_CLIENTS"]
  recipients = ["$WL_RECIPIENTS"]
}
EOF
	if ! "$BIN/greyd" check-config -config "$TMP/greyd.hcl" >"$TMP/greyd.effective.hcl" 2>"$TMP/greyd.log"; then
		log "greyd rejects the bench configuration:"
		cat "$TMP/greyd.log" >&2
		return 1
	fi
	"$BIN/greyd" -config "$TMP/greyd.hcl" 2>"$TMP/greyd.log" &
	started greyd
}

start_postgrey() {
	install_postgrey || return 1
	mkdir -p "$TMP/pg"
	# --user/--group by name: Postgrey treats 0 as "use the default" (postgrey).
	/usr/sbin/postgrey --unix="$TMP/postgrey.sock" --dbdir="$TMP/pg" --delay=$DELAY \
		--whitelist-clients="$WL_CLIENTS" --whitelist-recipients="$WL_RECIPIENTS" \
		--user="$(id -un)" --group="$(id -gn)" 2>"$TMP/postgrey.log" &
	started postgrey
}

for s in $SERVERS; do
	case $s in
	null | greyd | postgrey) "start_$s" || log "$s: not measured" ;;
	*) log "unknown server $s (want null, greyd, postgrey)"; exit 2 ;;
	esac
done
[ ${#SOCK[@]} -gt 0 ] || { log "no server to measure"; exit 1; }

# --- measure ---------------------------------------------------------------------
# jget KEY FILE: a number from greyd-bench's flat JSON object.
jget() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Postgrey's speed on disk is mostly fdatasync latency: note what the disk does now.
FSYNC_MS=$(LC_ALL=C dd if=/dev/zero of="$TMP/fsync.probe" bs=4k count=100 oflag=dsync 2>&1 |
	awk '/copied/ { printf "%.2f", $(NF-3) * 10 }')
rm -f "$TMP/fsync.probe"
cells=0
for _ in $WORKLOADS; do for _ in $CONNS; do cells=$((cells + ${#SOCK[@]})); done; done
log "$cells cells of $DURATION each; servers: ${!SOCK[*]}; load average $LOAD0"

declare -A RPS=() P99=() NOTE=()
seed=0
for w in $WORKLOADS; do
	for c in $CONNS; do
		seed=$((seed + 1)) # one seed per row: same requests for every server, fresh triplets per row
		for s in null greyd postgrey; do
			[ -n "${SOCK[$s]:-}" ] || continue
			out=$TMP/$w-$c-$s.json
			# shellcheck disable=SC2086 # FLAGS is a word list
			if ! timeout 660 "$BIN/greyd-bench" -unix "${SOCK[$s]}" -w "$w" -c "$c" -d "$DURATION" \
				-seed "$seed" -json $FLAGS >"$out" 2>"$out.err"; then
				log "$s $w c=$c failed: $(tail -1 "$out.err")"
			fi
			if [ -s "$out" ]; then
				RPS[$w/$c/$s]=$(jget rps "$out")
				P99[$w/$c/$s]=$(jget p99_us "$out")
				bad=$(($(jget errors "$out") + $(jget timeouts "$out")))
				[ "$bad" -eq 0 ] || NOTE[$w/$c/$s]="!"
			fi
			log "$w c=$c $s: ${RPS[$w/$c/$s]:-?} req/s, p99 ${P99[$w/$c/$s]:-?} us"
			if ! kill -0 "${PID[$s]}" 2>/dev/null; then
				log "$s died; its log ends:"
				tail -5 "$TMP/$s.log" >&2
				unset "SOCK[$s]"
			fi
		done
	done
done

# --- report ----------------------------------------------------------------------
echo
echo "$(date -u '+%F %T') UTC, $DURATION per cell, unix sockets, $(nproc) CPUs shared by client and servers"
echo "load average before $LOAD0, after $(cut -d' ' -f1-3 /proc/loadavg);" \
	"one 4 KiB O_DSYNC write in $(dirname "$TMP"): ${FSYNC_MS:-?} ms"
if [ -n "${PID[postgrey]:-}" ]; then
	echo "postgrey: $(/usr/sbin/postgrey --version 2>/dev/null | head -1), --delay=$DELAY (BerkeleyDB, fdatasync per request)"
fi
if [ -n "${PID[greyd]:-}" ]; then
	echo "greyd: $("$BIN/greyd" -version 2>/dev/null | head -1), delay ${DELAY}s, database$(grep -E '^\s*sync\s*=' "$TMP/greyd.effective.hcl" | tr -s ' ' | head -1)"
fi
awk -v order="$WORKLOADS" -v conns="$CONNS" '
function fmtus(x) {
	if (x == "") return "-"
	if (x < 1000) return sprintf("%.0fus", x)
	if (x < 1000000) return sprintf("%.2fms", x / 1000)
	return sprintf("%.2fs", x / 1000000)
}
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
{ rps[$1] = $2; p99[$1] = $3; note[$1] = $4 }
END {
	printf "%-12s %5s | %10s %8s | %10s %8s | %10s %8s | %10s %14s\n", "workload", "conns",
		"null r/s", "p99", "greyd r/s", "p99", "postgrey r/s", "p99", "greyd/null", "greyd/postgrey"
	n = split(order, ws, " "); m = split(conns, cs, " ")
	for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
		k = ws[i] "/" cs[j]
		line = sprintf("%-12s %5s", ws[i], cs[j])
		split("null greyd postgrey", ss, " ")
		for (s = 1; s <= 3; s++) {
			key = k "/" ss[s]
			r = (key in rps) ? sprintf("%.0f%s", rps[key], note[key]) : "n/a"
			line = line sprintf(" | %10s %8s", r, (key in p99) ? fmtus(p99[key]) : "-")
		}
		line = line sprintf(" | %10s %14s", ratio(rps[k "/greyd"], rps[k "/null"]), ratio(rps[k "/greyd"], rps[k "/postgrey"]))
		print line
	}
	print "(! = some requests failed or timed out; see BENCH_KEEP=1 logs)"
}' < <(for k in "${!RPS[@]}"; do printf '%s %s %s %s\n' "$k" "${RPS[$k]}" "${P99[$k]:-}" "${NOTE[$k]:-}"; done)
