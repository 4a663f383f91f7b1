#!/usr/bin/env bash
# Preemption: a job asked to stop mid-epoch stores a checkpoint of that exact
# step, marks the run PREEMPTED and exits 75 on every rank; --resume auto
# continues from that step and ends with the planned number of optimizer
# steps, the parameters of an uninterrupted run (dropout on: the masks are
# drawn per step), and a metrics history with every (phase, epoch, split)
# exactly once and every train epoch whole. Covered: a preemption injected
# on the last rank only (the ranks agree), a real SIGUSR1 sent to mpirun
# (forwarded to the ranks), a mid-epoch checkpoint refused at another world
# size, and --resume auto starting a run the coordinator does not know.
# usage: train_preempt_test.sh BIN_DIR MPIEXEC
source "$(dirname "$0")/train_lib.sh"

make_data 1200 200 5
start_coordinator "shapes=$TMP/data"
# 960 train samples, global batch 2 x 16: 30 steps per epoch, 3 epochs.
common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 2
        --finetune-epochs 1 --finetune-lr 1e-4 --seed 11 --dropout 0.3)
planned_steps=90

# check_history RUN: each (phase, epoch, split) once, 3 train epochs of 960 samples each.
check_history() {
  ctl --json metrics "$1" >"$TMP/$1.metrics.json" || fail "coordctl metrics $1"
  py - "$TMP/$1.metrics.json" <<'PY' || fail "metrics history of run $1 is wrong (above)"
import collections, json, sys
epochs = json.load(open(sys.argv[1]))["epochs"]
keys = collections.Counter((e["phase"], e["epoch"], e["split"]) for e in epochs)
dupes = [k for k, n in keys.items() if n > 1]
train = sorted((e["phase"], e["epoch"], e["samples"]) for e in epochs if e["split"] == "train")
want = [("finetune", 1, 960), ("head", 1, 960), ("head", 2, 960)]
val = sorted((e["phase"], e["epoch"]) for e in epochs if e["split"] == "validation")
ok = not dupes and train == want and val == [("finetune", 1), ("head", 1), ("head", 2)]
if not ok:
    print("duplicates:", dupes, "train:", train, "validation:", val, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

# train_loss RUN PHASE EPOCH: the aggregated train loss of one epoch.
train_loss() {
  py -c "import json,sys; e=[x for x in json.load(open('$TMP/$1.metrics.json'))['epochs'] if x['split']=='train' and x['phase']=='$2' and x['epoch']==$3]; print(e[0]['loss'])"
}

train 2 "$TMP/whole.log" --run-name whole --run-dir "$TMP/whole" "${common[@]}" ||
  { cat "$TMP/whole.log"; fail "the uninterrupted run failed"; }
check_history whole

# 1. Injected on rank 1 only, after 40 steps: head epoch 2, step 10 of it.
rc=0
train 2 "$TMP/pre.log" --run-name pre --run-dir "$TMP/pre" "${common[@]}" \
  --preempt-after-steps 40 || rc=$?
[[ $rc -eq 75 ]] || { cat "$TMP/pre.log"; fail "the preempted job exited $rc, expected 75"; }
expect_contains "$TMP/pre.log" "injected preemption: --preempt-after-steps 40"
expect_contains "$TMP/pre.log" "stored at head epoch 2 step 10 of it (global step 40)"
[[ ! -e "$TMP/pre/model.pt" ]] || fail "the preempted run wrote a final model"
ctl --json status pre >"$TMP/pre.status.json"
expect_contains "$TMP/pre.status.json" '"state": "preempted"'

train 2 "$TMP/pre2.log" --run-name pre --run-dir "$TMP/pre" "${common[@]}" --resume auto ||
  { cat "$TMP/pre2.log"; fail "resuming the preempted run failed"; }
expect_contains "$TMP/pre2.log" "continuing from its latest checkpoint"
expect_contains "$TMP/pre2.log" "resuming head epoch 2 at step 11 of it (global step 41)"
expect_contains "$TMP/pre2.log" "finished: $planned_steps optimizer steps in total (50 this attempt)"
diff=$(py "$HERE/model_files.py" max-diff "$TMP/whole/model.pt" "$TMP/pre/model.pt")
echo "max |whole - preempted and resumed| = $diff"
py -c "import sys; sys.exit(0 if float('$diff') <= 1e-5 else 1)" ||
  fail "resumed parameters differ from the uninterrupted run's by $diff (> 1e-5)"
check_history pre
# The interrupted epoch's train loss is the whole epoch's: the counts from
# before the preemption were carried over.
whole_loss=$(train_loss whole head 2)
pre_loss=$(train_loss pre head 2)
echo "head epoch 2 train loss: whole $whole_loss, preempted $pre_loss"
py -c "import sys; sys.exit(0 if abs($whole_loss - $pre_loss) <= 1e-6 * max(1, abs($whole_loss)) else 1)" ||
  fail "the preempted epoch's train loss $pre_loss differs from the whole run's $whole_loss"

# 2. A real SIGUSR1 to mpirun, mid-epoch of head epoch 1. Each step sleeps
# 100 ms (--test-step-delay-ms), so the signal, sent at step 5, arrives with
# at least 2.5 s of the epoch left however fast the machine trains.
"$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN/trainer" train --coordinator "$address" \
  --threads 1 --progress-every 0 --run-name sig --run-dir "$TMP/sig" "${common[@]}" \
  --test-step-delay-ms 100 >"$TMP/sig.log" 2>&1 &
launcher=$!
wait_until --pid "$launcher" --show "$TMP/sig.log" "the progress line of head 1 step 5" -- \
  grep -Eq "head 1/2 +5/30" "$TMP/sig.log"
kill -USR1 "$launcher"
rc=0
wait "$launcher" || rc=$?
[[ $rc -eq 75 ]] || { cat "$TMP/sig.log"; fail "after SIGUSR1 the job exited $rc, expected 75"; }
expect_contains "$TMP/sig.log" "preempted (SIGUSR1)"

# A mid-epoch checkpoint resumes only with the world size and batch it was cut for.
rc=0
train 1 "$TMP/sig1.log" --run-name sig --run-dir "$TMP/sig" "${common[@]}" --resume auto || rc=$?
[[ $rc -ne 0 ]] || fail "a mid-epoch checkpoint of 2 ranks was resumed on 1"
expect_contains "$TMP/sig1.log" "resume it with the same world size and --batch-size"

train 2 "$TMP/sig2.log" --run-name sig --run-dir "$TMP/sig" "${common[@]}" --resume auto ||
  { cat "$TMP/sig2.log"; fail "resuming after SIGUSR1 failed"; }
expect_contains "$TMP/sig2.log" "finished: $planned_steps optimizer steps in total"
diff=$(py "$HERE/model_files.py" max-diff "$TMP/whole/model.pt" "$TMP/sig/model.pt")
echo "max |whole - signalled and resumed| = $diff"
py -c "import sys; sys.exit(0 if float('$diff') <= 1e-5 else 1)" ||
  fail "parameters after SIGUSR1 + resume differ from the uninterrupted run's by $diff"
check_history sig
ctl --json status sig >"$TMP/sig.status.json"
expect_contains "$TMP/sig.status.json" '"state": "completed"'
grep -Eq '"attempt": ?3' "$TMP/sig.status.json" || { cat "$TMP/sig.status.json"; fail "run 'sig' is not at attempt 3 (preempted, refused resume, resume)"; }

# A requeued job of a finished run does nothing and succeeds; --resume latest of a
# finished run evaluates it again and repeats its stored reports exactly.
train 2 "$TMP/sig3.log" --run-name sig --run-dir "$TMP/sig" "${common[@]}" --resume auto ||
  { cat "$TMP/sig3.log"; fail "--resume auto of a completed run failed"; }
expect_contains "$TMP/sig3.log" "--resume auto: run sig is COMPLETED already (attempt 3); nothing to do"
train 2 "$TMP/sig4.log" --run-name sig --run-dir "$TMP/sig" "${common[@]}" --resume latest ||
  { cat "$TMP/sig4.log"; fail "--resume latest of a completed run failed"; }
expect_contains "$TMP/sig4.log" "finished: $planned_steps optimizer steps in total (0 this attempt)"

# 3. --resume auto on a run the coordinator does not know starts it.
train 1 "$TMP/fresh.log" --run-name fresh --run-dir "$TMP/fresh" --dataset shapes --num-classes 10 \
  --image-size 32 --batch-size 32 --head-epochs 1 --finetune-epochs 0 --resume auto ||
  { cat "$TMP/fresh.log"; fail "--resume auto on a new run failed"; }
expect_contains "$TMP/fresh.log" "--resume auto: no run fresh at the coordinator yet; starting it"
echo "PASS"
