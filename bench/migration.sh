#!/usr/bin/env bash
# bench/migration.sh: `make bench-migration` (and `make bench` with BENCH_MIGRATION=1).
# Session migration under load (issue 9):
#   1. sysbench oltp_point_select at 32 threads through Switchyard in front of two MariaDB
#      servers of one cluster, while backend A is drained and undrained every 10 s
#      (proxyctl's API: POST/DELETE /api/v1/backends/{cluster}/{addr}/drain) for 2 minutes.
#      Reports client errors (goal 0), p99 latency in the seconds around a drain/undrain
#      against the steady seconds, and the migrations the proxy counted.
#   2. The time to move 1,000 idle sessions off a backend: open them (bench/idleconns), drain
#      the backend they are on, time until it holds none.
# Everything runs on 127.0.0.1 and is torn down on exit. The output is
# bench/.out/migration.txt.
#
# Environment:
#   BENCH_MIG_DURATION=120   seconds of sysbench
#   BENCH_MIG_PERIOD=10      seconds between drain and undrain
#   BENCH_MIG_THREADS=32
#   BENCH_MIG_IDLE=1000      idle sessions for the move-time test (0 skips it)
#   BENCH_MIG_WINDOW=3       seconds after each drain/undrain counted as "during migration"
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

TABLES=4
TABLE_SIZE=10000
DB_USER=sb
DB_PASS=sb-pw
DB_NAME=sbtest
MIG_USER=switchyard_migrator
MIG_PASS=mig-pw
TOKEN=bench-token

log() { printf '[bench-migration %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

for tool in sysbench mariadbd mariadb-install-db mariadb curl ss go; do
	command -v "$tool" >/dev/null || die "$tool is not installed (see bench/README.md)"
done

# ---------------------------------------------------------------- cleanup
# Only processes this script started are stopped, by pid, and only while /proc/PID/comm
# still names the binary started (a recycled pid is never touched).
PIDS=()
register() { PIDS+=("$1:$(basename "$2" | cut -c1-15)"); }
ours() { [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] && ! grep -q "^State:[[:space:]]*Z" "/proc/$1/status" 2>/dev/null; }
TMP=""
cleanup() {
	local rc=$? i pid comm
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]%%:*} comm=${PIDS[i]#*:}
		ours "$pid" "$comm" || continue
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do ours "$pid" "$comm" || break; sleep 0.2; done
		ours "$pid" "$comm" && kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	[[ -n "$TMP" && -d "$TMP" ]] && rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/switchyard-bench-mig.XXXXXX)
USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		[[ "$USED_PORTS" == *" $p "* ]] && continue
		if [[ -z "$(ss -Htan "( sport = :$p or dport = :$p )")" ]]; then
			USED_PORTS+="$p "
			printf -v "$1" %s "$p"
			return
		fi
	done
	die "no free port found"
}

log "building helpers"
(cd "$ROOT" && go build -o "$OUT/idleconns" ./bench/idleconns)
SW_BIN=${BENCH_PROXY_BIN:-$OUT/proxy}
if [[ -z "${BENCH_PROXY_BIN:-}" ]]; then
	(cd "$ROOT" && go build -o "$OUT/proxy" ./cmd/proxy)
fi

