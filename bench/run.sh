#!/usr/bin/env bash
# bench/run.sh: `make bench`. Compares direct MariaDB, HAProxy (TCP, nbthread 1) and
# Switchyard on this machine with sysbench, following the method in bench/README.md:
# targets interleaved, repeated, medians reported, both CPU placements, proxy CPU per
# query, p95/p99, RSS per idle session.
# Everything runs on 127.0.0.1 and is torn down on exit. See bench/README.md.
#
# Environment:
#   BENCH_DURATION=7        seconds per sysbench run
#   BENCH_REPEATS=3         runs per (placement, workload, threads, target); median reported
#   BENCH_QUICK=1           smoke run: 2 s x 1 repeat, point_select only, 1000 idle sessions
#   BENCH_WORKLOADS="point_select read_only range1000"   (also: short_range select1)
#   BENCH_THREADS="1 8 64"
#   BENCH_PLACEMENTS="unpinned pinned"
#   BENCH_TARGETS="direct haproxy switchyard"   also: switchyard-loops, switchyard-b, relay-epoll relay-coro relay-go,
#                           bench/relay's protocol-blind Go relays (an epoll event loop,
#                           HAProxy's design; blocking-style coroutines driven by that loop; a
#                           goroutine per direction over Go's netpoller), for what a Go process
#                           reaches before any MySQL work; relay-epoll-block and
#                           relay-coro-block block the loop's thread in epoll_wait
#   BENCH_IDLE_CONNS=5000   idle sessions for the RSS test (0 skips it)
#   BENCH_IDLE_SETTLE=25    the RSS test samples 3 s after the last session opened, and again
#                           after the sessions idled this many seconds (0: once only)
#   BENCH_PROXY_BIN=path    use this Switchyard binary instead of building ./cmd/proxy
#   BENCH_EVENT_LOOPS=auto  proxy.event-loops of target switchyard ("auto", the proxy's default, or a
#                           number; 0: a goroutine per session)
#   BENCH_LOOPS=$(nproc)    proxy.event-loops of target switchyard-loops (the same binary with
#                           another setting, 0 for a goroutine per session; name it in BENCH_TARGETS)
#   BENCH_PROXY_BIN_B=path  the binary of target switchyard-b: a second build with the same
#                           config, to compare two builds in one run (an A/B of a change)
#   BENCH_PROXY_ARGS='--config {config}'   Switchyard arguments; {config} is replaced
#   BENCH_QUIET_WAIT=0      before each run wait up to this many seconds for other processes
#                           on the machine to use < BENCH_QUIET_PCT (10)% of it
#   BENCH_DIGESTS=1         digest cost: point_select at BENCH_DIGEST_THREADS (64) through two
#                           Switchyard processes that differ only in [digests] enabled,
#                           interleaved, BENCH_REPEATS pairs (unpinned); 0 skips it
#   BENCH_TOPOLOGY=1        also run bench/topology (registration latency through etcd, idle
#                           cost of 100 clusters x 10 backends); 0 skips it
#   BENCH_TOPOLOGY_ARGS=""  its flags (quick: "-rounds 10 -clusters 20 -idle 5s"); see
#                           `go run ./bench/topology -h`
#   BENCH_SHORTCONN=1       short connections: bench/shortconn (connect, SELECT 1, quit) against
#                           each target, interleaved, BENCH_REPEATS rounds; 0 skips it
#   BENCH_SHORTCONN_SECONDS=10 (quick: 3)  seconds per run
#   BENCH_SHORTCONN_RATE=200  new connections per second; BENCH_SHORTCONN_THREADS=8 client threads
#   BENCH_MANYIDLE=1        many idle sessions in one Switchyard process (bench/idlemany, with
#                           mysqldouble backends): memory, goroutines and idle CPU; 0 skips it
#   BENCH_MANYIDLE_N=""     how many (default: as many as the file descriptor limit allows,
#                           two per session in the proxy and in the bench, at most 100000)
#   BENCH_ONLY=""           only these sections (any of: throughput digests idle shortconn
#                           manyidle topology); empty runs all of them
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
OUT="$BENCH_DIR/.out"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
	: "${BENCH_DURATION:=2}" "${BENCH_REPEATS:=1}" "${BENCH_WORKLOADS:=point_select}" "${BENCH_IDLE_CONNS:=1000}"
	: "${BENCH_TOPOLOGY_ARGS=-rounds 10 -clusters 20 -idle 5s}" "${BENCH_SHORTCONN_SECONDS:=3}"
	: "${BENCH_MANYIDLE_N:=2000}"
fi
DURATION=${BENCH_DURATION:-7}
REPEATS=${BENCH_REPEATS:-3}
WORKLOADS=${BENCH_WORKLOADS:-point_select read_only range1000}
THREADS=${BENCH_THREADS:-1 8 64}
PLACEMENTS=${BENCH_PLACEMENTS:-unpinned pinned}
TARGETS=${BENCH_TARGETS:-direct haproxy switchyard}
IDLE_N=${BENCH_IDLE_CONNS:-5000}
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-25}
TOPOLOGY=${BENCH_TOPOLOGY:-1}
DIGESTS=${BENCH_DIGESTS:-1}
DIGEST_THREADS=${BENCH_DIGEST_THREADS:-64}
TOPOLOGY_ARGS=${BENCH_TOPOLOGY_ARGS:-}
SHORTCONN=${BENCH_SHORTCONN:-1}
SC_SECONDS=${BENCH_SHORTCONN_SECONDS:-10}
SC_RATE=${BENCH_SHORTCONN_RATE:-200}
SC_THREADS=${BENCH_SHORTCONN_THREADS:-8}
MANYIDLE=${BENCH_MANYIDLE:-1}
MANYIDLE_N=${BENCH_MANYIDLE_N:-}
ONLY=${BENCH_ONLY:-}

LOG_TAG=bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

for sec in $ONLY; do
	case $sec in throughput | digests | idle | shortconn | manyidle | topology) ;; *) die "BENCH_ONLY: unknown section $sec" ;; esac
