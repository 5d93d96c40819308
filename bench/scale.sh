#!/usr/bin/env bash
# bench/scale.sh — greyd with a big database, measured through the protocol:
# mixed-workload throughput on an empty database, then after filling it with
# SCALE_TRIPLETS new triplets, then again after a restart; the restart time
# (until the first answer; after a clean stop and after kill -9), resident
# memory and the database file size.
# Over a unix socket in a temporary directory; everything it starts is
# stopped on exit.
#
# Usage: bench/scale.sh
#
# Environment (all optional):
#   SCALE_TRIPLETS   triplets to fill in                         default 1000000
#   BENCH_DURATION   measured time per throughput cell           default 8s
#   BENCH_CONNS      connection counts                           default "1 8 64"
#   TMPDIR           where the socket and database live
#   BENCH_KEEP=1     keep the temporary directory
#   SCALE_OLD        a greyd binary to compare with, or
#   SCALE_OLD_REV    a git revision to build it from (e.g. main)
#   SCALE_ROUNDS     rounds of the comparison, old and new alternately  default 2
#
# With SCALE_OLD or SCALE_OLD_REV, the filled database is then restarted
# SCALE_ROUNDS times by each binary, old and new alternately, each time
# from a copy of the file as the fill left it (the load of every round
# writes new triplets, which would otherwise grow the file from round to
# round and load the later binary with more), cleanly stopped: the first
# answer after a clean stop, resident memory after 10 s of mixed load at 64
# connections, mixed throughput, p99 and the server's CPU time per request
# (utime+stime from /proc, what getrusage reports) at each connection count,
# and the first answer after kill -9. The null server (greyd-bench
# -serve-null) is measured in each round too: its CPU per request is the
# floor that the machine's load moves along with greyd's.
set -euo pipefail