# ---------------------------------------------------------------- two MariaDB servers
# start_db NAME PORTVAR PIDVAR SOCKVAR
start_db() {
	local name=$1 port dir="$TMP/$1" sock="$TMP/$1.sock" pid
	free_port port
	mariadb-install-db --no-defaults --user=root --datadir="$dir" \
		--auth-root-authentication-method=normal --skip-test-db >"$TMP/$name-install.log" 2>&1 ||
		{ cat "$TMP/$name-install.log"; die "mariadb-install-db failed"; }
	mariadbd --no-defaults --user=root --datadir="$dir" --socket="$sock" \
		--port="$port" --bind-address=127.0.0.1 --pid-file="$TMP/$name.pid" \
		--log-error="$TMP/$name.err" --max-connections=3000 --open-files-limit=10000 \
		--innodb-buffer-pool-size=128M --skip-log-bin --performance-schema=OFF \
		--skip-name-resolve --innodb-flush-log-at-trx-commit=2 >/dev/null 2>&1 &
	pid=$!
	register "$pid" mariadbd
	for i in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.err"; die "mariadbd $name exited"; }
		mariadb --no-defaults -S "$sock" -uroot -N -B -e 'SELECT 1' >/dev/null 2>&1 && break
		((i == 120)) && die "mariadbd $name did not come up"
		sleep 0.5
	done
	mariadb --no-defaults -S "$sock" -uroot -N -B -e "
		CREATE DATABASE $DB_NAME;
		CREATE USER '$DB_USER'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('$DB_PASS');
		GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'%';
		CREATE USER '$MIG_USER'@'%' IDENTIFIED BY '$MIG_PASS';
		GRANT SELECT ON mysql.* TO '$MIG_USER'@'%';"
	sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
		--mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db="$DB_NAME" \
		--tables=$TABLES --table-size=$TABLE_SIZE --threads=$TABLES prepare >"$TMP/$name-prepare.log" 2>&1 ||
		{ cat "$TMP/$name-prepare.log"; die "sysbench prepare on $name failed"; }
	printf -v "$2" %s "$port"
	printf -v "$3" %s "$pid"
}
start_db a A_PORT A_PID
start_db b B_PORT B_PID
log "MariaDB a on 127.0.0.1:$A_PORT, b on 127.0.0.1:$B_PORT"

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
level = "warn"

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
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$SW_BIN" --config "$TMP/switchyard.toml" >"$OUT/migration-switchyard.log" 2>&1 &
SW_PID=$!
register "$SW_PID" "$SW_BIN"
for i in $(seq 60); do
	kill -0 "$SW_PID" 2>/dev/null || { tail -n 20 "$OUT/migration-switchyard.log"; die "switchyard exited"; }
	mariadb --no-defaults -h127.0.0.1 -P"$SW_PORT" -u"$DB_USER" -p"$DB_PASS" "$DB_NAME" \
		--connect-timeout=2 -N -B -e 'SELECT 1' >/dev/null 2>&1 && break
	((i == 60)) && die "switchyard did not come up"
	sleep 0.5
done
log "Switchyard pid $SW_PID on 127.0.0.1:$SW_PORT, API 127.0.0.1:$API_PORT"

