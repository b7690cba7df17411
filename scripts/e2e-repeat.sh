#!/usr/bin/env bash
# Runs the whole end-to-end suite (make e2e) N times in a row and keeps every
# run's log, so that a flake that shows once in ten runs leaves its evidence.
# Usage: scripts/e2e-repeat.sh [N] [FIRST]   (default 10 runs numbered from 1;
# logs in bin/e2e-repeat/). With FIRST > 1 the summary is appended to, so a
# series can be resumed. E2E_REPEAT_FOLLOW=<ref> checks out that ref
# (detached) before each run, so a series in its own worktree follows a
# branch that moves meanwhile; each line names the commit it ran.
# The summary (bin/e2e-repeat/summary.txt) lists each run's result, its time
# and the tests that failed in it.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
first=${2:-1}
out=bin/e2e-repeat
mkdir -p "$out"
[ "$first" -gt 1 ] || : >"$out/summary.txt"
pass=0
for i in $(seq "$first" "$n"); do
	if [ -n "${E2E_REPEAT_FOLLOW:-}" ]; then
		git checkout -q --detach "$E2E_REPEAT_FOLLOW" || { echo "run $i/$n: cannot check out $E2E_REPEAT_FOLLOW" | tee -a "$out/summary.txt"; exit 1; }
	fi
	start=$(date +%s)
	if make e2e >"$out/run-$i.out" 2>&1; then res=PASS; pass=$((pass + 1)); else res=FAIL; fi
	cp bin/e2e.log "$out/run-$i.log" 2>/dev/null || true
	failed=$(grep -E '^\s*--- FAIL' "$out/run-$i.log" 2>/dev/null | awk '{print $3}' | tr '\n' ' ')
	line="run $i/$n: $res in $(($(date +%s) - start)) s at $(git rev-parse --short HEAD) ${failed:+failed: $failed}"
	echo "$line" | tee -a "$out/summary.txt"
done
echo "passed $pass of $((n - first + 1)) (runs $first-$n)" | tee -a "$out/summary.txt"
[ "$pass" -eq $((n - first + 1)) ]
