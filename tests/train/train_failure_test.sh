#!/usr/bin/env bash
# How `trainer train` fails: every case ends the whole job (no hang) with a
# message that names the cause, and the run at the coordinator is marked
# FAILED when the coordinator can be told.
# usage: train_failure_test.sh BIN_DIR MPIEXEC
source "$(dirname "$0")/train_lib.sh"

make_data 300 50 4
common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 1
        --finetune-epochs 0)

# No coordinator: a clear error once the retry window has passed.
address="127.0.0.1:1"
start=$(date +%s)
expect_fail "$TMP/unreachable.log" train 2 "$TMP/unreachable.train" --run-name r1 "${common[@]}" \
  --coordinator-retry 2
cat "$TMP/unreachable.train" >>"$TMP/unreachable.log"
expect_contains "$TMP/unreachable.log" "rank 0: starting the run at the coordinator 127.0.0.1:1"
expect_contains "$TMP/unreachable.log" "UNAVAILABLE"
(( $(date +%s) - start < 60 )) || fail "an unreachable coordinator took over 60 s to report"

start_coordinator "shapes=$TMP/data"

# Bad flags are refused before anything starts.
expect_fail "$TMP/flags.log" train 2 "$TMP/flags.train" --run-name r2 "${common[@]}" --augment spin
cat "$TMP/flags.train" >>"$TMP/flags.log"
expect_contains "$TMP/flags.log" "--augment"
expect_contains "$TMP/flags.log" "spin"
expect_fail "$TMP/zero.log" train 2 "$TMP/zero.train" --run-name r3 --dataset shapes \
  --head-epochs 0 --finetune-epochs 0
cat "$TMP/zero.train" >>"$TMP/zero.log"
expect_contains "$TMP/zero.log" "at least one epoch"

# A dataset the coordinator does not serve.
expect_fail "$TMP/dataset.log" train 2 "$TMP/dataset.train" --run-name r4 --dataset nope \
  --num-classes 10 --image-size 32 --head-epochs 1 --finetune-epochs 0
cat "$TMP/dataset.train" >>"$TMP/dataset.log"
expect_contains "$TMP/dataset.log" "no dataset 'nope'"

# Labels outside --num-classes: found by the ranks while streaming; the job ends,
# naming the rank, and the run is marked FAILED.
expect_fail "$TMP/labels.log" train 2 "$TMP/labels.train" --run-name r5 --dataset shapes \
  --num-classes 5 --image-size 32 --batch-size 16 --head-epochs 1 --finetune-epochs 0
cat "$TMP/labels.train" >>"$TMP/labels.log"
expect_contains "$TMP/labels.log" "the job failed on rank"
ctl --json status r5 >"$TMP/r5.json" || fail "status r5"
expect_contains "$TMP/r5.json" '"state": "failed"'

# A split too small for one global batch.
expect_fail "$TMP/small.log" train 2 "$TMP/small.train" --run-name r6 "${common[@]}" \
  --train-split "train[:10]"
cat "$TMP/small.train" >>"$TMP/small.log"
expect_contains "$TMP/small.log" "train[:10]"
echo "PASS"
