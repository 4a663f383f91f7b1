#!/usr/bin/env bash
# Runs one GoogleTest suite for ctest: BINARY --gtest_filter=... (see
# list_suites.cmake). Its output passes through unchanged. Exits with the
# binary's status, except 77 (ctest's "skipped") when no case ran to a pass or
# a failure because every one called GTEST_SKIP.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [[ $rc -eq 0 ]] && grep -c '^\[  SKIPPED \]' "$log" >/dev/null &&
  grep -c '^\[  PASSED  \] 0 tests\.' "$log" >/dev/null; then
  exit 77
fi
exit "$rc"
