#!/usr/bin/env bash
# A short run of the load generator (bench/coordinator_load) against the real
# coordinator: it plays a 2-rank job (300 epochs of a train and a validation
# split, so 600 events) while 5 watchers follow the run, 2 clients poll status
# and 2 watchers never read until the end. Every watcher, stuck ones
# included, must get all 600 events, every report must be acknowledged, and
# the history must hold the 600 epochs. Prints the coordinator's peak RSS.
# usage: coordinator_load_smoke_test.sh BIN_DIR
source "$(dirname "$0")/lib.sh"
bin="$1"

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 100 --test 20 --classes 10 >/dev/null 2>&1 ||
  fail "make-synthetic-cifar"
launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
  "$bin/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" --dataset "synthetic=$TMP/data" \
  --rank-timeout 0 --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state"

timeout 300 "$bin/coordinator_load" --coordinator "$address" --run smoke --feed-ranks 2 \
  --feed-epochs 300 --feed-steps 1 --watchers 5 --pollers 2 --poll-interval-ms 20 \
  --stuck-watchers 2 --json "$TMP/load.json" >"$TMP/load.log" 2>&1 ||
  { cat "$TMP/load.log"; fail "coordinator_load failed"; }
cat "$TMP/load.json"
/usr/bin/python3 - "$TMP/load.json" <<'PY' || fail "load figures"
import json, sys
r = json.load(open(sys.argv[1]))
events = 300 * 2
assert r["errors"] == 0, r
assert r["reports"] == 2 * events, r                   # 2 ranks x 1 step x 600 groups
assert r["watch_events"] == 5 * events, r              # every watcher saw every event
assert r["watchers_saw_end"] == 5, r
assert r["stuck_events"] == 2 * events, r              # nothing dropped while stuck
assert r["stuck_saw_end"] == 2, r
assert r["polls"] > 0, r
PY

"$bin/coordctl" --coordinator "$address" --retry-for 5 metrics smoke --csv >"$TMP/metrics.csv" ||
  fail "coordctl metrics"
[[ $(grep -c '^load,' "$TMP/metrics.csv") -eq 600 ]] || fail "history lacks epochs"
echo "coordinator peak RSS: $(grep VmHWM "/proc/$coordinator_pid/status")"
stop_coordinator
echo "coordinator load smoke: ok"
