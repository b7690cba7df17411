# shellcheck shell=bash
# bench/lib.sh: the set-up that bench/run.sh and bench/migration.sh share. It is sourced, never
# run: set BENCH_DIR, ROOT, OUT and LOG_TAG first. Sourcing it installs the EXIT trap that
# stops every process registered with `register` and removes $TMP.
#
# What it gives:
#   log / die                          messages tagged with LOG_TAG
#   register / unregister / ours       processes to stop on exit (by pid, never by name)
#   bench_tmp PREFIX                   creates $OUT and the scratch directory $TMP
#   ensure_tools [PACKAGE...]          installs sysbench, MariaDB, ss, taskset (and PACKAGEs)
#   free_port VAR                      a free TCP port on 127.0.0.1, below the ephemeral range
#   start_mariadb NAME MAXCONN POOL    a throwaway MariaDB with the sysbench user and tables;
#                                      sets MDB_PORT, MDB_PID, MDB_SOCK
#   mdb_sql SOCK SQL                   runs SQL as root over the socket
#   build_proxy                        builds ./cmd/proxy into $OUT/proxy unless BENCH_PROXY_BIN
#   start_proxy VAR CONFIG LOGFILE [BIN] starts BIN (default $SW_BIN) with PROXY_ARGS, its pid into VAR
#   wait_sql PORT PID                  waits until a MySQL login through PORT works
#   cpu_ticks PID / cpu_sys_ticks PID / cpu_sample / rss_kb PID   /proc readings

TABLES=4
TABLE_SIZE=10000
DB_USER=sb
DB_PASS=sb-pw
DB_NAME=sbtest
SB_CONN=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user="$DB_USER"
	--mysql-password="$DB_PASS" --mysql-db="$DB_NAME")
