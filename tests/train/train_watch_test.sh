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
at_exit '[[ -n "$train_pid" ]] && kill "$train_pid" 2>/dev/null'

make_data 320 64 7
start_coordinator "shapes=$TMP/data"
# train[20%:] = 256 samples, global batch 2 x 16: 8 steps per epoch.
train 2 "$TMP/train.log" --run-name tty --dataset shapes --run-dir "$TMP/run" --num-classes 10 \
  --image-size 32 --batch-size 16 --head-epochs 2 --finetune-epochs 0 --report-every 1 \
  --seed 3 --progress tty &
train_pid=$!
for _ in $(seq 1 600); do
  ctl status tty >/dev/null 2>&1 && break
  kill -0 "$train_pid" 2>/dev/null || { cat "$TMP/train.log"; fail "the trainer ended before its run started"; }
  sleep 0.2
done
rc=0
py "$SRC/tests/coordinator/run_in_pty.py" --out "$TMP/watch.raw" --columns 130 --timeout 600 -- \
  "$BIN/coordctl" --coordinator "$address" --retry-for 5 watch tty --interval 0.3 || rc=$?
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
grep -qE 'train +[1-8]/8 ' <(sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$TMP/watch.raw") ||
  fail "no frame showed a train step out of 8"

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
