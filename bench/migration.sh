#!/usr/bin/env bash
# bench/migration.sh: `make bench-migration` (and part of `make bench` unless BENCH_MIGRATION=0).
# Session migration under load (issue 9):
#   1. sysbench oltp_point_select at 32 threads through Switchyard in front of two MariaDB
#      servers of one cluster, while backend a is drained and undrained every 10 s
#      (POST/DELETE /api/v1/backends/{cluster}/{addr}/drain) for 2 minutes. Reports client
#      errors (goal 0), the p99 of the seconds just after a drain/undrain against the steady
#      seconds, and the migrations the proxy counted.
#   2. The time to move 1,000 idle sessions off a backend: with b drained, open them (all on
#      a, bench/idleconns), undrain b, drain a, and time until a holds none; then every
#      session must still answer a ping.
# The load average and the CPU other processes used are reported beside the figures (the
# machine may be shared). Everything runs on 127.0.0.1 and is torn down on exit. The report
# is bench/.out/migration.txt.
#
# Environment:
#   BENCH_MIG_DURATION=120   seconds of sysbench
#   BENCH_MIG_PERIOD=10      seconds between drain and undrain
#   BENCH_MIG_THREADS=32
#   BENCH_MIG_IDLE=1000      idle sessions for the move-time test (0 skips it)
#   BENCH_MIG_WINDOW=3       seconds after each drain/undrain counted as "during migration"
#   BENCH_MIG_PROFILE=0      1 = take a CPU profile of the proxy (/debug/pprof/profile) while
#                            the idle sessions move: bench/.out/migration-move.pprof
#   BENCH_QUICK=1            smoke run: 20 s, 300 idle sessions
#   BENCH_PROXY_BIN=path     use this Switchyard binary instead of building ./cmd/proxy
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
OUT="$BENCH_DIR/.out"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
	: "${BENCH_MIG_DURATION:=20}" "${BENCH_MIG_IDLE:=300}"
fi
DURATION=${BENCH_MIG_DURATION:-120}
PERIOD=${BENCH_MIG_PERIOD:-10}
THREADS=${BENCH_MIG_THREADS:-32}
IDLE_N=${BENCH_MIG_IDLE:-1000}
WINDOW=${BENCH_MIG_WINDOW:-3}
PROFILE=${BENCH_MIG_PROFILE:-0}

MIG_USER=switchyard_migrator
MIG_PASS=mig-pw
TOKEN=bench-token

LOG_TAG=bench-migration
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

ensure_tools
bench_tmp switchyard-bench-mig
log "building helpers"
(cd "$ROOT" && go build -o "$OUT/idleconns" ./bench/idleconns)
build_proxy || { head -n 5 "$OUT/proxy-build.log"; die "Switchyard did not build (bench/.out/proxy-build.log)"; }

# ---------------------------------------------------------------- two MariaDB servers
MIG_SQL="CREATE USER '$MIG_USER'@'%' IDENTIFIED BY '$MIG_PASS'; GRANT SELECT ON mysql.* TO '$MIG_USER'@'%';"
start_mariadb a 3000 128M "$MIG_SQL"
A_PORT=$MDB_PORT A_PID=$MDB_PID
start_mariadb b 3000 128M "$MIG_SQL"
B_PORT=$MDB_PORT B_PID=$MDB_PID

# ---------------------------------------------------------------- Switchyard
free_port SW_PORT
free_port API_PORT
cat >"$TMP/switchyard.toml" <<EOF
[proxy]
addr = "127.0.0.1:$SW_PORT"
max-connections = 5000

[api]
addr = "127.0.0.1:$API_PORT"
token = "$TOKEN"

[log]
level = "info"

[health-check]
interval = "1s"

[balance]
policy = "connection"
evictions-per-second = 1000.0
backend-drain-timeout = "60s"

[[cluster]]
name = "bench"
instances = ["127.0.0.1:$A_PORT", "127.0.0.1:$B_PORT"]
migration-user = "$MIG_USER"
migration-password = "$MIG_PASS"
EOF
start_proxy SW_PID "$TMP/switchyard.toml" "$OUT/migration-switchyard.log"
wait_sql "$SW_PORT" "$SW_PID" || { tail -n 20 "$OUT/migration-switchyard.log"; die "switchyard did not come up"; }
log "Switchyard pid $SW_PID on 127.0.0.1:$SW_PORT, API 127.0.0.1:$API_PORT"

