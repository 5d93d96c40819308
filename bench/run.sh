#!/usr/bin/env bash
# bench/run.sh — throughput and latency of greyd against Postgrey and against
# the null policy server (greyd-bench -serve-null, the ceiling), over unix
# sockets in a temporary directory. greyd is measured twice: on its own
# buntdb file ("greyd") and on a Redis ("redis": a redis-server this script
# starts on a unix socket, without persistence, on the same CPUs), and in
# selective greylisting's mode score ("score": greyd on its own buntdb file
# with DNS signals answered by greyd-bench -serve-dns on 127.0.0.1). Prints
# one table, the servers' CPU per request, and the Redis commands the
# "redis" cells caused per request. Everything it starts is stopped on exit;
# nothing but that DNS server listens on TCP (loopback) and nothing leaves
# this machine.
#
# Usage: bench/run.sh            (as root on Debian if Postgrey or
#                                 redis-server is not installed)
#
# Environment (all optional):
#   BENCH_DURATION   measured time per cell (greyd-bench -d)     default 10s
#   BENCH_CONNS      connection counts                           default "1 8 64"
#   BENCH_WORKLOADS  workloads                                   default "mixed new repeat whitelisted"
#   BENCH_SERVERS    servers to measure                          default "null greyd score redis postgrey"
#                    (redis = greyd on Redis; "null greyd postgrey" leaves Redis out;
#                    score = greyd in mode score, see below)
#   BENCH_CLIENTS    new triplets come from this many clients    default 1000
#                    (greyd-bench -clients, for every server; 0 = a new client nearly
#                    every time, so score's DNS cache stays cold)
#   BENCH_SCORE_ALL=1  the DNSBL of "score" lists every client, with weight 4:
#                    every scored request is greylisted (the worst case: lookups,
#                    score and the triplet written); default: it lists
#                    198.19.0.0/16, weight 3
#   BENCH_ROUNDS     measure every cell this many times, the     default 1
#                    servers of a row one after the other; the table shows medians
#   BENCH_FLAGS      extra greyd-bench flags, e.g. "-pipeline 4" default none
#   GREYD            prebuilt greyd binary                       default: go build ./cmd/greyd
#   GREYD_SYNC       greyd's buntdb sync (never|everysecond|always) default: greyd's default
#                    ("always" is the durability Postgrey has: one fdatasync per request)
#   TMPDIR           where the sockets and databases live; TMPDIR=/dev/shm takes the
#                    disk (fsync latency) out of the picture
#   BENCH_KEEP=1     keep the temporary directory (logs, JSON results)
#
# Default: 4 workloads x 3 connection counts x 5 servers x 10 s ≈ 11 minutes.
#
# "score" is greyd with selective { mode = "score" }: rdns_missing 3,
# helo_invalid 1, spf_fail 2, spf_softfail 1, spf_pass -1 and a DNSBL
# (weight 3) that lists 198.19.0.0/16; SPF records allow 198.18.0.0/16 and
# 2001:db8::/32. Before measuring, "greyd" and "score" get the same
# BENCH_CLIENTS*4 new triplets (not measured), which fills score's DNS
# cache: the cells then measure a warm cache, and the script prints score's
# lookups and cache hits per cell (from greyd stats) to show it.
set -euo pipefail

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNS:-"1 8 64"}
WORKLOADS=${BENCH_WORKLOADS:-"mixed new repeat whitelisted"}
SERVERS=${BENCH_SERVERS:-"null greyd score redis postgrey"}
FLAGS=${BENCH_FLAGS:-}
CLIENTS=${BENCH_CLIENTS:-1000}
ROUNDS=${BENCH_ROUNDS:-1}
[ "$CLIENTS" -gt 0 ] && FLAGS="-clients $CLIENTS $FLAGS"
DELAY=300 # seconds; Postgrey's default, and greyd's "5m"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WL_CLIENTS=$ROOT/etc/greyd/whitelist_clients
WL_RECIPIENTS=$ROOT/etc/greyd/whitelist_recipients
TMP=$(mktemp -d "${TMPDIR:-/tmp}/greyd-bench.XXXXXX")
BIN=$TMP/bin
PIDS=()
REDIS_PID=                 # the redis-server behind the "redis" server
REDIS_DIR=$TMP/redis-server
REDIS_SOCK=$REDIS_DIR/redis.sock

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