API="http://127.0.0.1:$API_PORT"
drain_path="/api/v1/backends/bench/127.0.0.1:$A_PORT/drain"
api() { curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" "$API$2"; }
sessions_on() { # sessions the proxy has on backend 127.0.0.1:$1
	api GET /api/v1/backends | tr -d ' \n' | grep -o "\"id\":\"bench/127.0.0.1:$1\"[^}]*\"sessions\":[0-9]*" |
		grep -o '"sessions":[0-9]*$' | cut -d: -f2
}

# ---------------------------------------------------------------- 1. load while draining
log "sysbench oltp_point_select, $THREADS threads, ${DURATION}s; drain/undrain of a every ${PERIOD}s"
sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$SW_PORT" \
	--mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db="$DB_NAME" \
	--tables=$TABLES --table-size=$TABLE_SIZE --threads="$THREADS" --time="$DURATION" \
	--report-interval=1 --percentile=99 --mysql-ignore-errors="${BENCH_MIG_IGNORE_ERRORS:-all}" run >"$OUT/migration-sysbench.log" 2>&1 &
SB_PID=$!
register "$SB_PID" sysbench
START=$(date +%s)
EVENTS=()
drained=0
# sysbench ends by itself after --time; the loop stops drains then, or at a hard limit.
while kill -0 "$SB_PID" 2>/dev/null && (($(date +%s) - START < DURATION + 30)); do
	sleep "$PERIOD"
	kill -0 "$SB_PID" 2>/dev/null || break
	(($(date +%s) - START >= DURATION)) && continue
	if ((drained)); then
		api DELETE "$drain_path" >/dev/null && drained=0
	else
		api POST "$drain_path?timeout=30s" >/dev/null && drained=1
	fi
	EVENTS+=($(($(date +%s) - START)))
done
if kill -0 "$SB_PID" 2>/dev/null; then
	log "WARNING: sysbench did not finish $((DURATION + 30))s after it started (stuck clients?); stopping it"
	kill -TERM "$SB_PID" 2>/dev/null || true
fi
wait "$SB_PID" || true
((drained)) && api DELETE "$drain_path" >/dev/null || true

MIGRATIONS=$(api GET /api/v1/migrations | tr -d ' \n' | grep -o '"totals":{[^}]*}' || true)

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
		}
		toterr += errs
		if (tps == 0) { idle++; next } # nothing completed: no latency to speak of
		mig = 0
		for (i = 1; i <= n; i++) if (t > ev[i] && t <= ev[i] + window) mig = 1
		if (mig) { m[++nm] = p99 } else { s[++ns] = p99 }
	}
	/ignored errors:/ { ignored = $3; summary = 1 }
	function median(a, k,   i, j, x) {
		if (k == 0) return "n/a"
		for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	function maxof(a, k,   i, x) { x = 0; for (i = 1; i <= k; i++) if (a[i] + 0 > x) x = a[i] + 0; return k ? x : "n/a" }
	END {
		if (summary) printf "client errors (sysbench ignored errors): %s\n", ignored
		else printf "client errors: about %.0f (sum of per-second err/s; sysbench never finished, see bench/.out/migration-sysbench.log)\n", toterr
		if (idle) printf "seconds with no completed query: %d\n", idle
		printf "p99 latency, steady seconds (%d): median %s ms, worst %s ms\n", ns, median(s, ns), maxof(s, ns)
		printf "p99 latency, seconds within %ss after a drain/undrain (%d): median %s ms, worst %s ms\n", window, nm, median(m, nm), maxof(m, nm)
	}' "$OUT/migration-sysbench.log")

# ---------------------------------------------------------------- 2. move 1,000 idle sessions
MOVE_RESULT="skipped"
if ((IDLE_N > 0)); then
	log "opening $IDLE_N idle sessions"
	mkfifo "$TMP/idle.in"
	"$OUT/idleconns" -addr "127.0.0.1:$SW_PORT" -user "$DB_USER" -password "$DB_PASS" -db "$DB_NAME" \
		-n "$IDLE_N" -parallel 32 <"$TMP/idle.in" >"$TMP/idle.log" 2>&1 &
	IDLE_PID=$!
	register "$IDLE_PID" idleconns
	exec 9>"$TMP/idle.in" # holds the sessions open until closed
	for _ in $(seq 240); do
		n=$(( $(sessions_on "$A_PORT" || echo 0) + $(sessions_on "$B_PORT" || echo 0) ))
		((n >= IDLE_N)) && break
		sleep 0.5
	done
	on_a=$(sessions_on "$A_PORT" || echo 0)
	log "$n idle sessions open, $on_a on a; draining a"
	t0=$(date +%s.%N)
	api POST "$drain_path?timeout=300s" >/dev/null
	left=$on_a
	for _ in $(seq 3000); do
		left=$(sessions_on "$A_PORT" || echo "$left")
		((left == 0)) && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	MOVE_RESULT=$(awk -v a="$t0" -v b="$t1" -v n="$on_a" -v left="$left" \
		'BEGIN { printf "%d idle sessions moved off a in %.2f s (%d left)", n - left, b - a, left }')
	api DELETE "$drain_path" >/dev/null || true
	exec 9>&-
fi

{
	echo "Switchyard session migration benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs)"
	echo "sysbench oltp_point_select, $THREADS threads, ${DURATION}s; backend a drained/undrained every ${PERIOD}s at t=${EVENTS[*]}"
	echo "$REPORT"
	echo "migrations counted by the proxy: ${MIGRATIONS:-n/a}"
	echo "move time: $MOVE_RESULT"
} | tee "$OUT/migration.txt"