done
# section NAME: BENCH_ONLY is empty or names NAME.
section() { [[ -z "$ONLY" || " $ONLY " == *" $1 "* ]]; }
section digests || DIGESTS=0
section idle || IDLE_N=0
section shortconn || SHORTCONN=0
section topology || TOPOLOGY=0
section manyidle || MANYIDLE=0
[[ "$SC_RATE" =~ ^[1-9][0-9]*$ && "$SC_THREADS" =~ ^[1-9][0-9]*$ && "$SC_SECONDS" =~ ^[1-9][0-9]*$ ]] ||
	die "BENCH_SHORTCONN_RATE, _THREADS and _SECONDS must be positive integers"

need=()
command -v haproxy >/dev/null || need+=(haproxy)
ensure_tools "${need[@]}"
# The topology scale test runs etcd as a separate process when the binary exists, so that
# etcd's CPU is not counted as the proxy's; without it, it falls back to an embedded etcd.
if [[ "$TOPOLOGY" == 1 ]] && ! command -v etcd >/dev/null; then
	log "installing etcd-server (for the topology benchmark)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null 2>&1 ||
		log "etcd-server not installable: the topology scale test will use an embedded etcd"
fi

bench_tmp switchyard-bench
rm -rf "$OUT/runs" && mkdir -p "$OUT/runs"
START_TS=$(date +%s)

# ---------------------------------------------------------------- helpers (Go)
log "building helpers"
(cd "$ROOT" && go build -o "$OUT/idleconns" ./bench/idleconns && go build -o "$OUT/report" ./bench/report &&
	go build -o "$OUT/shortconn" ./bench/shortconn && go build -o "$OUT/relay" ./bench/relay)

# ---------------------------------------------------------------- MariaDB
start_mariadb mariadb 6000 256M
DB_PORT=$MDB_PORT DB_PID=$MDB_PID

# ---------------------------------------------------------------- HAProxy
free_port HA_PORT
# HAProxy needs 2 fds per proxied session and (strict-limits, the default since 2.3) refuses
# to start when maxconn needs more fds than the hard limit allows: "maxconn 20000" dies
# with "Cannot raise FD limit to 40014, limit is 20000". Use the most the limit allows.
HA_MAXCONN=$(((FD_HARD - 100) / 2))
((HA_MAXCONN > 20000)) && HA_MAXCONN=20000
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HA_MAXCONN

defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h

frontend mysql
    bind 127.0.0.1:$HA_PORT
    maxconn $HA_MAXCONN
    default_backend mariadb

backend mariadb
    server db1 127.0.0.1:$DB_PORT maxconn $HA_MAXCONN
EOF
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HA_PID=$!
register "$HA_PID" haproxy

# ---------------------------------------------------------------- Go relays (optional)
# bench/relay in front of MariaDB, one per target named relay-epoll, relay-coro or relay-go
# (its netpoll mode); a "-block" suffix adds -block-wait (the loop blocks its thread in
# epoll_wait instead of parking in Go's netpoller).
declare -A RELAY_PID=() RELAY_PORT=()
for tg in $TARGETS; do
	[[ "$tg" == relay-* ]] || continue
	mode=${tg#relay-} rargs=()
	[[ "$mode" == *-block ]] && mode=${mode%-block} rargs=(-block-wait)
	[[ "$mode" == go ]] && mode=netpoll
	free_port rport
	"$OUT/relay" -mode "$mode" "${rargs[@]}" -listen "127.0.0.1:$rport" -backend "127.0.0.1:$DB_PORT" \
		>"$OUT/$tg.log" 2>&1 </dev/null &
	RELAY_PID[$tg]=$!
	RELAY_PORT[$tg]=$rport
	register "$!" relay
done

# ---------------------------------------------------------------- Switchyard
free_port SW_PORT
SW_PID=""
SW_STATUS="not built"
cat >"$TMP/switchyard.toml" <<EOF
[proxy]
addr = "127.0.0.1:$SW_PORT"
max-connections = 19000
event-loops = $(toml_loops "${BENCH_EVENT_LOOPS:-auto}")

[log]
level = "warn"

[[cluster]]
name = "bench"
instances = ["127.0.0.1:$DB_PORT"]
EOF
# The same proxy with the digest tables off, for the digest-cost comparison.
free_port SWN_PORT
SWN_PID=""
sed -e "s/127.0.0.1:$SW_PORT/127.0.0.1:$SWN_PORT/" "$TMP/switchyard.toml" >"$TMP/switchyard-nodigest.toml"
# No API: the first proxy has the default API address.
printf '\n[digests]\nenabled = false\n\n[api]\naddr = ""\n' >>"$TMP/switchyard-nodigest.toml"
if [[ " $TARGETS " == *" switchyard "* ]]; then
	if ! build_proxy; then
		log "Switchyard NOT BUILT (see bench/.out/proxy-build.log):"
		head -n 5 "$OUT/proxy-build.log" | sed 's/^/    /'
	else
		start_proxy SW_PID "$TMP/switchyard.toml" "$OUT/switchyard.log"
		SW_STATUS="failed to start"
		if [[ "$DIGESTS" == 1 ]]; then
			start_proxy SWN_PID "$TMP/switchyard-nodigest.toml" "$OUT/switchyard-nodigest.log"
		fi
	fi
else
	SW_STATUS="skipped"
fi
# Target switchyard-loops: the same proxy with another proxy.event-loops (BENCH_LOOPS,
# default one per CPU; 0: a goroutine per session), beside the first.
SWL_PID="" SWL_PORT=""
if [[ " $TARGETS " == *" switchyard-loops "* ]]; then
	free_port SWL_PORT
	sed -e "s/127.0.0.1:$SW_PORT/127.0.0.1:$SWL_PORT/" -e "s/^event-loops = .*/event-loops = $(toml_loops "${BENCH_LOOPS:-$(nproc)}")/" \
		"$TMP/switchyard.toml" >"$TMP/switchyard-loops.toml"
	printf '\n[api]\naddr = ""\n' >>"$TMP/switchyard-loops.toml"
	if build_proxy; then
		start_proxy SWL_PID "$TMP/switchyard-loops.toml" "$OUT/switchyard-loops.log"
	else
		log "Switchyard NOT BUILT (see bench/.out/proxy-build.log): no switchyard-loops"
	fi
fi

# Target switchyard-b: another build (BENCH_PROXY_BIN_B) with the same config, beside the first.
SWB_PID="" SWB_PORT=""
if [[ " $TARGETS " == *" switchyard-b "* ]]; then
	[[ -x "${BENCH_PROXY_BIN_B:-}" ]] || die "target switchyard-b needs BENCH_PROXY_BIN_B, an executable"
	free_port SWB_PORT
	sed -e "s/127.0.0.1:$SW_PORT/127.0.0.1:$SWB_PORT/" "$TMP/switchyard.toml" >"$TMP/switchyard-b.toml"
	printf '\n[api]\naddr = ""\n' >>"$TMP/switchyard-b.toml"
	start_proxy SWB_PID "$TMP/switchyard-b.toml" "$OUT/switchyard-b.log" "$BENCH_PROXY_BIN_B"
fi

wait_sql "$HA_PORT" "$HA_PID" || { cat "$TMP/haproxy.log"; die "HAProxy did not come up"; }
log "HAProxy pid $HA_PID on 127.0.0.1:$HA_PORT"
if [[ -n "$SW_PID" ]]; then
	if wait_sql "$SW_PORT" "$SW_PID"; then
		SW_STATUS="ok"
		log "Switchyard pid $SW_PID on 127.0.0.1:$SW_PORT"
	else
		log "Switchyard FAILED TO START (see bench/.out/switchyard.log):"
		tail -n 5 "$OUT/switchyard.log" | sed 's/^/    /'
		ours "$SW_PID" "$(basename "$SW_BIN" | cut -c1-15)" && kill -TERM "$SW_PID" 2>/dev/null
		wait "$SW_PID" 2>/dev/null || true
		unregister "$SW_PID"
		SW_PID=""
	fi
fi
if [[ -n "$SWN_PID" ]] && ! wait_sql "$SWN_PORT" "$SWN_PID"; then
	log "Switchyard without digests FAILED TO START (see bench/.out/switchyard-nodigest.log)"
	SWN_PID=""
fi

if [[ -n "$SWB_PID" ]]; then
	wait_sql "$SWB_PORT" "$SWB_PID" || { tail -n 5 "$OUT/switchyard-b.log"; die "switchyard-b did not come up"; }
	log "switchyard-b ($BENCH_PROXY_BIN_B) pid $SWB_PID on 127.0.0.1:$SWB_PORT"
fi
if [[ -n "$SWL_PID" ]]; then
	wait_sql "$SWL_PORT" "$SWL_PID" || { tail -n 5 "$OUT/switchyard-loops.log"; die "switchyard-loops did not come up"; }
	log "switchyard-loops pid $SWL_PID on 127.0.0.1:$SWL_PORT"
fi
for tg in "${!RELAY_PID[@]}"; do
	wait_sql "${RELAY_PORT[$tg]}" "${RELAY_PID[$tg]}" || { cat "$OUT/$tg.log"; die "$tg did not come up"; }
	log "$tg pid ${RELAY_PID[$tg]} on 127.0.0.1:${RELAY_PORT[$tg]}"
done

# ---------------------------------------------------------------- measurement helpers
# Every proxy process the harness started: each is placed with the proxy under test.
proxy_pids() { echo "$HA_PID" ${SW_PID:+"$SW_PID"} ${SWN_PID:+"$SWN_PID"} ${SWL_PID:+"$SWL_PID"} ${SWB_PID:+"$SWB_PID"} "${RELAY_PID[@]}"; }
place() {
	local p
	case $1 in
	unpinned)
		taskset -a -pc 0-1 "$DB_PID" >/dev/null
		for p in $(proxy_pids); do taskset -a -pc 0-1 "$p" >/dev/null; done
		SB_CPUS=0-1
		;;
	pinned)
		taskset -a -pc 0 "$DB_PID" >/dev/null
		for p in $(proxy_pids); do taskset -a -pc 1 "$p" >/dev/null; done
		SB_CPUS=1
		;;
	*) die "unknown placement $1" ;;
	esac
	PLACED=$1
	# Go (>= 1.25) re-reads the CPU affinity and adjusts GOMAXPROCS about once a second.
	sleep 2
}

