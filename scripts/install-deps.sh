#!/usr/bin/env bash
# Installs the Debian packages the tests need. Idempotent: does nothing when
# everything is there. Needs root (or sudo) only when something is missing.
# `install-deps.sh mariadb` installs only MariaDB (make run, make playground).
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# Installed without Recommends: prometheus would pull in (and start) node-exporter,
# and chromium (for the status page test, run headless) printer and desktop tools.
lean=()
if [ "${1:-all}" != mariadb ]; then
  # The fleet tests run etcd as a separate process they can stop and pause.
  command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
  # MariaDB's C API test program (mariadb-client-test), run directly and
  # through the proxy by test/e2e/clientsuite_test.go.
  command -v mariadb-client-test >/dev/null 2>&1 || lean+=(mariadb-test)
  # The link-fault scenarios drop packets with nftables inside network
  # namespaces of their own (ip, from iproute2).
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
  # The capture and replay acceptance test runs sysbench oltp_read_write
  # (test/e2e/replay_sysbench_test.go; mariadb-dump comes with mariadb-client).
  command -v sysbench >/dev/null 2>&1 || lean+=(sysbench)
  command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || lean+=(prometheus)
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || lean+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]} ${lean[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian starts the service on install; the tests run their own servers.
[ ${#need[@]} -eq 0 ] || $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
[ ${#lean[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
