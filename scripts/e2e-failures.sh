#!/usr/bin/env bash
# Prints what each failed test wrote, from a `go test -v` log (default
# bin/e2e.log): its assertion messages and the log tails the tests print on
# failure. `make e2e` filters the live output down to test names, so without
# this a failed run shows "--- FAIL: TestFleet" and no reason.
#
# Output is attributed by the "=== RUN/CONT/NAME" markers go test -v prints
# whenever the test producing output changes. A test's output longer than
# MAX lines is cut in the middle (the head holds the first failure, the tail
# the log dumps printed at cleanup).
set -euo pipefail
log=${1:-bin/e2e.log}
max=${MAX:-300}
head=${HEAD:-120}
[ -f "$log" ] || { echo "e2e-failures: no log at $log" >&2; exit 1; }
awk -v max="$max" -v head="$head" -v logname="$log" '
/^=== (RUN|CONT|NAME|PAUSE) / {
	cur = $3
	if (!(cur in n)) { order[++k] = cur; n[cur] = 0 }
	next
}
/^ *--- (FAIL|PASS|SKIP): / {
	if ($2 == "FAIL:") { failed[$3] = 1; reason[$3] = $0 }
	next
}
/^(PASS|FAIL|ok  |FAIL\t)/ { next }
{ if (cur != "") lines[cur, ++n[cur]] = $0 }
END {
	shown = 0
	for (i = 1; i <= k; i++) {
		t = order[i]
		if (!(t in failed) || n[t] == 0) continue
		shown++
		print ""
		print "======== " t ": output (" n[t] " lines; all of it in " logname ")"
		if (n[t] <= max) {
			for (j = 1; j <= n[t]; j++) print lines[t, j]
		} else {
			for (j = 1; j <= head; j++) print lines[t, j]
			print "    [... " (n[t] - max) " lines left out ...]"
			for (j = n[t] - (max - head) + 1; j <= n[t]; j++) print lines[t, j]
		}
	}
	if (shown == 0) {
		print ""
		print "no failed test wrote any output; the end of " logname ":"
	}
	exit (shown == 0 ? 3 : 0)
}' "$log" || { [ $? -eq 3 ] && tail -n 40 "$log"; }