# check_affinity: warn if a thread of MariaDB or of a proxy escaped the placement (new
# threads inherit the mask of the thread that creates them, so none should).
check_affinity() {
	local want_db=0-1 want_px=0-1 p bad
	[[ "$PLACED" == pinned ]] && want_db=0 want_px=1
	bad=$(grep -h "^Cpus_allowed_list:" /proc/"$DB_PID"/task/*/status 2>/dev/null | grep -cv "[[:space:]]$want_db\$" || true)
	((bad == 0)) || log "WARNING: $bad MariaDB threads not on CPU $want_db"
	for p in $(proxy_pids); do
		bad=$(grep -h "^Cpus_allowed_list:" /proc/"$p"/task/*/status 2>/dev/null | grep -cv "[[:space:]]$want_px\$" || true)
		((bad == 0)) || log "WARNING: $bad threads of pid $p not on CPU $want_px"
	done
}

workload_args() {
	case $1 in
	point_select) echo "oltp_point_select ${SB_DATA[*]}" ;;
	read_only) echo "oltp_read_only ${SB_DATA[*]}" ;;
	range1000) echo "$BENCH_DIR/lua/range.lua ${SB_DATA[*]} --range_size=1000" ;;
	short_range) echo "$BENCH_DIR/lua/range.lua ${SB_DATA[*]} --range_size=10" ;;
	select1) echo "$BENCH_DIR/lua/select1.lua" ;;
	*) die "unknown workload $1" ;;
	esac
}

# parse_sysbench LOG: "queries seconds p95_ms p99_ms" (p95/p99 from --histogram with
# sysbench's own percentile rule, so p95 equals its "95th percentile" line up to rounding).
parse_sysbench() {
	awk '
		/^ *queries:/ { q = $2 }
		/^ *total time:/ { t = $3; sub(/s$/, "", t) }
		/^Latency histogram/ { h = 1; next }
		h && /^ *[0-9.]+ \|/ { n++; v[n] = $1; c[n] = $NF; total += $NF; next }
		h && !/^ *value/ { h = 0 }
		function pct(p,   need, acc, i) {
			need = int(total * p / 100 + 0.5); if (need < 1) need = 1
			for (i = 1; i <= n; i++) { acc += c[i]; if (acc >= need) return v[i] }
			return v[n]
		}
		END {
			if (q == "" || t == "" || n == 0) exit 1
			printf "%s %s %s %s\n", q, t, pct(95), pct(99)
		}' "$1"
}