N=${SCALE_TRIPLETS:-1000000}
DURATION=${BENCH_DURATION:-8s}
CONNS=${BENCH_CONNS:-"1 8 64"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/greyd-scale.XXXXXX")
PID=

log() { printf 'scale: %s\n' "$*" >&2; }

stop() {
	[ -n "$PID" ] || return 0
	kill -TERM "$PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=
}
cleanup() {
	stop
	if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && go build -o "$TMP/greyd" ./cmd/greyd && go build -o "$TMP/greyd-bench" ./cmd/greyd-bench)
OLD=${SCALE_OLD:-}
if [ -z "$OLD" ] && [ -n "${SCALE_OLD_REV:-}" ]; then
	mkdir "$TMP/old-src"
	(cd "$ROOT" && git archive "$SCALE_OLD_REV" | tar -x -C "$TMP/old-src")
	(cd "$TMP/old-src" && go build -o "$TMP/greyd-old" ./cmd/greyd)
	OLD=$TMP/greyd-old
fi
BIN=$TMP/greyd
# The metrics listener: memory's breakdown next to RSS.
MPORT=${SCALE_METRICS_PORT:-$((20000 + RANDOM % 20000))}
cat >"$TMP/greyd.hcl" <<EOF
listen {
  unix         = "$TMP/greyd.sock"
  socket_group = ""
}
database { path = "$TMP/greyd.db" }
metrics { listen = "127.0.0.1:$MPORT" }
greylist { delay = "300s" }
whitelist {
  clients    = ["$ROOT/etc/greyd/whitelist_clients"]
  recipients = ["$ROOT/etc/greyd/whitelist_recipients"]
}
EOF

# start: run greyd and set STARTED to the seconds until it answers a request,
# FIRST to that answer's action. The probe connects as soon as the socket
# exists and sends a never-seen triplet: an answer needs the store, which
# must read it and write it (greylisted), not only the whitelists.
probe=0
start() {
	local t0 t1
	probe=$((probe + 1))
	t0=$(date +%s.%N)
	"$BIN" -config "$TMP/greyd.hcl" >/dev/null 2>>"$TMP/greyd.log" &
	PID=$!
	for _ in $(seq 600); do
		kill -0 "$PID" 2>/dev/null || { log "greyd exited:"; tail -5 "$TMP/greyd.log" >&2; exit 1; }
		if [ -S "$TMP/greyd.sock" ] &&
			"$TMP/greyd-bench" -unix "$TMP/greyd.sock" -n 1 -c 1 -w new -seed "$((90000 + probe))" -timeout 30s -json >"$TMP/probe.json" 2>&1 &&
			grep -q '"ok":1' "$TMP/probe.json"; then
			t1=$(date +%s.%N)
			FIRST=$(sed -n 's/.*"actions":{"\([^"]*\)".*/\1/p' "$TMP/probe.json")
			STARTED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
			return 0
		fi
		sleep 0.05
	done
	log "greyd did not answer within 30 s"
	exit 1
}

rss() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"; }
hwm() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"; }
# mem: where the resident memory goes, in MB: the Go runtime's memory
# classes (a binary without them shows "-"), the GC goal and percentage,
# and the kernel's anonymous and file-backed resident pages.
mem() {
	curl -sf "http://127.0.0.1:$MPORT/metrics" >"$TMP/metrics.txt" 2>/dev/null || : >"$TMP/metrics.txt"
	awk -v st="/proc/$PID/status" '
		function mb(n) { return (n in v) ? sprintf("%.0f", v[n] / 1048576) : "-" }
		!/^#/ { v[$1] = $2 }
		END {
			meta = "-"
			for (k in v) if (k ~ /^go_memory_classes_metadata_/) meta += v[k]
			if (meta != "-") meta = sprintf("%.0f", meta / 1048576)
			while ((getline l < st) > 0) { split(l, f, /[: \t]+/); if (f[1] ~ /^Rss(Anon|File)$/) r[f[1]] = sprintf("%.0f", f[2] / 1024) }
			printf "%s triplets; objects %s, unused %s, free %s, released %s, stacks %s+%s, metadata %s, other %s MB; GC goal %s MB at GOGC %s, %s GCs; RssAnon %s, RssFile %s MB",
				v["greyd_store_entries{kind=\"triplet\"}"], mb("go_memory_classes_heap_objects_bytes"), mb("go_memory_classes_heap_unused_bytes"),
				mb("go_memory_classes_heap_free_bytes"), mb("go_memory_classes_heap_released_bytes"),
				mb("go_memory_classes_heap_stacks_bytes"), mb("go_memory_classes_os_stacks_bytes"), meta,
				mb("go_memory_classes_other_bytes"), mb("go_memstats_next_gc_bytes"),
				(("go_gc_gogc_percent" in v) ? v["go_gc_gogc_percent"] : "-"),
				(("go_gc_duration_seconds_count" in v) ? v["go_gc_duration_seconds_count"] : "-"), r["RssAnon"], r["RssFile"]
		}' "$TMP/metrics.txt"
}
jget() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
# cpu PID: the process's user+system CPU time in microseconds.
TCK=$(getconf CLK_TCK)
cpu() { awk -v t="$TCK" '{ printf "%.0f", ($14 + $15) * 1e6 / t }' "/proc/$1/stat"; }

declare -A RPS=() P99=()
seed=100
# measure PHASE: mixed throughput at each connection count.
measure() {
	local c out
	for c in $CONNS; do
		seed=$((seed + 1))
		out=$TMP/$1-$c.json
		"$TMP/greyd-bench" -unix "$TMP/greyd.sock" -w mixed -c "$c" -d "$DURATION" -seed "$seed" -json >"$out" 2>"$out.err" ||
			log "$1 c=$c failed: $(tail -1 "$out.err")"
		RPS[$1/$c]=$(jget rps "$out")
		P99[$1/$c]=$(jget p99_us "$out")
		log "$1 c=$c: ${RPS[$1/$c]} req/s, p99 ${P99[$1/$c]} us"
	done
}

log "empty database"
start
start0=$STARTED first0=$FIRST
sleep 2 # greyd returns the loading garbage to the system just after start-up
rss0=$(rss)
measure empty

log "filling in $N new triplets (workload new, 8 connections)"
f0=$(date +%s)
"$TMP/greyd-bench" -unix "$TMP/greyd.sock" -w new -c 8 -n "$N" -seed 7 -json >"$TMP/fill.json" 2>"$TMP/fill.err" ||
	{ log "fill failed: $(tail -1 "$TMP/fill.err")"; exit 1; }
f1=$(date +%s)
fill_rps=$(jget rps "$TMP/fill.json")
measure filled
rss_filled=$(rss)
hwm_filled=$(hwm)

log "restarting greyd with the filled database"
stop
db_mb=$(du -m "$TMP/greyd.db" | cut -f1)
# The comparison's starting point (with its clean-shutdown mark).
mkdir "$TMP/filled"
cp "$TMP/greyd.db" "$TMP/greyd.db.clean" "$TMP/filled/"
start
start1=$STARTED first1=$FIRST
sleep 2
rss1=$(rss)
measure restarted
rss2=$(rss)
hwm2=$(hwm)
mem2=$(mem)

log "killing greyd (SIGKILL) and starting it on the same database"
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
PID=
start
start2=$STARTED first2=$FIRST
stop

echo
echo "$(date -u '+%F %T') UTC, $(nproc) CPUs shared by client and server, $DURATION per cell, mixed workload"
echo "fill: $N new triplets in $((f1 - f0)) s (${fill_rps%.*} req/s); database file $db_mb MB"
echo "start-up until the first answer: empty ${start0} s, with the filled database ${start1} s, after kill -9 ${start2} s"
echo "first answers (a never-seen triplet sent as soon as the socket exists): ${first0}, ${first1}, ${first2}"
echo "resident memory: empty ${rss0} MB; filled ${rss_filled} MB (peak ${hwm_filled}); after restart ${rss1} MB, after load ${rss2} MB (peak ${hwm2})"
echo "after load: $mem2"
printf '%5s | %12s %9s | %12s %9s %7s | %12s %9s %7s\n' conns "empty r/s" p99 "filled r/s" p99 ratio "restart r/s" p99 ratio
for c in $CONNS; do
	awk -v c="$c" -v e="${RPS[empty/$c]:-0}" -v ep="${P99[empty/$c]:-0}" -v f="${RPS[filled/$c]:-0}" -v fp="${P99[filled/$c]:-0}" \
		-v r="${RPS[restarted/$c]:-0}" -v rp="${P99[restarted/$c]:-0}" 'BEGIN {
		printf "%5s | %12.0f %7.0fus | %12.0f %7.0fus %7.2f | %12.0f %7.0fus %7.2f\n", c, e, ep, f, fp, (e ? f / e : 0), r, rp, (e ? r / e : 0)
	}'
