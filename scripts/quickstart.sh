#!/usr/bin/env bash
# Quick start: runs Switchyard in front of a throwaway local MariaDB.
#   - installs MariaDB from Debian's packages if it is missing (needs root or sudo)
#   - starts mariadbd on 127.0.0.1:${BACKEND_PORT:-3307} with its data under .quickstart/
#   - creates the user app / app-pw and the database app
#   - runs the proxy on 127.0.0.1:${PROXY_PORT:-6000} in the foreground (Ctrl-C stops both)
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND_PORT=${BACKEND_PORT:-3307}
PROXY_PORT=${PROXY_PORT:-6000}
dir=$PWD/.quickstart
bash scripts/install-deps.sh mariadb
go build -o bin/proxy ./cmd/proxy

mkdir -p "$dir"
asroot=()
[ "$(id -u)" -eq 0 ] && asroot=(--user=root)
if [ ! -d "$dir/data/mysql" ]; then
  echo "initialising MariaDB data directory in $dir/data"
  mariadb-install-db --no-defaults "${asroot[@]}" --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
fi
mariadbd --no-defaults "${asroot[@]}" --datadir="$dir/data" --bind-address=127.0.0.1 \
  --port="$BACKEND_PORT" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
  --skip-log-bin --innodb-buffer-pool-size=64M --local-infile=1 >"$dir/mariadb.log" 2>&1 &
mariadb_pid=$!
trap 'kill $mariadb_pid 2>/dev/null; wait $mariadb_pid 2>/dev/null' EXIT
for _ in $(seq 1 60); do
  mariadb --no-defaults -S "$dir/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.5
done
mariadb --no-defaults -S "$dir/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS app;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-pw';
GRANT ALL ON app.* TO 'app'@'%';
SQL

cat >"$dir/proxy.toml" <<TOML
[proxy]
addr = "127.0.0.1:$PROXY_PORT"

[log]
level = "info"

[[cluster]]
name = "local"
instances = ["127.0.0.1:$BACKEND_PORT"]
TOML
cat <<MSG

  MariaDB  127.0.0.1:$BACKEND_PORT   (data: $dir/data)
  Switchyard 127.0.0.1:$PROXY_PORT   (config: $dir/proxy.toml)

  Connect through the proxy:
    mariadb -h 127.0.0.1 -P $PROXY_PORT -u app -papp-pw app

  Ctrl-C stops the proxy and MariaDB.

MSG
bin/proxy --config "$dir/proxy.toml"