RAW="$OUT/raw.tsv"
printf 'placement\tworkload\tthreads\ttarget\trep\tstatus\tqps\tp95_ms\tp99_ms\tqueries\tsecs\tproxy_cpu_us\tdb_cpu_us\tsteal_pct\tother_pct\n' >"$RAW"

target_port() { case $1 in direct) echo "$DB_PORT" ;; haproxy) echo "$HA_PORT" ;; switchyard) echo "$SW_PORT" ;; switchyard-nodigest) echo "$SWN_PORT" ;; switchyard-loops) echo "$SWL_PORT" ;; switchyard-b) echo "$SWB_PORT" ;; relay-*) echo "${RELAY_PORT[$1]}" ;; esac; }
target_pid() { case $1 in direct) echo "" ;; haproxy) echo "$HA_PID" ;; switchyard) echo "$SW_PID" ;; switchyard-nodigest) echo "$SWN_PID" ;; switchyard-loops) echo "$SWL_PID" ;; switchyard-b) echo "$SWB_PID" ;; relay-*) echo "${RELAY_PID[$1]}" ;; esac; }

# ours_ticks: CPU ticks used so far by the long-running processes of this harness.
ours_ticks() {
	local p t=0
	for p in "$DB_PID" "$HA_PID" ${SW_PID:+"$SW_PID"} ${SWN_PID:+"$SWN_PID"} ${SWL_PID:+"$SWL_PID"} ${SWB_PID:+"$SWB_PID"} "${RELAY_PID[@]}"; do t=$((t + $(cpu_ticks "$p"))); done
	echo "$t"
}

# wait_quiet: with BENCH_QUIET_WAIT=S, wait up to S seconds for the other processes on the
# machine (not ours) to use less than BENCH_QUIET_PCT% of it over a 1 s window.
wait_quiet() {
	local limit=${BENCH_QUIET_WAIT:-0} pct=${BENCH_QUIET_PCT:-10} waited=0 a b o0 o1 other
	((limit > 0)) || return 0
	while :; do
		a=$(cpu_sample) o0=$(ours_ticks)
		sleep 1
		b=$(cpu_sample) o1=$(ours_ticks)
		other=$(awk -v a="$a" -v b="$b" -v o=$((o1 - o0)) 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[3] - x[3]; f = y[1] - x[1] - o; printf "%d", (d > 0 && f > 0 ? 100 * f / d : 0) }')
		((other < pct)) && return 0
		waited=$((waited + 1))
		if ((waited >= limit)); then
			log "machine still busy (other processes ${other}%) after ${limit}s; running anyway"
			return 0
		fi
	done
}

# measure_begin PID / measure_end PID: the CPU used around one client run. The client runs
# under bash `time` with TIMEFORMAT='%3U %3S' and its report in $TMP/time, so that the CPU of
# everything else on the machine ("other") can be told apart from ours. measure_end sets
# M_PCPU (µs of PID, the proxy; "-" without one), M_DCPU (µs of MariaDB), M_STEAL and M_OTHER
# (% of the whole machine).
# io_calls PID: "read-syscalls write-syscalls" so far (syscr, syscw of /proc/PID/io).
# ctx_switches PID: voluntary + involuntary context switches of all its threads so far.
# tcp_segments: TCP segments sent on the whole machine so far (OutSegs of /proc/net/snmp).
tcp_segments() { awk '$1 == "Tcp:" && $12 ~ /^[0-9]+$/ { print $12; exit }' /proc/net/snmp 2>/dev/null || echo 0; }
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'; }
io_calls() { awk '$1 == "syscr:" { r = $2 } $1 == "syscw:" { w = $2 } END { print r + 0, w + 0 }' "/proc/$1/io" 2>/dev/null || echo "0 0"; }
measure_begin() {
	read -r M_C0 M_K0 <<<"$([[ -n "$1" ]] && cpu_sys_ticks "$1" || echo 0 0)"
	M_IO0=$([[ -n "$1" ]] && io_calls "$1" || echo "0 0")
	M_CS0=$([[ -n "$1" ]] && ctx_switches "$1" || echo 0)
	M_SEG0=$(tcp_segments)
	M_D0=$(cpu_ticks "$DB_PID")
	M_O0=$(ours_ticks)
	M_S0=$(cpu_sample)
}
measure_end() {
	local s1 o1 d1 c1 k1 client
	s1=$(cpu_sample)
	o1=$(ours_ticks)
	d1=$(cpu_ticks "$DB_PID")
	read -r c1 k1 <<<"$([[ -n "$1" ]] && cpu_sys_ticks "$1" || echo 0 0)"
	M_CS=$([[ -n "$1" ]] && echo $(($(ctx_switches "$1") - M_CS0)) || echo 0)
	M_SEG=$(($(tcp_segments) - M_SEG0))
	M_IO=$([[ -n "$1" ]] && awk -v a="$M_IO0" -v b="$(io_calls "$1")" 'BEGIN { split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2] }' || echo "0 0")
	client=$(awk -v hz="$CLK_TCK" 'NF == 2 { printf "%d", ($1 + $2) * hz }' "$TMP/time")
	M_PCPU=- M_KERN=0
	[[ -n "$1" ]] && M_PCPU=$(((c1 - M_C0) * 1000000 / CLK_TCK)) &&
		M_KERN=$((c1 > M_C0 ? (${k1:-0} - ${M_K0:-0}) * 100 / (c1 - M_C0) : 0))
	M_DCPU=$(((d1 - M_D0) * 1000000 / CLK_TCK))
	read -r M_STEAL M_OTHER < <(awk -v a="$M_S0" -v b="$s1" -v o=$((o1 - M_O0 + ${client:-0})) 'BEGIN {
		split(a, x, " "); split(b, y, " "); d = y[3] - x[3]; f = y[1] - x[1] - o
		printf "%.1f %.1f\n", (d > 0 ? 100 * (y[2] - x[2]) / d : 0), (d > 0 && f > 0 ? 100 * f / d : 0) }')
}

