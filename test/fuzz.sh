#!/bin/sh
# Runs every fuzz target of the module for a fixed time each (default 10s):
#   test/fuzz.sh 10m     # longer, e.g. before a release
# A crasher is written to testdata/fuzz/ by Go and then fails `go test`
# as a regression test until fixed: commit it with the fix.
set -eu
cd "$(dirname "$0")/.."
t=${1:-10s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 5s "$pkg" >/tmp/greyd-fuzz.$$ 2>&1 || {
			cat /tmp/greyd-fuzz.$$; rm -f /tmp/greyd-fuzz.$$; exit 1; }
	done
done
rm -f /tmp/greyd-fuzz.$$
