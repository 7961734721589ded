#!/usr/bin/env bash
# progress.sh WHAT COMMAND [ARG...] runs COMMAND and, every 15 seconds while
# it runs, says that WHAT is still under way ("  still compiling the
# playground (45s so far)"), so a long compilation (the first `make dev`
# compiles for minutes) never looks hung. The caller says what starts. It
# exits with COMMAND's status.
set -euo pipefail

what=$1
shift
every=${HOOKLINE_PROGRESS_INTERVAL:-15}
"$@" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM
start=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
	for ((i = 0; i < every * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break 2
		sleep 0.1
	done
	echo "  still $what ($((SECONDS - start))s so far)" >&2
done
wait "$pid"