API="http://127.0.0.1:$API_PORT"
drain_path() { echo "/api/v1/backends/bench/127.0.0.1:$1/drain"; }
api() { curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" "$API$2"; }
sessions_on() { # sessions the proxy has on backend 127.0.0.1:$1
	api GET /api/v1/backends | tr -d ' \n' | grep -o "\"id\":\"bench/127.0.0.1:$1\"[^}]*\"sessions\":[0-9]*" |
		grep -o '"sessions":[0-9]*$' | cut -d: -f2
}
totals() { api GET /api/v1/migrations | tr -d ' \n' | grep -o '"totals":{[^}]*}' || echo "n/a"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# hist FILE: saves the proxy's histogram of successful migration durations.
hist() { curl -fsS "$API/metrics" | grep '^switchyard_migration_duration_seconds_[a-z]*{cluster="bench",.*result="ok"' >"$1" || true; }
# hist_delta BEFORE AFTER: the moves between two hist files: count, mean, and the buckets
# that hold the median and the 99th percentile.
hist_delta() {
	awk '
		function le(line,   x) { x = line; sub(/.*le="/, "", x); sub(/".*/, "", x); return x }
		FILENAME == ARGV[1] { if ($1 ~ /_bucket/) b0[le($1)] = $2; else if ($1 ~ /_sum/) s0 = $2; else if ($1 ~ /_count/) c0 = $2; next }
		$1 ~ /_bucket/ { k = le($1); d[++n] = k; c[k] = $2 - b0[k] }
		$1 ~ /_sum/ { s1 = $2 } $1 ~ /_count/ { c1 = $2 }
		function q(p,   i) { for (i = 1; i <= n; i++) if (c[d[i]] >= p * cnt) return d[i] == "+Inf" ? "more than 16 s" : "at most " d[i] * 1000 " ms"; return "n/a" }
		END {
			cnt = c1 - c0
			if (cnt <= 0) { print "no successful migration recorded"; exit }
			printf "%d moves, mean %.1f ms from request to done; median %s, p99 %s (histogram buckets)", cnt, 1000 * (s1 - s0) / cnt, q(0.5), q(0.99)
		}' "$1" "$2"
}
# not_ok: the errors of the recent migrations that did not succeed, counted.
not_ok() {
	api GET /api/v1/migrations | tr -d '\n' | grep -o '"result": *"[a-z]*"[^}]*"error": *"[^"]*"' |
		sed -E 's/"duration_ms": *[0-9.e+-]*, *//' | sort | uniq -c | sed 's/^ */    /' || true
}
# ours_ticks: CPU ticks used so far by the proxy and both MariaDB servers.
ours_ticks() { echo $(($(cpu_ticks "$SW_PID") + $(cpu_ticks "$A_PID") + $(cpu_ticks "$B_PID"))); }
# other_pct A B O: the share of the machine (%) that processes other than ours used between
# cpu_samples A and B, ours having used O ticks.
other_pct() {
	awk -v a="$1" -v b="$2" -v o="$3" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[3] - x[3]; f = y[1] - x[1] - o
		printf "%.0f", (d > 0 && f > 0 ? 100 * f / d : 0) }'
}

# ---------------------------------------------------------------- 1. load while draining
LOAD0=$(loadavg)
log "load average $LOAD0; sysbench oltp_point_select, $THREADS threads, ${DURATION}s; drain/undrain of a every ${PERIOD}s"
S0=$(cpu_sample) O0=$(ours_ticks)
sysbench oltp_point_select "${SB_CONN[@]}" --mysql-port="$SW_PORT" "${SB_DATA[@]}" \
	--threads="$THREADS" --time="$DURATION" --report-interval=1 --percentile=99 \
	--mysql-ignore-errors="${BENCH_MIG_IGNORE_ERRORS:-all}" run >"$OUT/migration-sysbench.log" 2>&1 &
SB_PID=$!
register "$SB_PID" sysbench
START=$(date +%s)
EVENTS=()
drained=0 next=$PERIOD sb_ticks=0
# sysbench ends by itself after --time; the loop stops drains then, or at a hard limit. It
# ticks every second to follow sysbench's own CPU (read until it exits).
while kill -0 "$SB_PID" 2>/dev/null && (($(date +%s) - START < DURATION + 30)); do
	sleep 1
	t=$(cpu_ticks "$SB_PID")
	((t > sb_ticks)) && sb_ticks=$t
	now=$(($(date +%s) - START))
	((now < next || now >= DURATION)) && continue
	next=$((next + PERIOD))
	if ((drained)); then
		api DELETE "$(drain_path "$A_PORT")" >/dev/null && drained=0
	else
		api POST "$(drain_path "$A_PORT")?timeout=30s" >/dev/null && drained=1
	fi
	EVENTS+=("$now")
done
if kill -0 "$SB_PID" 2>/dev/null; then
	log "WARNING: sysbench did not finish $((DURATION + 30))s after it started (stuck clients?); stopping it"
	kill -TERM "$SB_PID" 2>/dev/null || true
fi
wait "$SB_PID" || true
S1=$(cpu_sample) O1=$(ours_ticks)
LOAD1=$(loadavg)
OTHER1=$(other_pct "$S0" "$S1" $((O1 - O0 + sb_ticks)))
((drained)) && api DELETE "$(drain_path "$A_PORT")" >/dev/null || true
MIGRATIONS1=$(totals)

# Per-second lines: "[ 12s ] thds: 32 tps: ... lat (ms,99%): 1.23 err/s: 0.00 reconn/s: 0.00"
REPORT=$(awk -v events="${EVENTS[*]}" -v window="$WINDOW" -v duration="$DURATION" '
	BEGIN { n = split(events, ev, " ") }
	/^\[ *[0-9]+s \]/ {
		t = $2; sub(/s/, "", t); t += 0
		if (t > duration) next
		p99 = ""; errs = 0; tps = 0
		for (i = 1; i <= NF; i++) {
			if ($i == "(ms,99%):") p99 = $(i + 1)
			if ($i == "err/s:") errs = $(i + 1)
			if ($i == "tps:") tps = $(i + 1)
			if ($i == "reconn/s:") reconn += $(i + 1)
		}
		toterr += errs
		if (tps == 0) { idle++; next } # nothing completed: no latency to speak of
		mig = 0
		for (i = 1; i <= n; i++) if (t > ev[i] && t <= ev[i] + window) mig = 1
		if (mig) { m[++nm] = p99 } else { s[++ns] = p99 }
	}
	/ignored errors:/ { ignored = $3; summary = 1 }
	/reconnects:/ { reconnects = $2 }
	/transactions:/ { tx = $2; tps_all = $3; sub(/\(/, "", tps_all) }
	function median(a, k,   i, j, x) {
		if (k == 0) return "n/a"
		for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	function maxof(a, k,   i, x) { x = 0; for (i = 1; i <= k; i++) if (a[i] + 0 > x) x = a[i] + 0; return k ? x : "n/a" }
	END {
		if (summary) printf "client errors (sysbench ignored errors): %s; reconnects: %s\n", ignored, reconnects
		else printf "client errors: about %.0f (sum of per-second err/s; sysbench never finished, see bench/.out/migration-sysbench.log)\n", toterr
		if (summary) printf "queries: %s point selects, %s per second\n", tx, tps_all
		if (idle) printf "seconds with no completed query: %d\n", idle
		printf "p99 latency, steady seconds (%d): median %s ms, worst %s ms\n", ns, median(s, ns), maxof(s, ns)
		printf "p99 latency, seconds within %ss after a drain/undrain (%d): median %s ms, worst %s ms\n", window, nm, median(m, nm), maxof(m, nm)
	}' "$OUT/migration-sysbench.log")

# ---------------------------------------------------------------- 2. move 1,000 idle sessions
MOVE_RESULT="skipped"
if ((IDLE_N > 0)); then
	# b takes no new sessions while they open, so that they all land on a.
	api POST "$(drain_path "$B_PORT")?timeout=600s" >/dev/null
	log "opening $IDLE_N idle sessions (b drained, so all on a)"
	mkfifo "$TMP/idle.in"
	"$OUT/idleconns" -addr "127.0.0.1:$SW_PORT" -user "$DB_USER" -password "$DB_PASS" -db "$DB_NAME" \
		-n "$IDLE_N" -parallel 32 -ping <"$TMP/idle.in" >"$TMP/idle.log" 2>"$TMP/idle.err" &
	IDLE_PID=$!
	register "$IDLE_PID" idleconns
	exec 9>"$TMP/idle.in" # holds the sessions open until closed
	for _ in $(seq 600); do
		grep -q '^OPENED' "$TMP/idle.log" && break
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.5
	done
	opened=$(awk '/^OPENED/ { print $2 }' "$TMP/idle.log")
	open_secs=$(awk '/^OPENED/ { print $3 }' "$TMP/idle.log")
	[[ -n "$opened" ]] || die "idleconns failed: $(head -c 300 "$TMP/idle.err")"
	on_a=$(sessions_on "$A_PORT" || echo 0)
	before=$(totals)
	hist "$TMP/hist0"
	LOAD2=$(loadavg)
	log "$opened idle sessions open, $on_a on a; load average $LOAD2; undraining b and draining a"
	PROF_PID=""
	if [[ "$PROFILE" == 1 ]]; then
		curl -fsS -H "Authorization: Bearer $TOKEN" "$API/debug/pprof/profile?seconds=10" \
			-o "$OUT/migration-move.pprof" &
		PROF_PID=$!
		register "$PROF_PID" curl
	fi
	S2=$(cpu_sample) O2=$(ours_ticks)
	t0=$(date +%s.%N)
	api DELETE "$(drain_path "$B_PORT")" >/dev/null
	api POST "$(drain_path "$A_PORT")?timeout=300s" >/dev/null
	left=$on_a
	for _ in $(seq 3000); do
		left=$(sessions_on "$A_PORT" || echo "$left")
		((left == 0)) && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	S3=$(cpu_sample) O3=$(ours_ticks)
	OTHER2=$(other_pct "$S2" "$S3" $((O3 - O2)))
	after=$(totals)
	hist "$TMP/hist1"
	MOVES=$(hist_delta "$TMP/hist0" "$TMP/hist1")
	NOT_OK=$(not_ok)
	MOVE_RESULT=$(awk -v a="$t0" -v b="$t1" -v n="$on_a" -v left="$left" \
		'BEGIN { printf "%d idle sessions moved off a in %.2f s (%d left)", n - left, b - a, left }')
	[[ -n "$PROF_PID" ]] && { wait "$PROF_PID" || log "WARNING: the profile was not taken"; }
	api DELETE "$(drain_path "$A_PORT")" >/dev/null || true
	exec 9>&- # idleconns pings every session, then closes them
	wait "$IDLE_PID" || true
	PINGED=$(awk '/^PINGED/ { printf "%d answered, %d failed", $2, $3 }' "$TMP/idle.log")
	MOVE_RESULT+="; pings after the move: ${PINGED:-none ($(head -c 200 "$TMP/idle.err"))}"
	MOVE_RESULT+=$'\n'"for comparison, opening the $opened sessions through the proxy (32 at a time) took $open_secs s"
	MOVE_RESULT+=$'\n'"migrations before/after the move: $before / $after; $MOVES"
	[[ -n "$NOT_OK" ]] && MOVE_RESULT+=$'\n'"moves that did not succeed (recent list):"$'\n'"$NOT_OK"
	MOVE_RESULT+=$'\n'"conditions: load average $LOAD2 before the move; other processes used ${OTHER2}% of the machine during it"
	if [[ "$PROFILE" == 1 && -s "$OUT/migration-move.pprof" ]]; then
		MOVE_RESULT+=$'\n'"CPU profile: bench/.out/migration-move.pprof; top functions (flat):"$'\n'
		MOVE_RESULT+=$( (cd "$ROOT" && go tool pprof -top -nodecount=15 "$SW_BIN" "$OUT/migration-move.pprof" 2>/dev/null) | sed -n '1,22p')
	fi
fi

{
	echo "Switchyard session migration benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a))"
	echo "sysbench oltp_point_select, $THREADS threads, ${DURATION}s; backend a drained/undrained every ${PERIOD}s at t=${EVENTS[*]}"
	echo "conditions: load average $LOAD0 before, $LOAD1 after; other processes used ${OTHER1}% of the machine during sysbench"
	echo "$REPORT"
	echo "migrations counted by the proxy: $MIGRATIONS1"
	echo "move time: $MOVE_RESULT"
} | tee "$OUT/migration.txt"
