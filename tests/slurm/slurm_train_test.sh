#!/usr/bin/env bash
# slurm/train.sbatch under a real single-node Slurm (tests/slurm/slurm_cluster.sh):
# its settings errors; a run in place faking 2 nodes (coordinator on every
# interface, with TLS and a token made for the job); a job submitted with a config file whose run name the
# environment overrides, run with `srun --mpi=pmix` on 2 tasks and 2 (fake)
# GPUs, ends COMPLETED and leaves the run directory with the report, the
# model, the coordinator's checkpoints and state (a coordinator restarted on
# that state serves the completed run and its report); a second job where
# srun lacks the MPI plugin asked for falls back to mpirun and says so; a
# job cancelled with scancel ends CANCELLED and is not requeued. No
# coordinator or trainer is left running. Skipped (77) without root or the
# Slurm packages.   usage: slurm_train_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail  # before anything: a helper that fails to load ends the test
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/slurm_cluster.sh"
BIN=$1
SRC=$2
SBATCH_SCRIPT="$SRC/slurm/train.sbatch"
slurm_cluster_skip_unless_usable

# Processes of this test's jobs still running (the daemons are not counted).
leftovers() { pgrep -af -- "$TMP" | grep -E "trainer train|coordinator --listen" | grep -v pgrep || true; }

# Settings errors name the setting (no Slurm needed: run in place).
(cd "$TMP" && env -u XFER_RUN_NAME XFER_DATASETS="x=$TMP" XFER_BIN="$BIN" bash "$SBATCH_SCRIPT") \
  >"$TMP/err1.out" 2>&1 && fail "train.sbatch without a run name succeeded"
expect_contains "$TMP/err1.out" "no run name: set XFER_RUN_NAME"
(cd "$TMP" && XFER_RUN_NAME=r XFER_DATASETS="x=$TMP/nowhere" XFER_BIN="$BIN" bash "$SBATCH_SCRIPT") \
  >"$TMP/err2.out" 2>&1 && fail "train.sbatch with a missing dataset folder succeeded"
expect_contains "$TMP/err2.out" "dataset folder '$TMP/nowhere'"
(cd "$TMP" && XFER_RUN_NAME=r XFER_DATASETS="x=$TMP" XFER_BIN="$TMP/nobin" bash "$SBATCH_SCRIPT") \
  >"$TMP/err3.out" 2>&1 && fail "train.sbatch with a wrong XFER_BIN succeeded"
expect_contains "$TMP/err3.out" "$TMP/nobin/coordinator is missing"
(cd "$TMP" && XFER_RUN_NAME=r XFER_DATASETS="x=$TMP" XFER_BIN="$BIN" XFER_LAUNCHER=ssh bash "$SBATCH_SCRIPT") \
  >"$TMP/err4.out" 2>&1 && fail "train.sbatch with XFER_LAUNCHER=ssh succeeded"
expect_contains "$TMP/err4.out" "XFER_LAUNCHER 'ssh' is not one of auto, srun, mpirun"
(cd "$TMP" && bash "$SBATCH_SCRIPT" --config "$TMP/none.env") >"$TMP/err5.out" 2>&1 &&
  fail "train.sbatch with a missing config file succeeded"
expect_contains "$TMP/err5.out" "config file '$TMP/none.env' is not readable"
# The example config loads; the environment's XFER_BIN wins over its own.
(cd "$TMP" && XFER_BIN="$TMP/nobin" bash "$SBATCH_SCRIPT" --config "$SRC/slurm/train.env.example") \
  >"$TMP/err6.out" 2>&1 && fail "train.sbatch with the example config and a wrong XFER_BIN succeeded"
expect_contains "$TMP/err6.out" "$TMP/nobin/coordinator is missing"

"$BIN/make-synthetic-cifar" --out "$TMP/data" --train 400 --test 100 --classes 10 --seed 4 \
  >/dev/null 2>&1 || fail "make-synthetic-cifar"

# Several nodes (faked: SLURM_JOB_NUM_NODES=2, run in place with mpirun),
# with TLS: the coordinator listens on every interface with a token the
# script makes in the run directory (mode 600) and hands to the trainers,
# and coordctl and the trainers trust XFER_TLS_CA.
host=$(hostname -f 2>/dev/null || hostname)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=xfer-test-ca -keyout "$TMP/ca.key" \
  -out "$TMP/ca.pem" >/dev/null 2>&1 || fail "openssl: CA"
