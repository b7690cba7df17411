#!/usr/bin/env bash
# Runs each fuzz target for a fixed number of inputs ($1, default 20000x).
# go test -fuzz accepts one target per run, so they are listed here.
# A count, not a duration: with -fuzztime=5s the go command can report
# "context deadline exceeded" as a failure when the deadline lands while a
# worker is busy on a loaded machine (seen in CI), which is not a finding.
set -euo pipefail
t=${1:-20000x}
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '/vendor/' || true)
for f in $targets; do
  pkg=./$(dirname "${f#./}")
  for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    echo "fuzz $pkg $name ($t)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
rm -f /tmp/fuzz.$$.log