done

[ -n "$OLD" ] || exit 0

# gccpu: the garbage collector's CPU time so far in seconds, from the
# metrics endpoint (0 from a binary or server without it).
gccpu() {
	curl -sf "http://127.0.0.1:$MPORT/metrics" 2>/dev/null |
		awk '/^go_cpu_classes_gc_total_cpu_seconds_total / { g = $2 } END { print g + 0 }'
}

# One cell against the server PID on SOCK: sets R (req/s), P (p99 us), U
# (server CPU us per request), G (of which the garbage collector's, for
# greyd).
cell() {
	local sock=$1 pid=$2 c=$3 out=$TMP/cmp.json c0 c1 n g0=0 g1=0
	seed=$((seed + 1))
	[ "$pid" != "${PID:-}" ] || g0=$(gccpu)
	c0=$(cpu "$pid")
	"$TMP/greyd-bench" -unix "$sock" -w mixed -c "$c" -d "$DURATION" -seed "$seed" -json >"$out" 2>"$out.err" ||
		log "cell c=$c failed: $(tail -1 "$out.err")"
	c1=$(cpu "$pid")
	[ "$pid" != "${PID:-}" ] || g1=$(gccpu)
	n=$(jget ok "$out")
	R=$(jget rps "$out") P=$(jget p99_us "$out")
	U=$(awk -v a="$c0" -v b="$c1" -v n="${n:-0}" 'BEGIN { printf "%.1f", n ? (b - a) / n : 0 }')
	G=$(awk -v a="$g0" -v b="$g1" -v n="${n:-0}" 'BEGIN { printf "%.1f", n ? (b - a) * 1e6 / n : 0 }')
}

declare -a ROWS=()
for round in $(seq "${SCALE_ROUNDS:-2}"); do
	for which in old new; do
		if [ $which = old ]; then BIN=$OLD; else BIN=$TMP/greyd; fi
		log "round $round: $which binary, restart after a clean stop"
		rm -f "$TMP/greyd.db.boot"
		cp "$TMP/filled/greyd.db" "$TMP/filled/greyd.db.clean" "$TMP/"
		start
		up=$STARTED
		"$TMP/greyd-bench" -unix "$TMP/greyd.sock" -w mixed -c 64 -d 10s -seed "$((500 + round))" -json >"$TMP/warm.json" 2>&1 || true
		rss10=$(rss) hwm10=$(hwm)
		line="$which $round | up ${up} s | RSS ${rss10} MB (peak ${hwm10}) after 10 s at 64 conns: $(mem)"
		for c in $CONNS; do
			cell "$TMP/greyd.sock" "$PID" "$c"
			line="$line | c=$c ${R%.*} r/s p99 ${P%.*} us ${U} cpu-us/req (gc ${G})"
		done
		kill -KILL "$PID"
		wait "$PID" 2>/dev/null || true
		PID=
		start
		line="$line | after kill -9 up ${STARTED} s"
		# A clean stop for the next round: after the background load.
		for _ in $(seq 600); do [ -e "$TMP/greyd.db.boot" ] || break; sleep 0.1; done
		stop
		ROWS+=("$line (load $(cut -d' ' -f1 /proc/loadavg))")
		log "$line"
	done
	"$TMP/greyd-bench" -serve-null -unix "$TMP/null.sock" 2>/dev/null &
	NPID=$!
	for _ in $(seq 100); do [ -S "$TMP/null.sock" ] && break; sleep 0.05; done
	line="null $round"
	for c in $CONNS; do
		cell "$TMP/null.sock" "$NPID" "$c"
		line="$line | c=$c ${R%.*} r/s p99 ${P%.*} us ${U} cpu-us/req"
	done
	kill -TERM "$NPID"; wait "$NPID" 2>/dev/null || true
	rm -f "$TMP/null.sock"
	ROWS+=("$line (load $(cut -d' ' -f1 /proc/loadavg))")
	log "$line"
done
echo
echo "old ($OLD) and new, alternately, on the filled database:"
printf '%s\n' "${ROWS[@]}"