echo "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" >"$TMP/san.ext"
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$TMP/server.key" \
  -out "$TMP/server.csr" >/dev/null 2>&1 || fail "openssl: server request"
openssl x509 -req -days 1 -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -extfile "$TMP/san.ext" -out "$TMP/server.pem" >/dev/null 2>&1 ||
  fail "openssl: signing the server certificate"
(cd "$TMP" && SLURM_JOB_NUM_NODES=2 SLURM_NTASKS=2 XFER_LAUNCHER=mpirun \
  XFER_MPIRUN_ARGS=--oversubscribe XFER_RUN_NAME=multi XFER_RUN_DIR="$TMP/runs/multi" \
  XFER_COORDINATOR_ARGS="--tls-cert $TMP/server.pem --tls-key $TMP/server.key" \
  XFER_TLS_CA="$TMP/ca.pem" XFER_BIN="$BIN" XFER_DATASETS="shapes=$TMP/data" \
  bash "$SBATCH_SCRIPT" -- --dataset shapes --num-classes 10 --image-size 32 --batch-size 16 \
  --head-epochs 1 --finetune-epochs 0 --progress-every 0 --threads 1) >"$TMP/multi.out" 2>&1 ||
  { cat "$TMP/multi.out"; fail "train.sbatch run in place for 2 nodes failed"; }
token="$TMP/runs/multi/coordinator/token"
expect_contains "$TMP/multi.out" "SERVING at $host:"
expect_contains "$TMP/multi.out" "--token-file $token --tls-ca $TMP/ca.pem"
[[ "$(stat -c %a "$token")" == 600 ]] || fail "$token has mode $(stat -c %a "$token"), expected 600"
grep -q "listening on 0.0.0.0:.*(TLS, auth on" "$TMP/runs/multi/coordinator/coordinator.log" ||
  { cat "$TMP/runs/multi/coordinator/coordinator.log"; fail "the coordinator of 2 nodes is not on 0.0.0.0 with TLS and auth"; }
[[ -s "$TMP/runs/multi/report.json" ]] || fail "the 2-node run in place wrote no report"

slurm_cluster_start

# The config file; the environment's XFER_RUN_NAME wins over the file's.
cat >"$TMP/train.env" <<EOF
XFER_RUN_NAME=from-the-file
XFER_DATASETS="shapes=$TMP/data"
XFER_BIN="$BIN"
XFER_TRAIN_ARGS="--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --progress-every 0"
XFER_COORDINATOR_ARGS="--keep-last 3"
EOF
resources=(--nodes=1 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10)

# submit NAME OUT [sbatch flags] -- [train.sbatch args]: the job id.
submit() {
  local name=$1 out=$2
  shift 2
  (cd "$TMP" && XFER_RUN_NAME=$name XFER_RUN_DIR="$TMP/runs/$name" \
    sbatch --parsable "${resources[@]}" --output="$out" "$@") | cut -d';' -f1
}

id=$(submit whole "$TMP/whole.out" "$SBATCH_SCRIPT" --config "$TMP/train.env" -- \
  --head-epochs 1 --finetune-epochs 1 --finetune-lr 1e-4 --seed 3) || fail "sbatch failed"
[[ "$id" =~ ^[0-9]+$ ]] || fail "sbatch printed '$id', not a job id"
slurm_wait_job "$id" 240 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
state=$(slurm_job_field "$id" JobState)
[[ "$state" == COMPLETED ]] || { cat "$TMP/whole.out"; slurm_cluster_logs; fail "job $id ended $state, expected COMPLETED"; }
out="$TMP/whole.out"
expect_contains "$out" "run whole in $TMP/runs/whole: 1 node(s), 2 task(s)"
expect_contains "$out" "SERVING at 127.0.0.1:"
expect_contains "$out" "launcher: srun --mpi=pmix"
expect_contains "$out" "--threads 1"
expect_contains "$out" "--resume auto: no run whole at the coordinator yet; starting it"
expect_contains "$out" "with 2 ranks"
expect_contains "$out" "finished: "
expect_contains "$out" "coordinator stopped (exit status 0)"
expect_contains "$out" "run whole completed"
run="$TMP/runs/whole"
for f in model.pt report.json classes.csv confusion.csv epochs.csv coordinator/coordinator.log; do
  [[ -s "$run/$f" ]] || fail "the run directory lacks $f"
