#!/usr/bin/env bash
# Runs the whole end-to-end suite (make e2e) N times in a row and keeps every
# run's log, so that a flake that shows once in ten runs leaves its evidence.
# Usage: scripts/e2e-repeat.sh [N]   (default 10; logs in bin/e2e-repeat/)
# The summary (bin/e2e-repeat/summary.txt) lists each run's result, its time
# and the tests that failed in it.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
out=bin/e2e-repeat
mkdir -p "$out"
: >"$out/summary.txt"
pass=0
for i in $(seq 1 "$n"); do
	start=$(date +%s)
	if make e2e >"$out/run-$i.out" 2>&1; then res=PASS; pass=$((pass + 1)); else res=FAIL; fi
	cp bin/e2e.log "$out/run-$i.log" 2>/dev/null || true
	failed=$(grep -E '^\s*--- FAIL' "$out/run-$i.log" 2>/dev/null | awk '{print $3}' | tr '\n' ' ')
	line="run $i/$n: $res in $(($(date +%s) - start)) s at $(git rev-parse --short HEAD) ${failed:+failed: $failed}"
	echo "$line" | tee -a "$out/summary.txt"
done
echo "passed $pass of $n" | tee -a "$out/summary.txt"
[ "$pass" -eq "$n" ]
