#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds with
# warnings as errors, and runs the unit and end-to-end tests (make check)
# twice: on the normal build (build/) and on an AddressSanitizer +
# UndefinedBehaviorSanitizer build (build-asan/). --quick runs the normal
# build only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
variants=("" "--sanitize")
[ "${1:-}" = "--quick" ] && variants=("")
status=0 pass=0 fail=0 skip=0
for v in "${variants[@]}"; do
  dir=$(scripts/build.sh $v | tail -n 1)
  echo "== make check in $dir"
  rm -f "$dir"/tests/*/*.trs "$dir"/tests/*/*.log
  make -s -C "$dir" -j2 check || status=1
  trs=$(ls "$dir"/tests/*/*.trs 2>/dev/null || true)
  if [ -n "$trs" ]; then
    pass=$((pass + $(cat $trs | grep -c '^:test-result: PASS' || true)))
    fail=$((fail + $(cat $trs | grep -c -E '^:test-result: (FAIL|ERROR|XPASS)' || true)))
    skip=$((skip + $(cat $trs | grep -c '^:test-result: SKIP' || true)))
  fi
  if [ "$status" -ne 0 ]; then
    for f in "$dir"/tests/*/*.log; do
      grep -q -E '^(not ok|ERROR|FAIL)' "$f" 2>/dev/null && { echo "=== $f"; tail -n 80 "$f"; }
    done
  fi
done
# The summary line CI reads.
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
