#!/usr/bin/env bash
# A small real run (2 ranks under mpirun) followed by `coordctl watch` on a
# pseudo-terminal: the ranks' reports carry the step within the epoch and the
# planned steps, so the live view ends showing each rank's last evaluation
# as k/k and the run COMPLETED (exit 0). The trainer runs with
# --progress tty: its log holds the progress line redrawn with carriage
# returns and erased before each epoch summary, which starts a line.
# usage: train_watch_test.sh BIN_DIR MPIEXEC SOURCE_DIR
source "$(dirname "$0")/train_lib.sh"
train_pid=""
watch_pid=""
stopped=""
at_exit '[[ -n "$train_pid" ]] && kill "$train_pid" 2>/dev/null'
at_exit '[[ -n "$watch_pid" ]] && kill "$watch_pid" 2>/dev/null'
at_exit '[[ -n "$stopped" ]] && kill -CONT $stopped 2>/dev/null'

make_data 320 64 7
start_coordinator "shapes=$TMP/data"
# train[20%:] = 256 samples, global batch 2 x 16: 8 steps per epoch.
train 2 "$TMP/train.log" --run-name tty --dataset shapes --run-dir "$TMP/run" --num-classes 10 \
  --image-size 32 --batch-size 16 --head-epochs 2 --finetune-epochs 0 --report-every 1 \
  --seed 3 --progress tty --test-step-delay-ms 250 &
train_pid=$!
run_started() { ctl status tty >/dev/null 2>&1; }
wait_until --pid "$train_pid" --show "$TMP/train.log" "run tty at the coordinator" -- run_started

py "$SRC/tests/coordinator/run_in_pty.py" --out "$TMP/watch.raw" --columns 130 \
  --timeout "$((5 * XFER_TEST_TIMEOUT))" -- \
  "$BIN/coordctl" --coordinator "$address" --retry-for 5 watch tty --interval 0.3 &
watch_pid=$!

# frames: how many frames the live view has drawn so far.
frames() { { grep -aoF $'\x1b[H' "$TMP/watch.raw" 2>/dev/null || true; } | wc -l; }
frames_at_least() { (($(frames) >= $1)); }
# saw_train_step: some frame shows a rank at a train step out of the 8 planned.
# grep -c, not -q: -q stops reading at the first match, sed then dies of
# SIGPIPE on a long screen, and pipefail turns a match into a failure.
saw_train_step() {
  sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$TMP/watch.raw" | grep -acE 'train +[1-8]/8 ' >/dev/null
}
mid_epoch() { grep -aqE "head $1/2 [1-7]/8 \[" "$TMP/train.log"; }

# While it trains, a frame must show a train step out of the 8 planned.
# Events, not timing: once rank 0 has logged a train step of epoch E short of
# the last, the ranks are stopped (SIGSTOP) until the view has drawn two more
# frames, then go on (SIGCONT). Those frames show what the ranks reported
# last; had they run past the epoch's train steps meanwhile, epoch 2 is tried.
# Each step sleeps 250 ms (--test-step-delay-ms), so the ranks are still
# training when stopped; a rank that has exited all the same (a very slow
# stop) sends the test on to epoch 2, never to a failed kill.
wait_until --pid "$watch_pid" --show "$TMP/watch.raw" "the first frame of the watch" -- frames_at_least 1
for epoch in 1 2; do
  wait_until --pid "$train_pid" --show "$TMP/train.log" "a train step of head epoch $epoch" -- \
    mid_epoch "$epoch"
  stopped=$(test_trainers "$TMP/run" | tr '\n' ' ')
  [[ -n "$stopped" ]] || break
  if ! kill -STOP $stopped 2>/dev/null; then
    kill -CONT $stopped 2>/dev/null || true
    stopped=""
    echo "a rank exited before it could be stopped in epoch $epoch; trying the next epoch"
    continue
  fi
  n=$(frames)
  wait_until --pid "$watch_pid" --show "$TMP/watch.raw" "two frames with the ranks stopped" -- \
    frames_at_least $((n + 2))
  kill -CONT $stopped
  stopped=""
  saw_train_step && break
  echo "the ranks were past the train steps of epoch $epoch when stopped; trying the next epoch"
done
rc=0
wait "$watch_pid" || rc=$?
watch_pid=""
wait "$train_pid" || { cat "$TMP/train.log"; fail "trainer train exited non-zero"; }
train_pid=""
[[ $rc -eq 0 ]] || { cat -v "$TMP/watch.raw" | tail -30; fail "watch exited $rc"; }

py - "$TMP/watch.raw" <<'PY' >"$TMP/watch.screen" || fail "could not read the watch screen"
import re, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
frame = raw.split("\x1b[H")[-1]
print(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame).replace("\r", ""), end="")
PY
expect_contains "$TMP/watch.screen" "run tty - COMPLETED - attempt 1 - 2 ranks - dataset shapes"
expect_contains "$TMP/watch.screen" "the run has ended: COMPLETED"
# The last report of each rank is its test evaluation: step k of k planned.
for rank in 0 1; do
  grep -qE "^[ !] +$rank +head +2 +test +([0-9]+)/\\1 " "$TMP/watch.screen" ||
    { cat "$TMP/watch.screen"; fail "rank $rank's row lacks its test step k/k"; }
done
grep -qE '^train +head +2 +[0-9.]+ +[0-9.]+% +[0-9.]+% +256 ' "$TMP/watch.screen" ||
  { cat "$TMP/watch.screen"; fail "no aggregated train epoch 2 of 256 samples"; }
# While it trained, some frame showed a train step out of the 8 planned.
saw_train_step || fail "no frame showed a train step out of 8"

# --progress tty: redrawn in place, erased before the summary.
grep -qF $'\rhead 1/2 8/8 [' "$TMP/train.log" || { cat -v "$TMP/train.log"; fail "no in-place progress line"; }
grep -qE $'\r\x1b\\[K.*head 1/2 8/8 - ' "$TMP/train.log" ||
  { cat -v "$TMP/train.log"; fail "the progress line was not erased before the epoch summary"; }
py - "$TMP/train.log" <<'PY' || { cat -v "$TMP/train.log"; fail "a progress line was logged plain"; }
import sys
lines = open(sys.argv[1], "rb").read().decode("utf-8", "replace").split("\n")
plain = [l for l in lines if "ETA: " in l and "\r" not in l]
sys.exit(1 if plain else 0)
PY
echo "train watch: ok"
