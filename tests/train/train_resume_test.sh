#!/usr/bin/env bash
# Resume after a crash: a job killed (MPI_Abort) right after its first epoch
# and resumed with --resume latest ends with exactly the planned number of
# optimizer steps and with the parameters of an uninterrupted run (within
# 1e-5), through head training and fine-tuning (frozen-BN phases). Also: a
# second start of an existing run without --resume is refused, and a run
# crashed on 2 ranks resumes on 1 (the global batch halves: more steps).
# usage: train_resume_test.sh BIN_DIR MPIEXEC
source "$(dirname "$0")/train_lib.sh"

make_data 1200 200 4
start_coordinator "shapes=$TMP/data"
# 960 train samples (train[20%:]), global batch 2 x 16 = 32: 30 steps per epoch, 3 epochs.
common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 2
        --finetune-epochs 1 --finetune-lr 1e-4 --seed 11)
planned_steps=90

train 2 "$TMP/whole.log" --run-name whole --run-dir "$TMP/whole" "${common[@]}" ||
  { cat "$TMP/whole.log"; fail "the uninterrupted run failed"; }

rc=0
train 2 "$TMP/crash.log" --run-name crashed --run-dir "$TMP/crashed" "${common[@]}" \
  --fail-after-epochs 1 || rc=$?
[[ $rc -ne 0 ]] || { cat "$TMP/crash.log"; fail "the injected crash did not end the job"; }
expect_contains "$TMP/crash.log" "injected failure: --fail-after-epochs 1"
[[ ! -e "$TMP/crashed/model.pt" ]] || fail "the crashed run wrote a final model"

# Starting it again without --resume is refused, naming the way out.
rc=0
train 2 "$TMP/again.log" --run-name crashed --run-dir "$TMP/crashed" "${common[@]}" || rc=$?
[[ $rc -ne 0 ]] || fail "a second start of run 'crashed' without --resume was accepted"
expect_contains "$TMP/again.log" "pass --resume latest"

train 2 "$TMP/resume.log" --run-name crashed --run-dir "$TMP/crashed" "${common[@]}" \
  --resume latest || { cat "$TMP/resume.log"; fail "the resumed run failed"; }
expect_contains "$TMP/resume.log" "resuming after head epoch 1"
expect_contains "$TMP/resume.log" "finished: $planned_steps optimizer steps in total (60 this attempt)"

for run in whole crashed; do
  steps=$(py "$HERE/model_files.py" state "$TMP/$run/model.pt" global_step)
  [[ "$steps" == "$planned_steps" ]] || fail "run $run ended after $steps steps, planned $planned_steps"
done
diff=$(py "$HERE/model_files.py" max-diff "$TMP/whole/model.pt" "$TMP/crashed/model.pt")
echo "max |whole - resumed| = $diff"
py -c "import sys; sys.exit(0 if float('$diff') <= 1e-5 else 1)" ||
  fail "resumed parameters differ from the uninterrupted run's by $diff (> 1e-5)"
ctl --json status crashed >"$TMP/status.json"
expect_contains "$TMP/status.json" '"state": "completed"'
grep -Eq '"attempt": ?2' "$TMP/status.json" || { cat "$TMP/status.json"; fail "run 'crashed' is not at attempt 2"; }
# Resume at another world size: epoch 1 ran on 2 x 16 (30 steps); epochs 2 and 3 run on
# 1 x 16, 60 steps each.
rc=0
train 2 "$TMP/crash2.log" --run-name resized --run-dir "$TMP/resized" "${common[@]}" \
  --fail-after-epochs 1 || rc=$?
[[ $rc -ne 0 ]] || fail "the second injected crash did not end the job"
train 1 "$TMP/resized.log" --run-name resized --run-dir "$TMP/resized" "${common[@]}" \
  --resume latest || { cat "$TMP/resized.log"; fail "resuming on 1 rank failed"; }
expect_contains "$TMP/resized.log" "resuming with 1 ranks x batch 16 (global batch 16) where the checkpoint was taken with 2 x 16"
expect_contains "$TMP/resized.log" "finished: 150 optimizer steps in total (120 this attempt)"
echo "PASS"