# --- redis-server from Debian ---------------------------------------------------
install_redis() {
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		log "redis-server is not installed and this is not root on Debian: skipping greyd on Redis"
		return 1
	fi
	log "installing redis-server from Debian"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >"$TMP/apt-redis.log" 2>&1; then
		apt-get update -qq >>"$TMP/apt-redis.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >>"$TMP/apt-redis.log" 2>&1 ||
			{ log "apt-get install redis-server failed:"; tail -5 "$TMP/apt-redis.log" >&2; return 1; }
	fi
	# The package enables (and under systemd starts) its own server on
	# 127.0.0.1:6379. We run a private one on a unix socket: stop that one.
	systemctl disable --now redis-server >/dev/null 2>&1 || update-rc.d redis-server disable >/dev/null 2>&1 || true
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

# greyd_config NAME DATABASE_BLOCK [EXTRA [CONTROL_SOCKET]]: write
# $TMP/NAME.hcl, greyd's configuration as server NAME (policy socket
# $TMP/NAME.sock) with the blocks EXTRA, and check it.
greyd_config() {
	local name=$1 db=$2 extra=${3:-} ctl=${4:-}
	[ -x "$BIN/greyd" ] || return 1
	cat >"$TMP/$name.hcl" <<EOF
listen {
  unix         = "$TMP/$name.sock"
  socket_group = ""
}
$db
greylist { delay = "${DELAY}s" }
whitelist {
  clients    = ["$WL_CLIENTS"]
  recipients = ["$WL_RECIPIENTS"]
}
$extra
control { socket = "$ctl" } # several greyds here; and nothing under /run
EOF
	if ! "$BIN/greyd" check-config -config "$TMP/$name.hcl" >"$TMP/$name.effective.hcl" 2>"$TMP/$name.log"; then
		log "greyd rejects the bench configuration of $name:"
		cat "$TMP/$name.log" >&2
		return 1
	fi
}

start_greyd() {
	greyd_config greyd "database {
  path = \"$TMP/greyd.db\"
  ${GREYD_SYNC:+sync = \"$GREYD_SYNC\"}
}" || return 1
	"$BIN/greyd" -config "$TMP/greyd.hcl" 2>"$TMP/greyd.log" &
	started greyd
}

# The fake DNS server of "score": a zone for the bench's names and
# addresses (cmd/greyd-bench/workload.go), on a free loopback port.
DNS_ADDR=
start_dns() {
	cat >"$TMP/bench.zone" <<'EOF'
example             SOA 60
*.example      3600 TXT "v=spf1 ip4:198.18.0.0/16 ip6:2001:db8::/32 -all"
dnsbl.bench         SOA 60
*.19.198.dnsbl.bench 3600 A 127.0.0.2
EOF
	[ "${BENCH_SCORE_ALL:-0}" = 1 ] && echo '*.dnsbl.bench 3600 A 127.0.0.2' >>"$TMP/bench.zone"
	local port pid
	for _ in $(seq 10); do
		port=$((20000 + RANDOM % 30000))
		"$BIN/greyd-bench" -serve-dns -tcp "127.0.0.1:$port" -zone "$TMP/bench.zone" 2>"$TMP/dns.log" &
		pid=$!
		for _ in $(seq 50); do
			grep -q 'listening on' "$TMP/dns.log" && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if grep -q 'listening on' "$TMP/dns.log"; then
			PIDS+=("$pid")
			DNS_ADDR=127.0.0.1:$port
			return 0
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	log "the fake DNS server did not start:"
	tail -3 "$TMP/dns.log" >&2
	return 1
}

start_score() {
	start_dns || return 1
	greyd_config score "database {
  path = \"$TMP/score.db\"
  ${GREYD_SYNC:+sync = \"$GREYD_SYNC\"}
}" "selective {
  mode        = \"score\"
  greylist_at = 3
}
signals {
  rdns_missing = 3
  helo_invalid = 1
  spf_fail     = 2
  spf_softfail = 1
  spf_pass     = -1
}
dnsbl \"dnsbl.bench\" {
  weight = $([ "${BENCH_SCORE_ALL:-0}" = 1 ] && echo 4 || echo 3)
}
dns {
  servers = [\"$DNS_ADDR\"]
}" "$TMP/score.ctl" || return 1
	"$BIN/greyd" -config "$TMP/score.hcl" 2>"$TMP/score.log" &
	started score
}

# score_stats: "LOOKUPS HITS PASS GREYLIST" of score since it started.
score_stats() {
	{ "$BIN/greyd" stats -config "$TMP/score.hcl" -json 2>/dev/null | tr -d ' \n'; echo; } |
		sed -n 's/.*"class":"pass","count":\([0-9]*\)}.*"class":"greylist","count":\([0-9]*\)}.*"dns_lookups":\([0-9]*\),"dns_cache_hits":\([0-9]*\).*/\3 \4 \1 \2/p'
}

# cpu_ticks PID: the user and system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# redis_cli ARG...: redis-cli on the private redis-server, without the \r.
redis_cli() { redis-cli -s "$REDIS_SOCK" "$@" | tr -d '\r'; }

# greyd on Redis: a redis-server of its own on a unix socket in $TMP, without
# persistence, sharing the CPUs with everything else.
start_redis() {
	[ -x "$BIN/greyd" ] || return 1
	install_redis || return 1
	mkdir -p "$REDIS_DIR"
	[ ${#REDIS_SOCK} -le 107 ] || { log "$REDIS_SOCK: too long for a unix socket; set TMPDIR"; return 1; }
	# --pdeathsig: the server dies with this script even if it is SIGKILLed.
	setpriv --pdeathsig KILL redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
		--save "" --appendonly no --daemonize no --dir "$REDIS_DIR" \
		--logfile "$REDIS_DIR/redis.log" >"$REDIS_DIR/stdout.log" 2>&1 &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	for _ in $(seq 100); do
		[ "$(redis_cli PING 2>/dev/null)" = PONG ] && break
		if ! kill -0 "$REDIS_PID" 2>/dev/null; then
			log "redis-server exited during startup:"
			tail -5 "$REDIS_DIR/redis.log" "$REDIS_DIR/stdout.log" >&2
			return 1
		fi
		sleep 0.1
	done
	[ "$(redis_cli PING 2>/dev/null)" = PONG ] || { log "redis-server does not answer PING after 10 s"; return 1; }
	greyd_config redis "database {
  redis { url = \"unix://$REDIS_SOCK\" }
}" || return 1
	"$BIN/greyd" -config "$TMP/redis.hcl" 2>"$TMP/redis.log" &
	started redis || return 1
	# greyd answers (DUNNO) before it reaches Redis: wait for the connection.
	for _ in $(seq 100); do
		grep -q 'redis: connected to' "$TMP/redis.log" && return 0
		sleep 0.1
	done
	log "greyd did not connect to Redis within 10 s:"
	tail -5 "$TMP/redis.log" >&2
	unset "SOCK[redis]"
	return 1
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
	null | greyd | score | redis | postgrey) "start_$s" || log "$s: not measured" ;;
	*) log "unknown server $s (want null, greyd, score, redis, postgrey)"; exit 2 ;;
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
cells=$((cells * ROUNDS))
log "$cells cells of $DURATION each; servers: ${!SOCK[*]}; load average $LOAD0"

# The same new triplets for greyd and score before measuring: score's DNS
# cache learns the BENCH_CLIENTS clients (and their senders' SPF).
if [ "$CLIENTS" -gt 0 ]; then
	for s in greyd score; do
		[ -n "${SOCK[$s]:-}" ] || continue
		"$BIN/greyd-bench" -unix "${SOCK[$s]}" -w new -clients "$CLIENTS" -n $((CLIENTS * 4)) -c 8 \
			-seed 1000 -json >"$TMP/warmup-$s.json" 2>&1 || log "$s: warm-up failed: $(tail -1 "$TMP/warmup-$s.json")"
	done
	[ -n "${SOCK[score]:-}" ] && log "score after the warm-up (lookups, cache hits, pass, greylist): $(score_stats)"
fi

# Redis commands per request: INFO commandstats and greyd's decision lines
# (one per request answered) before and after all the cells.
decisions() { grep -c 'action=' "$TMP/redis.log" || true; }
if [ -n "${SOCK[redis]:-}" ]; then
	sleep 0.3 # greyd writes decision lines at most 100 ms late
	redis_cli INFO commandstats >"$REDIS_DIR/commandstats.before" || true
	DECISIONS0=$(decisions)
fi

declare -A RPS=() P99=() NOTE=() CPU=() DNSCELL=()
seed=0
for round in $(seq "$ROUNDS"); do
for w in $WORKLOADS; do
	for c in $CONNS; do
		seed=$((seed + 1)) # one seed per row: same requests for every server, fresh triplets per row
		for s in null greyd score redis postgrey; do
			[ -n "${SOCK[$s]:-}" ] || continue
			out=$TMP/$w-$c-$s-$round.json
			ticks0=$(cpu_ticks "${PID[$s]}")
			l0= h0=
			[ "$s" != score ] || read -r l0 h0 _ < <(score_stats) || true
			# shellcheck disable=SC2086 # FLAGS is a word list
			if ! timeout 660 "$BIN/greyd-bench" -unix "${SOCK[$s]}" -w "$w" -c "$c" -d "$DURATION" \
				-seed "$seed" -json $FLAGS >"$out" 2>"$out.err"; then
				log "$s $w c=$c failed: $(tail -1 "$out.err")"
			fi
			ticks1=$(cpu_ticks "${PID[$s]}")
			k=$w/$c/$s
			rps=? p99=? cpu=?
			if [ -s "$out" ]; then
				rps=$(jget rps "$out")
				p99=$(jget p99_us "$out")
				RPS[$k]="${RPS[$k]:-} $rps"
				P99[$k]="${P99[$k]:-} $p99"
				bad=$(($(jget errors "$out") + $(jget timeouts "$out")))
				[ "$bad" -eq 0 ] || NOTE[$k]="!"
				reqs=$(($(jget ok "$out") + $(jget primed "$out")))
				if [ "$reqs" -gt 0 ]; then
					cpu=$(((ticks1 - ticks0) * TICK_US / reqs))
					CPU[$k]="${CPU[$k]:-} $cpu"
				fi
			fi
			extra=
			if [ "$s" = score ] && [ -n "$l0" ]; then
				read -r l1 h1 pass grey < <(score_stats) || true
				if [ -n "${l1:-}" ]; then
					DNSCELL[$k]="${DNSCELL[$k]:-} $((h1 - h0))/$((l1 - l0))"
					extra=", DNS lookups $((l1 - l0)) of which cached $((h1 - h0)); classes so far: pass $pass, greylist $grey"
				fi
			fi
			log "round $round $w c=$c $s: $rps req/s, p99 $p99 us, CPU $cpu us/req$extra"
			if ! kill -0 "${PID[$s]}" 2>/dev/null; then
				log "$s died; its log ends:"
				tail -5 "$TMP/$s.log" >&2
				unset "SOCK[$s]"
			fi
		done
	done
done
done

# median LIST: the median of a space-separated list of numbers ("" if none).
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A RPSM=() P99M=() CPUM=()
for k in "${!RPS[@]}"; do
	RPSM[$k]=$(median "${RPS[$k]}")
	P99M[$k]=$(median "${P99[$k]:-}")
	CPUM[$k]=$(median "${CPU[$k]:-}")
done

if [ -n "${SOCK[redis]:-}" ]; then
	redis_cli INFO commandstats >"$REDIS_DIR/commandstats.after" || true
	sleep 0.3
	DECISIONS1=$(decisions)
fi

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
if [ -n "${PID[score]:-}" ]; then
	echo "score: the same greyd in selective mode score, DNS from greyd-bench -serve-dns on $DNS_ADDR; new triplets from $CLIENTS clients$([ "${BENCH_SCORE_ALL:-0}" = 1 ] && echo "; every client listed, every scored request greylisted")"
fi
[ "$ROUNDS" -gt 1 ] && echo "medians of $ROUNDS rounds"
if [ -n "${PID[redis]:-}" ]; then
	echo "redis: the same greyd on $(redis-server --version | cut -d' ' -f1-3) (unix socket, --save \"\" --appendonly no)"
fi
awk -v order="$WORKLOADS" -v conns="$CONNS" '
function fmtus(x) {
	if (x == "") return "-"
	if (x < 1000) return sprintf("%.0fus", x)
	if (x < 1000000) return sprintf("%.2fms", x / 1000)
	return sprintf("%.2fs", x / 1000000)
}
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
{ rps[$1] = $2; p99[$1] = $3; cpu[$1] = ($4 == "-") ? "" : $4; note[$1] = $5 }
END {
	printf "%-12s %5s | %10s %8s | %10s %8s | %10s %8s | %10s %8s | %12s %8s | %10s %14s | %10s %14s | %11s\n", "workload", "conns",
		"null r/s", "p99", "greyd r/s", "p99", "score r/s", "p99", "redis r/s", "p99", "postgrey r/s", "p99",
		"greyd/null", "greyd/postgrey", "redis/null", "redis/postgrey", "score/greyd"
	n = split(order, ws, " "); m = split(conns, cs, " ")
	ns = split("null greyd score redis postgrey", ss, " ")
	for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
		k = ws[i] "/" cs[j]
		line = sprintf("%-12s %5s", ws[i], cs[j])
		for (s = 1; s <= ns; s++) {
			key = k "/" ss[s]
			r = (key in rps) ? sprintf("%.0f%s", rps[key], note[key]) : "n/a"
			line = line sprintf(" | %" (s == ns ? 12 : 10) "s %8s", r, (key in p99) ? fmtus(p99[key]) : "-")
		}
		line = line sprintf(" | %10s %14s", ratio(rps[k "/greyd"], rps[k "/null"]), ratio(rps[k "/greyd"], rps[k "/postgrey"]))
		line = line sprintf(" | %10s %14s", ratio(rps[k "/redis"], rps[k "/null"]), ratio(rps[k "/redis"], rps[k "/postgrey"]))
		line = line sprintf(" | %11s", ratio(rps[k "/score"], rps[k "/greyd"]))
		print line
	}
	print "(! = some requests failed or timed out; see BENCH_KEEP=1 logs)"
	print ""
	print "server CPU per request answered (user+system of the server process, us; redis: greyd only):"
	printf "%-12s %5s", "workload", "conns"
	for (s = 1; s <= ns; s++) printf " | %8s", ss[s]
	printf " | %11s\n", "score/greyd"
	for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
		k = ws[i] "/" cs[j]
		printf "%-12s %5s", ws[i], cs[j]
		for (s = 1; s <= ns; s++) printf " | %8s", (cpu[k "/" ss[s]] != "") ? cpu[k "/" ss[s]] : "-"
		printf " | %11s\n", ratio(cpu[k "/score"], cpu[k "/greyd"])
	}
}' < <(for k in "${!RPSM[@]}"; do printf '%s %s %s %s %s\n' "$k" "${RPSM[$k]}" "${P99M[$k]:-}" "${CPUM[$k]:--}" "${NOTE[$k]:-}"; done)

