#!/usr/bin/env bash
# Runs each fuzz target for a short time ($1, default 5s). go test -fuzz
# accepts one target per run, so they are listed here.
set -euo pipefail
t=${1:-5s}
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '/vendor/' || true)
for f in $targets; do
  pkg=./$(dirname "${f#./}")
  for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    echo "fuzz $pkg $name ($t)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
rm -f /tmp/fuzz.$$.log
