#!/usr/bin/env bash
# Runs the named fuzz targets one after another for a duration each (issue 13:
# ten minutes once per target) and keeps what the fuzzer found interesting:
# the generated corpus is copied from the go command's cache into the
# package's testdata/fuzz/<Target>/, where every later `go test` (and the short
# `make fuzz` run in CI) replays it as seed inputs.
#
# usage: scripts/fuzz-long.sh DURATION pkg:Target [pkg:Target ...]
#   e.g. scripts/fuzz-long.sh 10m ./pkg/topology:FuzzTopologyEvents
# FUZZ_PARALLEL sets the number of fuzzing workers (default 1: the machine
# is shared). A summary line per target goes to stdout and to bin/fuzz-long.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=$1; shift
par=${FUZZ_PARALLEL:-1}
mod=$(go list -m)
cache=$(go env GOCACHE)/fuzz
mkdir -p bin
for spec in "$@"; do
  pkg=${spec%%:*}; name=${spec##*:}
  log=bin/fuzz-long.$name.log
  start=$(date -u +%FT%TZ)
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$dur" -parallel "$par" "$pkg" >"$log" 2>&1; then
    echo "FAIL $pkg $name: see $log"; tail -30 "$log"; exit 1
  fi
  src="$cache/$mod/${pkg#./}/$name"
  dst="$pkg/testdata/fuzz/$name"
  mkdir -p "$dst"
  kept=0
  if [ -d "$src" ]; then
    for f in "$src"/*; do
      [ -e "$dst/$(basename "$f")" ] || { cp "$f" "$dst/"; kept=$((kept+1)); }
    done
  fi
  last=$(grep -E 'fuzz: elapsed' "$log" | tail -1)
  line="$start $pkg $name $dur: $last; corpus kept: $kept new file(s), $(ls "$dst" | wc -l) in $dst"
  echo "$line"; echo "$line" >> bin/fuzz-long.txt
done
