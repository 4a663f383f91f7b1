#!/usr/bin/env bash
# Preemption under a real single-node Slurm (tests/slurm/slurm_cluster.sh):
# slurm/train.sbatch gets SIGUSR1 mid-epoch the way --signal=B:USR1@120
# delivers it (`scancel --batch --signal=USR1`), forwards it to the srun'd
# trainers, which checkpoint at the next step boundary and exit 75; the
# script stops the coordinator and requeues the job; the requeued job
# (SLURM_RESTART_COUNT=1) resumes from that step with --resume auto and ends
# COMPLETED with every planned epoch and step. The metrics history (read
# from the coordinator state the job left in the run directory) holds each
# (phase, epoch, split) exactly once and every train epoch whole; the run
# is at attempt 2, the report and checkpoints are there. The same job
# submitted again finds the run complete and ends without training. Skipped (77)
# without root or the Slurm packages.   usage: slurm_preempt_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail  # before anything: a helper that fails to load ends the test
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/slurm_cluster.sh"
BIN=$1
SRC=$2
slurm_cluster_skip_unless_usable

# 600 samples: 480 train (train[20%:]), global batch 2 x 16: 15 steps per
# epoch; 2 head epochs and 1 fine-tuning epoch: 45 steps.
"$BIN/make-synthetic-cifar" --out "$TMP/data" --train 600 --test 100 --classes 10 --seed 6 \
  >/dev/null 2>&1 || fail "make-synthetic-cifar"
slurm_cluster_start

