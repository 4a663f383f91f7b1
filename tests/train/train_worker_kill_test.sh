#!/usr/bin/env bash
# A worker killed: rank 1 of a 2-rank job is SIGKILLed in the middle of head
# epoch 2, after epoch 1's checkpoint was stored. Asserts: mpirun exits
# non-zero (within $XFER_TEST_TIMEOUT s, default 120), its output names rank 1, and no trainer process of
# the job is left; the run is FAILED naming rank 1 within the coordinator's
# rank timeout (--rank-timeout 10) plus a margin (by rank 0, which sees rank
# 1's process gone, or by that timeout, whichever comes first); `--resume latest` resumes
# after epoch 1 (at most one epoch of work lost) and completes the run; the
# run's events say failed, then resumed; the metrics history has every
# (phase, epoch, split) exactly once, each train epoch with all its samples.
# Also a hung rank (SIGSTOP): nothing but the coordinator notices (its peer's
# process still exists, so the collective waits); the run is FAILED naming
# it, and the other rank, told so by its next heartbeat, ends the job.
# usage: train_worker_kill_test.sh BIN_DIR MPIEXEC
source "$(dirname "$0")/train_lib.sh"

RANK_TIMEOUT=10
# Deadlines, generous for a busy machine (docs/testing.md) and still far below
# the 600 s collective timeout that would end a job nobody told.
BOUND=$XFER_TEST_TIMEOUT   # seconds for every rank to be gone after the kill
MARGIN=$XFER_TEST_TIMEOUT  # seconds past the rank timeout for the coordinator to notice
launcher=""

# rank_pid RUN_DIR RANK: the process of that MPI rank among the trainers of RUN_DIR.
rank_pid() {
  local p
  for p in $(test_trainers "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -cx "OMPI_COMM_WORLD_RANK=$2" >/dev/null; then
      echo "$p"
    fi
  done
}

# wait_for_line LOG REGEX: until LOG has a line matching REGEX; fails when the
# launcher ends first.
wait_for_line() {
  wait_until --pid "$launcher" --show "$1" "a line matching '$2' in $1" -- grep -Eq "$2" "$1"
}

# no_trainers_left [TEXT]: no trainer process of this test (or of TEXT) runs.
no_trainers_left() { [[ -z "$(test_trainers "$@")" ]]; }

# wait_for_launcher SECONDS: the launcher must end within SECONDS of $since; sets $rc.
wait_for_launcher() {
  while kill -0 "$launcher" 2>/dev/null && ((SECONDS - since <= $1)); do sleep 0.2; done
  kill -0 "$launcher" 2>/dev/null && return 1
  rc=0
  wait "$launcher" || rc=$?
  launcher=""
}

# Never leave a process behind, whatever failed.
cleanup_worker_kill() {
  [[ -n "$launcher" ]] && kill -KILL "$launcher" 2>/dev/null || true
  local p
  for p in $(test_trainers); do kill -KILL "$p" 2>/dev/null || true; done
}
at_exit cleanup_worker_kill

make_data 6000 200 6
launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
  "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" --dataset "shapes=$TMP/data" \
  --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state" --rank-timeout "$RANK_TIMEOUT"

# 4800 train samples (train[20%:]), global batch 2 x 16: 150 steps per epoch, 3 epochs.
# Heartbeats every 0.5 s: rank 0 outlives rank 1 by about a second (it gives a peer 1 s in a
# collective before it checks whether the peer's process still exists, then aborts), so rank
# 1's last heartbeat is the older one and the coordinator names rank 1.
job=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 3
     --finetune-epochs 0 --seed 7 --heartbeat-every 0.5)
common=(--run-name wk --run-dir "$TMP/run" "${job[@]}")
planned_steps=450

"$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN/trainer" train --coordinator "$address" \
  --threads 1 --progress-every 0 "${common[@]}" >"$TMP/killed.log" 2>&1 &
launcher=$!

# Wait for epoch 1's checkpoint, then for a step of epoch 2.
epoch1_stored() {
  ctl --json checkpoints latest wk >"$TMP/latest.json" 2>/dev/null &&
    grep -Eq '"epoch": ?1,?$' "$TMP/latest.json"
}
wait_until --pid "$launcher" --show "$TMP/killed.log" --show "$TMP/latest.json" \
  "the checkpoint of epoch 1" -- epoch1_stored
wait_for_line "$TMP/killed.log" "head 2/3 +3/150"

victim=$(rank_pid "$TMP/run" 1)
[[ -n "$victim" ]] || { cat "$TMP/killed.log"; fail "rank 1's process was not found"; }
echo "SIGKILL rank 1 (pid $victim)"
kill -KILL "$victim"
killed_at=$SECONDS
since=$killed_at

# Every rank is gone within the bound, and mpirun fails naming rank 1.
wait_for_launcher "$BOUND" ||
  { cat "$TMP/killed.log"; fail "the job was still running $BOUND s after rank 1 was killed"; }
echo "mpirun exited $rc after $((SECONDS - killed_at)) s"
[[ $rc -ne 0 ]] || { cat "$TMP/killed.log"; fail "mpirun exited 0 after rank 1 was killed"; }
grep -Eq "rank 1([^0-9/]|$)" "$TMP/killed.log" ||
  { cat "$TMP/killed.log"; fail "the job's output does not name rank 1"; }
wait_until "no trainer process left after the job ended" -- \
  no_trainers_left