RUN_NO=0
# run_one PLACEMENT WORKLOAD THREADS TARGET REP
run_one() {
	local pl=$1 wl=$2 th=$3 tg=$4 rep=$5 port pid logf status=ok
	port=$(target_port "$tg")
	pid=$(target_pid "$tg")
	logf="$OUT/runs/$pl-$wl-t$th-$tg-r$rep.log"
	RUN_NO=$((RUN_NO + 1))
	wait_quiet

	local rc=0 TIMEFORMAT='%3U %3S'
	measure_begin "$pid"
	# shellcheck disable=SC2046
	{ time timeout -k 5 $((DURATION + 60)) taskset -c "$SB_CPUS" sysbench $(workload_args "$wl") \
		"${SB_CONN[@]}" --mysql-port="$port" --threads="$th" --time="$DURATION" --events=0 \
		--percentile=95 --histogram=on run >"$logf" 2>&1; } 2>"$TMP/time" || rc=$?
	measure_end "$pid"
	local pcpu=$M_PCPU dcpu=$M_DCPU steal=$M_STEAL other=$M_OTHER

	local parsed q secs p95 p99 qps
	if ((rc == 0)) && parsed=$(parse_sysbench "$logf"); then
		read -r q secs p95 p99 <<<"$parsed"
		qps=$(awk -v q="$q" -v s="$secs" 'BEGIN { printf "%.1f", q / s }')
	else
		status=fail
		q=0 secs=0 p95=0 p99=0 qps=0
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$pl" "$wl" "$th" "$tg" "$rep" "$status" "$qps" "$p95" "$p99" "$q" "$secs" "$pcpu" "$dcpu" "$steal" "$other" >>"$RAW"

	local cpuq=""
	# Read and write system calls per query (/proc/PID/io; HAProxy's recv/send are not counted
	# there) and context switches per query (all threads): the proxy's system calls and
	# wake-ups are most of its CPU, so they are the first thing to compare with HAProxy's.
	# seg/q: TCP segments the whole machine sent per query (both hops, pure ACKs included):
	# each costs the sender the receiver's TCP input on loopback. kern: the share of the
	# proxy's CPU spent in the kernel (stime), the rest being its own code.
	[[ "$status" == ok && "$pcpu" != - && "$q" -gt 0 ]] &&
		cpuq=$(awk -v c="$pcpu" -v q="$q" -v io="$M_IO" -v cs="$M_CS" -v seg="$M_SEG" -v k="$M_KERN" 'BEGIN { split(io, n, " "); printf "  proxy %5.1f us/q (kern %2d%%) %4.2f r/q %4.2f w/q %4.2f cs/q %4.2f seg/q", c / q, k, n[1] / q, n[2] / q, cs / q, seg / q }')
	if [[ "$status" == ok ]]; then
		log "$(printf '[%3d/%d] %-8s %-12s t=%-2s %-10s r%s: %7.0f qps  p95 %7.3f  p99 %7.3f ms%s  steal %s%%  other %s%%' \
			"$RUN_NO" "$TOTAL_RUNS" "$pl" "$wl" "$th" "$tg" "$rep" "$qps" "$p95" "$p99" "$cpuq" "$steal" "$other")"
	else
		log "$(printf '[%3d/%d] %-8s %-12s t=%-2s %-10s r%s: FAILED (rc %s, see %s)' \
			"$RUN_NO" "$TOTAL_RUNS" "$pl" "$wl" "$th" "$tg" "$rep" "$rc" "${logf#"$ROOT"/}")"
	fi
}
# ---------------------------------------------------------------- throughput runs
ACTIVE_TARGETS=()
for tg in $TARGETS; do
	case $tg in
	direct | haproxy) ACTIVE_TARGETS+=("$tg") ;;
	relay-*) ACTIVE_TARGETS+=("$tg") ;; # started above, or the harness died
	switchyard-loops) [[ -n "$SWL_PID" ]] && ACTIVE_TARGETS+=("$tg") ;;
	switchyard-b) [[ -n "$SWB_PID" ]] && ACTIVE_TARGETS+=("$tg") ;;
	switchyard) [[ "$SW_STATUS" == ok ]] && ACTIVE_TARGETS+=("$tg") ;;
	*) die "unknown target $tg" ;;
	esac