SB_DATA=(--tables=$TABLES --table-size=$TABLE_SIZE)
# Quoted: unquoted, the "}" of "{config}" would end the expansion and append a "}" to any
# BENCH_PROXY_ARGS given (e.g. a --cpuprofile path).
PROXY_ARGS=${BENCH_PROXY_ARGS:-"--config {config}"}
SW_BIN=${BENCH_PROXY_BIN:-$OUT/proxy}

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=() # "pid:comm" of started processes, stopped in reverse order on exit
# register PID BINARY: remember a process we started; cleanup only signals it while its
# /proc/PID/comm still names BINARY, so a recycled pid is never touched.
register() { PIDS+=("$1:$(basename "$2" | cut -c1-15)"); }
unregister() {
	local i
	for i in "${!PIDS[@]}"; do [[ "${PIDS[i]%%:*}" == "$1" ]] && unset "PIDS[i]"; done
	PIDS=("${PIDS[@]}")
}
ours() { # alive (not a zombie) and still running BINARY
	[[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] && ! grep -q "^State:[[:space:]]*Z" "/proc/$1/status" 2>/dev/null
}
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

bench_tmp() {
	mkdir -p "$OUT"
	TMP=$(mktemp -d "/tmp/$1.XXXXXX")
}

# ---------------------------------------------------------------- tools
ensure_tools() {
	local need=("$@")
	command -v sysbench >/dev/null || need+=(sysbench)
	{ command -v mariadbd && command -v mariadb-install-db && command -v mariadb; } >/dev/null || need+=(mariadb-server mariadb-client)
	command -v taskset >/dev/null || need+=(util-linux)
	command -v ss >/dev/null || need+=(iproute2)
	command -v curl >/dev/null || need+=(curl)
	if ((${#need[@]})); then
		log "installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" ||
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"; }
	fi
	command -v go >/dev/null || die "go is not installed"
	# mariadb-server may auto-start a system mysqld after a fresh install; this harness never
	# uses or stops it: it runs its own servers on free ports with throwaway datadirs.
	FD_HARD=$(ulimit -Hn)
	[[ "$FD_HARD" == unlimited ]] && FD_HARD=1048576
	ulimit -n "$FD_HARD" 2>/dev/null || true
}

# Free TCP port below the ephemeral range, so the thousands of client-side sockets of
# the idle tests can never take it between our check and the server's bind.
USED_PORTS=" "
# free_port VAR: sets VAR (not a subshell, so that USED_PORTS remembers the ports handed
# out before their servers bind).
# toml_loops VALUE: proxy.event-loops as TOML, a number bare and "auto" quoted.
toml_loops() {
	if [[ "$1" =~ ^[0-9]+$ ]]; then echo "$1"; else echo "\"$1\""; fi
}

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

# ---------------------------------------------------------------- MariaDB
mdb_sql() { mariadb --no-defaults -S "$1" -uroot -N -B -e "$2"; }

# start_mariadb NAME MAXCONN POOL [EXTRA_SQL]: initialises $TMP/NAME, starts mariadbd on a
# free port, creates the sysbench database and user (mysql_native_password), runs
# EXTRA_SQL as root, then sysbench prepare and prewarm. Sets MDB_PORT, MDB_PID, MDB_SOCK.
start_mariadb() {
	local name=$1 maxconn=$2 pool=$3 extra=${4:-} dir="$TMP/$1" sock="$TMP/$1.sock" port pid
	free_port port
	log "MariaDB $name: initialising $dir"
	mariadb-install-db --no-defaults --user=root --datadir="$dir" \
		--auth-root-authentication-method=normal --skip-test-db >"$TMP/$name-install.log" 2>&1 ||
		{ cat "$TMP/$name-install.log"; die "mariadb-install-db failed"; }
	mariadbd --no-defaults --user=root --datadir="$dir" --socket="$sock" \
		--port="$port" --bind-address=127.0.0.1 --pid-file="$TMP/$name.pid" \
		--log-error="$TMP/$name.err" --max-connections="$maxconn" \
		--open-files-limit=$((maxconn * 3 + 2000)) --table-open-cache=400 \
		--innodb-buffer-pool-size="$pool" --skip-log-bin --performance-schema=OFF \
		--skip-name-resolve --innodb-flush-log-at-trx-commit=2 >/dev/null 2>&1 &
	pid=$!
	register "$pid" mariadbd
	for i in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.err"; die "mariadbd $name exited"; }
		mdb_sql "$sock" 'SELECT 1' >/dev/null 2>&1 && break
		((i == 120)) && { cat "$TMP/$name.err"; die "mariadbd $name did not come up"; }
		sleep 0.5
	done
	mdb_sql "$sock" "CREATE DATABASE $DB_NAME;
		CREATE USER '$DB_USER'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('$DB_PASS');
		GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'%';
		$extra"
	local got
	got=$(mdb_sql "$sock" 'SELECT @@max_connections')
	((got >= maxconn)) || log "WARNING: MariaDB $name max_connections is $got (wanted $maxconn)"
	log "MariaDB $name: pid $pid on 127.0.0.1:$port; sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
	sysbench oltp_read_only "${SB_CONN[@]}" --mysql-port="$port" "${SB_DATA[@]}" --threads=$TABLES prepare >"$TMP/$name-prepare.log" 2>&1 ||
		{ cat "$TMP/$name-prepare.log"; die "sysbench prepare on $name failed"; }
	sysbench oltp_read_only "${SB_CONN[@]}" --mysql-port="$port" "${SB_DATA[@]}" --threads=$TABLES prewarm >>"$TMP/$name-prepare.log" 2>&1 || true
	MDB_PORT=$port MDB_PID=$pid MDB_SOCK=$sock
}

# ---------------------------------------------------------------- Switchyard
# build_proxy: builds ./cmd/proxy into $OUT/proxy (errors in $OUT/proxy-build.log) unless
# BENCH_PROXY_BIN names a binary. Fails when there is no binary to run.
build_proxy() {
	if [[ -z "${BENCH_PROXY_BIN:-}" ]]; then
		log "building Switchyard (go build -o bench/.out/proxy ./cmd/proxy)"
		rm -f "$OUT/proxy"
		(cd "$ROOT" && go build -o "$OUT/proxy" ./cmd/proxy) >"$OUT/proxy-build.log" 2>&1 || return 1
	fi
	[[ -x "$SW_BIN" ]]
}

# start_proxy VAR CONFIG LOGFILE [BINARY]: starts BINARY (default $SW_BIN) with PROXY_ARGS
# ({config} replaced by CONFIG), registers it and stores its pid in VAR.
start_proxy() {
	local pid bin=${4:-$SW_BIN}
	# shellcheck disable=SC2086 # PROXY_ARGS is a word list by design
	"$bin" ${PROXY_ARGS//\{config\}/$2} >"$3" 2>&1 &
	pid=$!
	register "$pid" "$bin"
	printf -v "$1" %s "$pid"
}

# wait_sql PORT PID: a MySQL login through PORT works (the process PID still runs).
wait_sql() {
	for _ in $(seq 60); do
		kill -0 "$2" 2>/dev/null || return 1
		mariadb --no-defaults -h127.0.0.1 -P"$1" -u"$DB_USER" -p"$DB_PASS" "$DB_NAME" \
			--connect-timeout=2 -N -B -e 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	return 1
}

# ---------------------------------------------------------------- /proc readings
CLK_TCK=$(getconf CLK_TCK)
# stat_ticks PID AWK-EXPR: fields of /proc/PID/stat, numbered from the state after the command
# name (which may contain spaces): utime is $12, stime $13, in clock ticks.
stat_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	s=${s##*) }
	awk "{ print $2 }" <<<"$s"
}
# cpu_ticks PID: utime+stime of the whole process (all threads).
cpu_ticks() { stat_ticks "$1" '$12 + $13'; }
# cpu_sys_ticks PID: "utime+stime stime" from one reading (stime: time in the kernel, system
# calls and what they run).
cpu_sys_ticks() { stat_ticks "$1" '$12 + $13, $13'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# cpu_sample: "busy steal total" jiffies summed over all CPUs (/proc/stat; busy = user +
# nice + system + irq + softirq; guest time is already inside user).
cpu_sample() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
