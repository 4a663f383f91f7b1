#!/usr/bin/env bash
# The README's main command in its quick form (DEMO_QUICK=1: fewer images and
# epochs) over the binaries already built: every step runs, the coordinator
# holds the runs, and the result lines are printed.
# usage: demo_test.sh BIN_DIR SOURCE_DIR
source "$(dirname "$0")/../e2e/lib.sh"
BUILD=$(cd "$1/.." && pwd)
SRC=$2
DEMO_SKIP_BUILD=1 DEMO_QUICK=1 BUILD_DIR="$BUILD" DEMO_DIR="$TMP/demo" "$SRC/demo.sh" \
  >"$TMP/demo.log" 2>&1 || { tail -60 "$TMP/demo.log"; fail "demo.sh failed"; }
expect_contains "$TMP/demo.log" "== Result (target task, 100 classes, chance 1%)"
expect_contains "$TMP/demo.log" "transferred  test top-1"
expect_contains "$TMP/demo.log" "random base  test top-1"
expect_contains "$TMP/demo.log" "after head: test loss"
for f in runs/transfer/report.json runs/transfer/model.pt runs/source-base/model.pt; do
  [[ -s "$TMP/demo/$f" ]] || fail "the demo did not write $f"
done
echo "PASS"