done
n_pl=$(wc -w <<<"$PLACEMENTS") n_wl=$(wc -w <<<"$WORKLOADS") n_th=$(wc -w <<<"$THREADS")
TOTAL_RUNS=$((n_pl * n_wl * n_th * REPEATS * ${#ACTIVE_TARGETS[@]}))
if section throughput; then
	log "$TOTAL_RUNS runs of ${DURATION}s: placements [$PLACEMENTS] workloads [$WORKLOADS] threads [$THREADS] targets [${ACTIVE_TARGETS[*]}] x $REPEATS (switchyard: $SW_STATUS)"
else
	log "throughput runs skipped (BENCH_ONLY=$ONLY)"
	PLACEMENTS="" TOTAL_RUNS=0
fi

for pl in $PLACEMENTS; do
	place "$pl"
	for wl in $WORKLOADS; do
		for th in $THREADS; do
			for ((rep = 1; rep <= REPEATS; rep++)); do
				for tg in "${ACTIVE_TARGETS[@]}"; do
					if [[ "$tg" == switchyard ]] && ! kill -0 "$SW_PID" 2>/dev/null; then
						[[ "$SW_STATUS" == ok ]] && log "Switchyard (pid $SW_PID) has exited; see bench/.out/switchyard.log"
						SW_STATUS="crashed"
						RUN_NO=$((RUN_NO + 1))
						printf '%s\t%s\t%s\tswitchyard\t%s\tcrashed\t0\t0\t0\t0\t0\t-\t0\t-\t-\n' "$pl" "$wl" "$th" "$rep" >>"$RAW"
						continue
					fi
					run_one "$pl" "$wl" "$th" "$tg" "$rep"
				done
			done
		done
	done
	check_affinity
done
place unpinned

# ---------------------------------------------------------------- digest cost
# point_select through the proxy with digests on (switchyard) and off (switchyard-nodigest),
# interleaved pair by pair, in their own raw file so the main table keeps its repeats.
DIGEST_LINES=()
if [[ "$DIGESTS" != 1 ]]; then
	DIGEST_LINES+=("- skipped (BENCH_DIGESTS=0 or BENCH_ONLY)")
elif [[ "$SW_STATUS" != ok || -z "$SWN_PID" ]]; then
	DIGEST_LINES+=("- not run: Switchyard $SW_STATUS, the proxy without digests ${SWN_PID:-did not start}")
else
	MAIN_RAW=$RAW
	RAW="$OUT/digests.tsv"
	head -n 1 "$MAIN_RAW" >"$RAW"
	place unpinned
	TOTAL_RUNS=$((RUN_NO + 2 * REPEATS))
	log "digest cost: point_select t=$DIGEST_THREADS, digests on/off x $REPEATS"
	# ABBA order (on, off, off, on, ...): a drift in the machine's load over the section
	# falls on both sides alike instead of always on the one that runs second.
	for ((rep = 1; rep <= REPEATS; rep++)); do
		pair="switchyard switchyard-nodigest"
		((rep % 2 == 0)) && pair="switchyard-nodigest switchyard"
		for tg in $pair; do
			run_one unpinned point_select "$DIGEST_THREADS" "$tg" "$rep"
		done
	done
	RAW=$MAIN_RAW
	# Median QPS and proxy CPU us/q of each side; cost = 1 - on/off.
	mapfile -t DIGEST_LINES < <(awk -F'\t' '
		function median(a, n,   i, j, t) {
			for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		NR > 1 && $6 == "ok" {
			if ($4 == "switchyard") { on[++n1] = $7; if ($12 != "-" && $10 > 0) onc[++c1] = $12 / $10 }
			else { off[++n2] = $7; if ($12 != "-" && $10 > 0) offc[++c2] = $12 / $10 }
		}
		END {
			if (n1 == 0 || n2 == 0) { print "- no successful pair (see bench/.out/runs/)"; exit }
			qon = median(on, n1); qoff = median(off, n2)
			printf "| digests | QPS (median of %d) | proxy CPU µs/q |\n|---|---|---|\n", n1
			printf "| on | %.0f | %s |\n", qon, c1 ? sprintf("%.1f", median(onc, c1)) : "-"
			printf "| off | %.0f | %s |\n", qoff, c2 ? sprintf("%.1f", median(offc, c2)) : "-"
			printf "\nQPS cost of digests: %.1f%% (goal: at most 3%%); raw runs in bench/.out/digests.tsv.\n", 100 * (1 - qon / qoff)
		}' "$OUT/digests.tsv")
fi

# ---------------------------------------------------------------- idle sessions
# idle_test NAME PORT PID: open IDLE_N sessions through PORT, report the VmRSS growth of
# PID (the proxy; empty for direct) and of MariaDB.
IDLE_LINES=()
idle_test() {
	local name=$1 port=$2 pid=$3 r0 r1 r2="" m0 m1 ipid opened="" fds=""
	r0=$([[ -n "$pid" ]] && rss_kb "$pid" || echo 0)
	m0=$(rss_kb "$DB_PID")
	"$OUT/idleconns" -addr "127.0.0.1:$port" -user "$DB_USER" -password "$DB_PASS" -db "$DB_NAME" \
		-n "$IDLE_N" -until-eof=false >"$TMP/idle-$name.out" 2>"$TMP/idle-$name.err" </dev/null &
	ipid=$!
	register "$ipid" idleconns
	for _ in $(seq 600); do
		opened=$(awk '/^OPENED/ { print $2 }' "$TMP/idle-$name.out")
		[[ -n "$opened" ]] && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.5
	done
	if [[ -z "$opened" ]]; then
		kill -TERM "$ipid" 2>/dev/null || true
		wait "$ipid" 2>/dev/null || true
		unregister "$ipid"
		IDLE_LINES+=("- $name: FAILED ($(head -c 300 "$TMP/idle-$name.err"))")
		return
	fi
	sleep 3 # let the proxy and MariaDB settle (thread start-up, GC)
	r1=$([[ -n "$pid" ]] && rss_kb "$pid" || echo 0)
	m1=$(rss_kb "$DB_PID")
	[[ -n "$pid" ]] && fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	if [[ -n "$pid" ]] && ((IDLE_SETTLE > 0)); then
		# Idle sessions, not just-opened ones: the logins' garbage is collected and
		# given back, and parked sessions have released their buffers.
		sleep "$IDLE_SETTLE"
		r2=$(rss_kb "$pid")
	fi
	kill -TERM "$ipid" 2>/dev/null || true
	wait "$ipid" 2>/dev/null || true
	unregister "$ipid"
	local line err=""
	((opened < IDLE_N)) && err=" (only $opened of $IDLE_N opened: $(head -c 200 "$TMP/idle-$name.err" | tr '\n' ' '))"
	if ((opened > 0)); then
		if [[ -n "$pid" ]]; then
			line=$(awk -v n="$opened" -v a="$r0" -v b="$r1" -v c="$r2" -v st="$IDLE_SETTLE" -v f="$fds" -v nm="$name" 'BEGIN {
				printf "- %s: **%.1f KiB per idle session** (VmRSS %.1f -> %.1f MiB, %s fds open)", nm, (b - a) / n, a / 1024, b / 1024, f
				if (c != "") printf "; **%.1f KiB** after %d s idle (VmRSS %.1f MiB)", (c - a) / n, st, c / 1024 }')
		else
			line=$(awk -v n="$opened" -v ma="$m0" -v mb="$m1" 'BEGIN {
				printf "- direct (no proxy): MariaDB %.1f KiB per idle session (VmRSS %.1f -> %.1f MiB)", (mb - ma) / n, ma / 1024, mb / 1024 }')
		fi
	else
		line="- $name: no session opened"
	fi
	IDLE_LINES+=("$line$err")
	log "idle ${line#- }$err"
	sleep 2 # let sessions drain before the next test
}
if ((IDLE_N > 0)); then
	log "idle-session memory: $IDLE_N sessions per target"
	for tg in $TARGETS; do
		case $tg in
		direct) idle_test direct "$DB_PORT" "" ;;
		haproxy) idle_test haproxy "$HA_PORT" "$HA_PID" ;;
		switchyard)
			if [[ "$SW_STATUS" == ok ]] && kill -0 "$SW_PID" 2>/dev/null; then
				idle_test switchyard "$SW_PORT" "$SW_PID"
			else
				IDLE_LINES+=("- switchyard: $SW_STATUS")
			fi
			;;
		esac
	done
fi

# ---------------------------------------------------------------- short connections
# bench/shortconn against each target in turn (direct, haproxy, switchyard, then again,
# REPEATS rounds, unpinned): connections paced at SC_RATE/s over SC_THREADS client threads
# for SC_SECONDS, each one login, SELECT 1, COM_QUIT. The proxy's CPU over the run divided by
# the connections completed is its CPU per connection.
SC_KEYS="conns failed secs rate late p50_ms p95_ms p99_ms login_p50_ms login_p95_ms login_p99_ms"
# shortconn_one TARGET REP: one run, a line in $SC_RAW.
shortconn_one() {
	local tg=$1 rep=$2 port pid logf status=ok rc=0 vals TIMEFORMAT='%3U %3S'
	port=$(target_port "$tg")
	pid=$(target_pid "$tg")
	logf="$OUT/runs/shortconn-$tg-r$rep.log"
	RUN_NO=$((RUN_NO + 1))
	wait_quiet
	measure_begin "$pid"
	{ time timeout -k 5 $((SC_SECONDS + 60)) "$OUT/shortconn" -addr "127.0.0.1:$port" -user "$DB_USER" \
		-password "$DB_PASS" -db "$DB_NAME" -rate "$SC_RATE" -threads "$SC_THREADS" \
		-duration "${SC_SECONDS}s" >"$TMP/shortconn.out" 2>"$logf" </dev/null; } 2>"$TMP/time" || rc=$?
	measure_end "$pid"
	cat "$TMP/shortconn.out" >>"$logf"
	# Exit status 1 only says that some connections failed: the line counts them.
	if ((rc > 1)) || ! vals=$(awk -v keys="$SC_KEYS" '
		{ for (i = 1; i <= NF; i++) { eq = index($i, "="); if (eq) v[substr($i, 1, eq - 1)] = substr($i, eq + 1) } }
		END { n = split(keys, k, " "); for (i = 1; i <= n; i++) { if (!(k[i] in v)) exit 1; printf "%s%s", v[k[i]], (i < n ? "\t" : "\n") } }' \
		"$TMP/shortconn.out"); then
		status=fail
		vals=$(printf '0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0')
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tg" "$rep" "$status" "$vals" "$M_PCPU" "$M_DCPU" "$M_STEAL" "$M_OTHER" >>"$SC_RAW"
	local conns failed _secs rate late p50 p95 p99 l50 cpuc=""
	read -r conns failed _secs rate late p50 p95 p99 l50 _ <<<"$vals"
	if [[ "$status" != ok ]]; then
		log "$(printf '[%3d/%d] shortconn %-10s r%s: FAILED (rc %s, see %s)' "$RUN_NO" "$TOTAL_RUNS" "$tg" "$rep" "$rc" "${logf#"$ROOT"/}")"
		return
	fi
	[[ "$M_PCPU" != - && "$conns" -gt 0 ]] && cpuc=$(awk -v c="$M_PCPU" -v n="$conns" 'BEGIN { printf "  proxy %4.0f us/conn", c / n }')
	log "$(printf '[%3d/%d] shortconn %-10s r%s: %5d conns (%d failed, %d late) %5.1f/s  p50 %6.3f  p95 %6.3f  p99 %6.3f ms  login p50 %6.3f ms%s  other %s%%' \
		"$RUN_NO" "$TOTAL_RUNS" "$tg" "$rep" "$conns" "$failed" "$late" "$rate" "$p50" "$p95" "$p99" "$l50" "$cpuc" "$M_OTHER")"
}
SHORT_LINES=()
if [[ "$SHORTCONN" != 1 ]]; then
	SHORT_LINES+=("- skipped (BENCH_SHORTCONN=0 or BENCH_ONLY)")
else
	place unpinned
	SC_RAW="$OUT/shortconn.tsv"
	printf 'target\trep\tstatus\t%s\tproxy_cpu_us\tdb_cpu_us\tsteal_pct\tother_pct\n' "${SC_KEYS// /$'\t'}" >"$SC_RAW"
	# A connection leaves a socket in TIME_WAIT for 60 s on the side that closes first (the
	# client, and the proxy towards MariaDB): up to 2 x rate x 60 sockets. Loopback reuses
	# them for new connections when tcp_tw_reuse is 1 or 2 (the default).
	read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
	tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo "?")
	if ((2 * SC_RATE * 60 > port_hi - port_lo)) && [[ "$tw_reuse" == 0 ]]; then
		log "WARNING: $SC_RATE conn/s may leave more sockets in TIME_WAIT than ports $port_lo-$port_hi with tcp_tw_reuse=0"
	fi
	TOTAL_RUNS=$((RUN_NO + REPEATS * ${#ACTIVE_TARGETS[@]}))
	log "short connections: $SC_RATE conn/s, $SC_THREADS threads, ${SC_SECONDS}s x $REPEATS per target [${ACTIVE_TARGETS[*]}] (ports $port_lo-$port_hi, tcp_tw_reuse $tw_reuse)"
	for ((rep = 1; rep <= REPEATS; rep++)); do
		for tg in "${ACTIVE_TARGETS[@]}"; do
			if [[ "$tg" == switchyard ]] && ! kill -0 "$SW_PID" 2>/dev/null; then
				log "Switchyard (pid $SW_PID) has exited; see bench/.out/switchyard.log"
				printf 'switchyard\t%s\tcrashed\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t-\t0\t-\t-\n' "$rep" >>"$SC_RAW"
				continue
			fi
			shortconn_one "$tg" "$rep"
		done
	done
	mapfile -t SHORT_LINES < <("$OUT/report" -shortconn "$SC_RAW" || echo "- report failed (raw runs in bench/.out/shortconn.tsv)")
fi

# ---------------------------------------------------------------- many idle sessions
# bench/idlemany holds as many idle sessions in one Switchyard process as the file
# descriptor limit allows (issue 11's P4 asks 100,000; it takes CAP_SYS_RESOURCE to raise
# the hard limit past what the machine gives), with mysqldouble backends in its own process.
MANYIDLE_STATUS="skipped (BENCH_MANYIDLE=0 or BENCH_ONLY)"
if [[ "$MANYIDLE" == 1 ]]; then
	if [[ -z "$MANYIDLE_N" ]]; then
		hard=$(ulimit -Hn)
		[[ "$hard" == unlimited ]] && hard=1048576
		MANYIDLE_N=$(((hard - 600) / 2))
		((MANYIDLE_N > 100000)) && MANYIDLE_N=100000
	fi
	MANYIDLE_STATUS="not built (see bench/.out/idlemany-build.log)"
	if (cd "$ROOT" && go build -o "$OUT/idlemany" ./bench/idlemany) >"$OUT/idlemany-build.log" 2>&1 &&
		[[ -x "$SW_BIN" ]]; then
		log "many idle sessions: $MANYIDLE_N in one Switchyard process (bench/.out/idlemany.md)"
		if "$OUT/idlemany" -proxy "$SW_BIN" -n "$MANYIDLE_N" -checkpoints 1000,5000 -hold 20s \
			>"$OUT/idlemany.md" 2>"$OUT/idlemany.log" </dev/null; then
			MANYIDLE_STATUS=ok
		else
			MANYIDLE_STATUS="failed (rc $?; see bench/.out/idlemany.log)"
		fi
	fi
	log "many idle sessions: $MANYIDLE_STATUS"
fi

# ---------------------------------------------------------------- topology
# bench/topology runs in-process against its own etcd and fake backends (all on loopback);
# the MariaDB, HAProxy and Switchyard started above sit idle meanwhile. It gets its own
# build so that a tree that does not build only loses this section.
TOPO_STATUS="skipped (BENCH_TOPOLOGY=0 or BENCH_ONLY)"
if [[ "$TOPOLOGY" == 1 ]]; then
	TOPO_STATUS="not built (see bench/.out/topology-build.log)"
	rm -f "$OUT/topology" "$OUT/topology.md"
	if (cd "$ROOT" && go build -o "$OUT/topology" ./bench/topology) >"$OUT/topology-build.log" 2>&1; then
		# BENCH_QUIET_WAIT applies to its measurements too; flags in TOPOLOGY_ARGS come later and win.
		topo_quiet=()
		((${BENCH_QUIET_WAIT:-0} > 0)) && topo_quiet=(-quiet-wait "${BENCH_QUIET_WAIT}s" -quiet-pct "${BENCH_QUIET_PCT:-10}")
		log "topology benchmark: bench/.out/topology ${topo_quiet[*]} ${TOPOLOGY_ARGS}"
		# shellcheck disable=SC2086 # TOPOLOGY_ARGS is a word list by design
		if "$OUT/topology" "${topo_quiet[@]}" $TOPOLOGY_ARGS >"$OUT/topology.md" 2>"$OUT/topology.log" </dev/null; then
			TOPO_STATUS=ok
		else
			TOPO_STATUS="failed (rc $?; see bench/.out/topology.log)"
		fi
	fi
	log "topology benchmark: $TOPO_STATUS"
	if [[ "$TOPO_STATUS" != ok ]]; then
		tail -n 5 "$OUT/topology-build.log" "$OUT/topology.log" 2>/dev/null | sed 's/^/    /' || true
	fi
fi

# ---------------------------------------------------------------- report
ELAPSED=$(($(date +%s) - START_TS))
RES="$OUT/results.md"
{
	echo "# Switchyard benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "## Machine"
	echo
	echo "- CPUs: $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "- kernel: $(uname -sr)"
	echo "- $(mariadbd --version)"
	echo "- $(haproxy -v | head -n 1)"
	echo "- $(sysbench --version); $(go version | cut -d' ' -f3-)"
	echo "- Switchyard: $SW_STATUS$([[ -n "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)" ]] && echo " (commit $(git -C "$ROOT" rev-parse --short HEAD))")"
	echo
	echo "## Method"
	echo
	echo "- sysbench, ${DURATION}s per run, median of $REPEATS runs; per (workload, threads) the targets run interleaved: direct, haproxy, switchyard, repeated."
	echo "- $TABLES tables x $TABLE_SIZE rows; prepared statements on (sysbench default). point_select / read_only are the stock sysbench scripts; range1000 is bench/lua/range.lua: one prepared SELECT returning exactly 1000 rows per event, no transaction."
	echo "- p95/p99 are per sysbench event (read_only: a 16-statement transaction; others: one statement), in ms, from the sysbench latency histogram."
	echo "- CPU µs/q: (utime+stime of the proxy process during the run) / queries sysbench completed."
	echo "- HAProxy 2.6 TCP mode, nbthread 1. MariaDB: max_connections 6000, buffer pool 256M, no binlog, no performance_schema."
	echo
	echo "## Throughput and latency"
	if section throughput; then
		"$OUT/report" -raw "$RAW" -sw-note "$([[ "$SW_STATUS" == ok ]] || echo "$SW_STATUS")"
	else
		echo
		echo "- skipped (BENCH_ONLY=$ONLY)"
	fi
	echo
	echo "## Digest cost (point_select, $DIGEST_THREADS threads, unpinned)"
	echo
	printf '%s\n' "${DIGEST_LINES[@]}"
	echo
	echo "## Idle sessions ($IDLE_N per target, unpinned)"
	echo
	if ((${#IDLE_LINES[@]})); then printf '%s\n' "${IDLE_LINES[@]}"; else echo "- skipped"; fi
	echo
	echo "## Short connections ($SC_RATE conn/s, $SC_THREADS client threads, ${SC_SECONDS}s x $REPEATS per target, unpinned)"
	echo
	if [[ "$SHORTCONN" == 1 ]]; then
		echo "Each connection: TCP dial, login (mysql_native_password), SELECT 1 with its result read, COM_QUIT, close (bench/shortconn). Latency from the dial to the result, medians of the runs' percentiles; CPU per connection = the proxy's utime+stime over the run / connections completed. Raw runs: bench/.out/shortconn.tsv."
		echo
	fi
	printf '%s\n' "${SHORT_LINES[@]}"
	echo
	echo "## Many idle sessions in one process (mysqldouble backends)"
	echo
	if [[ "$MANYIDLE_STATUS" == ok ]]; then
		echo "bench/idlemany -n $MANYIDLE_N: the proxy's VmRSS growth per session, Go's own figures from its /metrics, and its CPU while the sessions idle."
		echo
		cat "$OUT/idlemany.md"
	else
		echo "- $MANYIDLE_STATUS"
	fi
	echo
	echo "## Topology"
	echo
	if [[ "$TOPO_STATUS" == ok ]]; then
		# The program's own title is dropped and its sections become subsections.
		echo "bench/topology ${TOPOLOGY_ARGS:-(default sizes)}; also in bench/.out/topology.md."
		echo
		tail -n +3 "$OUT/topology.md" | sed 's/^## /### /'
	else
		echo "- $TOPO_STATUS"
		echo
	fi
	echo "Total harness time: $((ELAPSED / 60)) min $((ELAPSED % 60)) s. Raw per-run data: bench/.out/raw.tsv; sysbench logs: bench/.out/runs/."
} >"$RES"
echo
cat "$RES"