done
[[ -s "$run/coordinator/checkpoints/MANIFEST.json" ]] || fail "no checkpoint manifest in $run/coordinator/checkpoints"
grep -q "attempt 1: completed" "$run/slurm-jobs.log" || { cat "$run/slurm-jobs.log"; fail "slurm-jobs.log lacks the completion"; }
[[ ! -e "$TMP/runs/from-the-file" ]] || fail "the config file's run name won over the environment's"
[[ -z "$(leftovers)" ]] || { leftovers; fail "processes left after the job"; }

# The state outlives the job: a coordinator on it serves the run and its report.
launch_coordinator "$TMP/check.port" "$TMP/check.log" \
  "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/check.port" --dataset "shapes=$TMP/data" \
  --checkpoint-dir "$run/coordinator/checkpoints" --state-dir "$run/coordinator/state"
ctl() { "$BIN/coordctl" --coordinator "$address" --retry-for 5 "$@"; }
ctl --json status whole >"$TMP/status.json" || fail "coordctl status whole"
expect_contains "$TMP/status.json" '"state": "completed"'
ctl --json report whole >"$TMP/report.json" || fail "coordctl report whole"
/usr/bin/python3 - "$TMP/report.json" <<'PY' || fail "the run's report at the coordinator is wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["samples"] == 100, r["samples"]
assert sum(sum(row) for row in r["confusion"]) == 100
PY
ctl --json checkpoints list whole >"$TMP/ckpts.json" || fail "coordctl checkpoints list whole"
expect_contains "$TMP/ckpts.json" '"phase": "finetune"'
stop_coordinator

# srun without the MPI plugin asked for: mpirun inside the allocation.
id=$(XFER_SRUN_MPI=no-such-plugin submit fallback "$TMP/fallback.out" "$SBATCH_SCRIPT" \
  --config "$TMP/train.env" -- --head-epochs 1 --finetune-epochs 0) || fail "sbatch failed"
slurm_wait_job "$id" 240 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
state=$(slurm_job_field "$id" JobState)
[[ "$state" == COMPLETED ]] || { cat "$TMP/fallback.out"; fail "job $id (mpirun fallback) ended $state"; }
expect_contains "$TMP/fallback.out" "launcher: mpirun"
expect_contains "$TMP/fallback.out" "launching 2 trainers with mpirun: mpirun -np 2"
expect_contains "$TMP/fallback.out" "with 2 ranks"
[[ -s "$TMP/runs/fallback/report.json" ]] || fail "the mpirun job wrote no report"
[[ -z "$(leftovers)" ]] || { leftovers; fail "processes left after the mpirun job"; }

# scancel (SIGTERM to everything): the job ends CANCELLED, is not requeued,
# and leaves nothing running.
id=$(submit cancelled "$TMP/cancelled.out" "$SBATCH_SCRIPT" --config "$TMP/train.env" -- \
  --head-epochs 50 --finetune-epochs 0) || fail "sbatch failed"
wait_until --show "$TMP/cancelled.out" "step 2 of the job to cancel" -- \
  grep -Eq "head 1/50 +2/" "$TMP/cancelled.out"
scancel "$id" || fail "scancel $id"
slurm_wait_job "$id" 120 CANCELLED COMPLETED FAILED PENDING
state=$(slurm_job_field "$id" JobState)
[[ "$state" == CANCELLED ]] || { cat "$TMP/cancelled.out"; fail "job $id is $state after scancel, expected CANCELLED"; }
restarts=$(slurm_job_field "$id" Restarts)
[[ "$restarts" == 0 ]] || fail "job $id was requeued ($restarts) after scancel"
nothing_left() { [[ -z "$(leftovers)" ]]; }
wait_until "no process of the job left after scancel" -- nothing_left
expect_contains "$TMP/cancelled.out" "SIGTERM: asking the trainers to checkpoint"
echo "PASS"