run="$TMP/run"
out="$TMP/job.out"
id=$(cd "$TMP" && XFER_RUN_NAME=pre XFER_RUN_DIR="$run" XFER_BIN="$BIN" \
  XFER_DATASETS="shapes=$TMP/data" \
  sbatch --parsable --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$out" "$SRC/slurm/train.sbatch" -- --dataset shapes --num-classes 10 --image-size 32 \
  --batch-size 16 --head-epochs 2 --finetune-epochs 1 --finetune-lr 1e-4 --seed 11 \
  --progress-every 0 --test-step-delay-ms 150 | cut -d';' -f1) || fail "sbatch failed"
[[ "$id" =~ ^[0-9]+$ ]] || fail "sbatch printed '$id', not a job id"

# Mid-epoch: once rank 0 has printed step 5 of head epoch 1. Each step sleeps
# 150 ms (--test-step-delay-ms), so the 10 steps left of the epoch give the
# signal 1.5 s to get through scancel, the batch script and srun however fast
# the machine trains (a head step alone takes ~15 ms here).
step5_or_ended() {
  grep -Eq "head 1/2 +5/15" "$out" 2>/dev/null && return 0
  [[ "$(slurm_job_field "$id" JobState)" =~ ^(RUNNING|PENDING|CONFIGURING)$ ]] ||
    { cat "$out"; fail "job $id ended before it was signalled"; }
  return 1
}
slurm_wait "the progress line of step 5 in $out" -- step5_or_ended
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id"

slurm_wait_job "$id" 300 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
state=$(slurm_job_field "$id" JobState)
[[ "$state" == COMPLETED ]] || { cat "$out"; slurm_cluster_logs; fail "job $id ended $state, expected COMPLETED"; }
restarts=$(slurm_job_field "$id" Restarts)
[[ "$restarts" == 1 ]] || { scontrol show job "$id"; fail "job $id restarted $restarts times, expected 1"; }

# Attempt 1: signalled, checkpointed mid-epoch, requeued.
expect_contains "$out" "attempt 1: SIGUSR1: asking the trainers to checkpoint at the next step boundary"
expect_contains "$out" "preempted (SIGUSR1): checkpoint"
grep -Eq "stored at head epoch 1 step ([5-9]|1[0-4]) of it" "$out" ||
  { cat "$out"; fail "the preemption checkpoint is not mid-way through head epoch 1"; }
expect_contains "$out" "attempt 1: trainers exited with status 75 after SIGUSR1"
expect_contains "$out" "attempt 1: coordinator stopped (exit status 0)"
expect_contains "$out" "attempt 1: preempted: checkpoint stored; requeueing job $id"
# Attempt 2: the same job again, resumed from that step.
expect_contains "$out" "attempt 2: run pre in $run: 1 node(s), 2 task(s), batch host $(hostname), SLURM_RESTART_COUNT=1"
expect_contains "$out" "continuing from its latest checkpoint"
step=$(sed -n 's/.*stored at head epoch 1 step \([0-9]*\) of it.*/\1/p' "$out" | head -1)
expect_contains "$out" "resuming head epoch 1 at step $((step + 1)) of it"
expect_contains "$out" "finished: 45 optimizer steps in total ($((45 - step)) this attempt)"
expect_contains "$out" "attempt 2: run pre completed"
grep -q "attempt 1: preempted: checkpoint stored; requeueing" "$run/slurm-jobs.log" &&
  grep -q "attempt 2: completed" "$run/slurm-jobs.log" || { cat "$run/slurm-jobs.log"; fail "slurm-jobs.log is wrong"; }
for f in model.pt report.json epochs.csv; do
  [[ -s "$run/$f" ]] || fail "the run directory lacks $f"
done
[[ -s "$run/coordinator/checkpoints/MANIFEST.json" ]] || fail "no checkpoint manifest in $run/coordinator/checkpoints"
leftovers=$(pgrep -af -- "$TMP" | grep -E "trainer train|coordinator --listen" | grep -v pgrep || true)
[[ -z "$leftovers" ]] || { echo "$leftovers"; fail "processes left after the job"; }
expect_contains "$out" "attempt 2: run pre is completed at the coordinator"

# The same job once more (a requeue that raced the end, a resubmission):
# the run is complete, so it ends at once, COMPLETED, without training.
id2=$(cd "$TMP" && XFER_RUN_NAME=pre XFER_RUN_DIR="$run" XFER_BIN="$BIN" \
  XFER_DATASETS="shapes=$TMP/data" sbatch --parsable --nodes=1 --ntasks-per-node=2 \
  --gpus-per-node=2 --cpus-per-task=1 --time=10 --output="$TMP/again.out" \
  "$SRC/slurm/train.sbatch" | cut -d';' -f1) || fail "sbatch failed"
slurm_wait_job "$id2" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
state=$(slurm_job_field "$id2" JobState)
[[ "$state" == COMPLETED ]] || { cat "$TMP/again.out"; fail "job $id2 on a completed run ended $state"; }
expect_contains "$TMP/again.out" "run pre already completed at the coordinator; nothing to do"
grep -q "trainer train" "$TMP/again.out" && { cat "$TMP/again.out"; fail "job $id2 started trainers for a completed run"; }

# The coordinator state the job left: history, attempt, report.
launch_coordinator "$TMP/check.port" "$TMP/check.log" \
  "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/check.port" --dataset "shapes=$TMP/data" \
  --checkpoint-dir "$run/coordinator/checkpoints" --state-dir "$run/coordinator/state"
ctl() { "$BIN/coordctl" --coordinator "$address" --retry-for 5 "$@"; }
ctl --json status pre >"$TMP/status.json" || fail "coordctl status pre"
expect_contains "$TMP/status.json" '"state": "completed"'
grep -Eq '"attempt": ?2' "$TMP/status.json" || { cat "$TMP/status.json"; fail "run pre is not at attempt 2"; }
ctl --json metrics pre >"$TMP/metrics.json" || fail "coordctl metrics pre"
/usr/bin/python3 - "$TMP/metrics.json" <<'PY' || fail "the metrics history of run pre is wrong (above)"
import collections, json, sys
epochs = json.load(open(sys.argv[1]))["epochs"]
keys = collections.Counter((e["phase"], e["epoch"], e["split"]) for e in epochs)
dupes = [k for k, n in keys.items() if n > 1]
train = sorted((e["phase"], e["epoch"], e["samples"]) for e in epochs if e["split"] == "train")
val = sorted((e["phase"], e["epoch"]) for e in epochs if e["split"] == "validation")
want = [("finetune", 1, 480), ("head", 1, 480), ("head", 2, 480)]
ok = not dupes and train == want and val == [("finetune", 1), ("head", 1), ("head", 2)]
print("history:", sorted(keys), "train:", train, "duplicates:", dupes, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
ctl --json checkpoints list pre >"$TMP/ckpts.json" || fail "coordctl checkpoints list pre"
expect_contains "$TMP/ckpts.json" '"phase": "finetune"'
ctl --json report pre >"$TMP/report.json" || fail "coordctl report pre"
expect_contains "$TMP/report.json" '"samples": 100'
stop_coordinator
echo "PASS"