if [ -n "${PID[score]:-}" ]; then
	echo
	echo "score's DNS per cell (greyd stats): cache hits/lookups, per round"
	for w in $WORKLOADS; do for c in $CONNS; do
		printf '  %-12s %5s %s\n' "$w" "$c" "${DNSCELL[$w/$c/score]:- -}"
	done; done
	echo "score's classes since start (greyd stats): $(score_stats | awk '{ printf "pass %d, greylist %d; DNS lookups %d, cache hits %d", $3, $4, $1, $2 }')"
fi

# Redis commands of the "redis" cells: INFO commandstats after minus before.
# EVALSHA and EVAL are what greyd sends (EVAL after a NOSCRIPT, once per
# connection to a fresh Redis); GET, SET, TIME... run inside the script.
if [ -n "${DECISIONS1:-}" ]; then
	wl=$(sed -n '/action=/p' "$TMP/redis.log" | tail -n "+$((DECISIONS0 + 1))" |
		grep -cE 'action=pass, reason=(client|recipient) whitelist' || true)
	failed=$(grep -c 'store failed' "$TMP/redis.log" || true)
	echo
	echo "Redis INFO commandstats over the redis cells (after - before):"
	awk -F'[:,=]' -v answered=$((DECISIONS1 - DECISIONS0)) -v wl="$wl" -v failed="$failed" '
	/^cmdstat_/ {
		name = substr($1, 9)
		for (i = 2; i < NF; i += 2) f[$i] = $(i + 1)
		if (FILENAME ~ /before$/) { c0[name] = f["calls"]; u0[name] = f["usec"]; x0[name] = f["failed_calls"] }
		else { c1[name] = f["calls"]; u1[name] = f["usec"]; x1[name] = f["failed_calls"]; names[name] = 1 }
	}
	END {
		label["evalsha"] = "  (greyd: one per request)"
		label["eval"] = "  (greyd: after NOSCRIPT, once per connection)"
		label["ping"] = label["hello"] = label["select"] = label["client|setinfo"] = "  (greyd: connection upkeep)"
		label["info"] = "  (this script)"
		n = split("evalsha eval", order, " ")
		for (nm in names) if (nm != "evalsha" && nm != "eval") order[++n] = nm
		for (i = 1; i <= n; i++) {
			nm = order[i]
			d = c1[nm] - c0[nm]
			if (d <= 0) continue
			printf "  %-8s calls=%d usec_per_call=%.2f failed_calls=%d%s\n", nm, d, (u1[nm] - u0[nm]) / d, x1[nm] - x0[nm],
				label[nm] != "" ? label[nm] : "  (run by the script)"
		}
		calls = (c1["evalsha"] - c0["evalsha"]) + (c1["eval"] - c0["eval"])
		store = answered - wl
		printf "requests answered by greyd on Redis: %d (%d whitelisted, which need no Redis; %d through the store)\n", answered, wl, store
		printf "Redis calls (EVALSHA + EVAL): %d = %.3f per request answered, %s per request through the store\n",
			calls, answered ? calls / answered : 0, store ? sprintf("%.3f", calls / store) : "-"
		if (failed) printf "(%d \"store failed\" lines in greyd'"'"'s log: failed requests are not in these counts)\n", failed
	}' "$REDIS_DIR/commandstats.before" "$REDIS_DIR/commandstats.after"
fi