# The coordinator marks the run FAILED, naming rank 1, once its timeout passes.
run_failed() {
  ctl --json status "$1" >"$TMP/failed.json" 2>/dev/null &&
    grep -q '"state": "failed"' "$TMP/failed.json"
}
wait_until --timeout $((RANK_TIMEOUT + MARGIN - (SECONDS - killed_at))) \
  --show "$TMP/failed.json" --show "$TMP/coordinator.log" "run wk FAILED after the kill" -- \
  run_failed wk
echo "run wk FAILED $((SECONDS - killed_at)) s after the kill"
# Who says it first is a race, and either names rank 1: rank 0, when it sees
# rank 1's process gone (about a second into a collective) and ends the run
# before mpirun kills it; else the coordinator, when rank 1's heartbeats stop
# for the rank timeout. (The hung rank below leaves the coordinator alone to
# notice.)
ctl status wk >"$TMP/failed.txt" || fail "coordctl status wk"
if grep -q "rank 1 of 2 not heard from for" "$TMP/failed.json"; then
  echo "the coordinator's rank timeout failed the run"
  expect_contains "$TMP/coordinator.log" "marked FAILED: rank 1 of 2 not heard from"
  expect_contains "$TMP/failed.txt" "rank 1 of 2 not heard from for"
else
  echo "rank 0 failed the run"
  expect_contains "$TMP/failed.json" "rank 1 (pid $victim on "
  expect_contains "$TMP/failed.json" "is no longer running (killed or crashed)"
  expect_contains "$TMP/failed.txt" "rank 1 (pid $victim on "
fi

# --resume latest continues after epoch 1 and completes the run.
train 2 "$TMP/resume.log" "${common[@]}" --resume latest ||
  { cat "$TMP/resume.log"; fail "the resumed run failed"; }
expect_contains "$TMP/resume.log" "resuming after head epoch 1"
expect_contains "$TMP/resume.log" "finished: $planned_steps optimizer steps in total (300 this attempt)"

ctl --json status wk >"$TMP/done.json" || fail "coordctl status wk"
ctl --json metrics wk >"$TMP/metrics.json" || fail "coordctl metrics wk"
py - "$TMP/done.json" "$TMP/metrics.json" <<'PY' || fail "run wk's status or metrics are wrong (above)"
import collections, json, sys
status = json.load(open(sys.argv[1]))
run = [r for r in status["runs"] if r["name"] == "wk"][0]
events = run["events"]
problems = []
if run["state"] != "completed" or run["attempt"] != 2:
    problems.append("state %s attempt %s (expected completed, 2)" % (run["state"], run["attempt"]))
failed = [i for i, e in enumerate(events) if e.startswith("failed: rank 1 of 2 not heard from")]
resumed = [i for i, e in enumerate(events)
           if e.startswith("resumed (attempt 2) from state RUN_STATE_FAILED")]
if not failed or not resumed or failed[0] > resumed[0]:
    problems.append("events do not say failed, then resumed: %s" % events)
epochs = json.load(open(sys.argv[2]))["epochs"]
keys = collections.Counter((e["phase"], e["epoch"], e["split"]) for e in epochs)
dupes = [k for k, n in keys.items() if n > 1]
train = sorted((e["phase"], e["epoch"], e["samples"]) for e in epochs if e["split"] == "train")
val = sorted((e["phase"], e["epoch"]) for e in epochs if e["split"] == "validation")
if dupes:
    problems.append("counted twice: %s" % dupes)
if train != [("head", 1, 4800), ("head", 2, 4800), ("head", 3, 4800)]:
    problems.append("train epochs: %s" % train)
if val != [("head", 1), ("head", 2), ("head", 3)]:
    problems.append("validation epochs: %s" % val)
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# A hung rank: SIGSTOP rank 1 of a new run. The run is FAILED naming it, and rank 0's next
# heartbeat ends the job (MPI_Abort) long before its collective timeout (600 s).
"$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN/trainer" train --coordinator "$address" \
  --threads 1 --progress-every 0 --run-name hung --run-dir "$TMP/hung" "${job[@]}" \
  >"$TMP/hung.log" 2>&1 &
launcher=$!
wait_for_line "$TMP/hung.log" "head 1/3 +3/150"
victim=$(rank_pid "$TMP/hung" 1)
[[ -n "$victim" ]] || { cat "$TMP/hung.log"; fail "rank 1's process of run hung was not found"; }
echo "SIGSTOP rank 1 (pid $victim)"
kill -STOP "$victim"
since=$SECONDS
wait_for_launcher $((RANK_TIMEOUT + MARGIN)) ||
  { cat "$TMP/hung.log"; fail "the job with a stopped rank ran on $((RANK_TIMEOUT + MARGIN)) s"; }
echo "mpirun exited $rc $((SECONDS - since)) s after the stop"
[[ $rc -ne 0 ]] || { cat "$TMP/hung.log"; fail "mpirun exited 0 after the run was failed"; }
expect_contains "$TMP/hung.log" \
  "the coordinator marked run 'hung' (attempt 1) FAILED: rank 1 of 2 not heard from for"
wait_until "no trainer process of run hung left after the job ended" -- \
  no_trainers_left "$TMP/hung"
ctl --json status hung >"$TMP/hung.json" || fail "coordctl status hung"
expect_contains "$TMP/hung.json" '"state": "failed"'
echo "PASS"
