#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME (default 5s) each.
# `go test -fuzz` takes one target of one package at a time.
#
# Go before 1.27 may fail a target with a bare "context deadline exceeded"
# when -fuzztime runs out while a worker is mid-call (golang/go#75804),
# more often on a loaded machine. That is no finding: a real one prints
# "Failing input written to" and saves the input under testdata/fuzz. Such
# a run is repeated once; any other failure fails at once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${FUZZTIME:-5s}
count=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# deadline_only says whether the failed run in $log is the coordinator's
# deadline race rather than a finding.
deadline_only() {
	grep -q 'context deadline exceeded' "$log" &&
		! grep -qE 'Failing input written to|panic:|_test\.go:[0-9]+:' "$log"
}

while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	for try in 1 2; do
		echo "Fuzzing $name in $pkg for $fuzztime"
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; then
			break
		fi
		if [ "$try" = 1 ] && deadline_only; then
			echo "The fuzzing engine stopped on its own deadline race (golang/go#75804), not a finding; running $name again"
			continue
		fi
		exit 1
	done
	count=$((count + 1))
done < <(git ls-files '*_test.go' | xargs grep -oE '^func Fuzz[A-Za-z0-9_]+' | sed 's/func //' | sort)
echo "Ran $count fuzz targets"
