#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds with
# warnings as errors, and runs the unit and end-to-end tests (make check).
# With --sanitize, builds and runs them under AddressSanitizer and
# UndefinedBehaviorSanitizer instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
extra=()
[ "${1:-}" = "--sanitize" ] && extra=(--enable-sanitizers)
scripts/build.sh "${extra[@]}"
status=0
make -s -j2 check || status=$?
# The summary line CI reads, from automake's per-test results.
pass=$(cat tests/unit/*.trs tests/e2e/*.trs 2>/dev/null | grep -c '^:test-result: PASS' || true)
fail=$(cat tests/unit/*.trs tests/e2e/*.trs 2>/dev/null | grep -c -E '^:test-result: (FAIL|ERROR|XPASS)' || true)
skip=$(cat tests/unit/*.trs tests/e2e/*.trs 2>/dev/null | grep -c '^:test-result: SKIP' || true)
if [ "$status" -ne 0 ]; then
  for f in tests/unit/*.log tests/e2e/*.log; do
    grep -q -E '^(not ok|ERROR|FAIL)' "$f" 2>/dev/null && { echo "=== $f"; tail -n 60 "$f"; }
  done
fi
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
