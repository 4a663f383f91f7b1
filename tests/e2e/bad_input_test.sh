#!/usr/bin/env bash
# The dataset, configuration, flag and token rows of docs/errors.md, with the
# real binaries: each bad input is refused with its message and exit status,
# and changes nothing it should not. The coordinator's state and checkpoint
# directories are fingerprinted (SHA-256 of every file) around each refused
# start; `coordctl --json runs` and the checkpoint list of a completed run
# are compared around each refused trainer command.
# usage: bad_input_test.sh BIN_DIR MPIEXEC SOURCE_DIR
source "$(dirname "$0")/lib.sh"
BIN=$1
MPIEXEC=$2
SRC=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$TMP" || fail "cd $TMP"  # a trainer's default --run-dir (runs/RUN) lands here, if ever

# expect_exit CODE OUT CMD...: CMD must exit with CODE; its stdout+stderr go to OUT.
expect_exit() {
  local code=$1 out=$2 rc=0
  shift 2
  timeout 120 "$@" >"$out" 2>&1 || rc=$?
  [[ $rc -eq $code ]] || { cat "$out" >&2; fail "exit status $rc, expected $code: $*"; }
}

# step NAME: the case that follows (docs/errors.md names it); a failure is
# reported under the last one shown.
step() { echo "--- $1"; }

# fingerprint: SHA-256 of every file under the coordinator's directories.
fingerprint() {
  (cd "$TMP" && find state ckpt -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

"$BIN/make-synthetic-cifar" --out "$TMP/data" --train 200 --test 40 --classes 10 --seed 3 \
  >/dev/null 2>&1 || fail "make-synthetic-cifar"
echo "admin-token-0123456789abcdef" >"$TMP/admin.token"
echo "read-token-0123456789abcdef" >"$TMP/read.token"
chmod 600 "$TMP/admin.token" "$TMP/read.token"

# The coordinator's flags except its datasets (refused starts use them too).
coordinator_flags=(--listen 127.0.0.1:0 --port-file "$TMP/port" --checkpoint-dir "$TMP/ckpt"
                   --state-dir "$TMP/state" --token-file "$TMP/admin.token"
                   --read-token-file "$TMP/read.token")
start_coordinator() {
  launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
    "$BIN/coordinator" "${coordinator_flags[@]}" --dataset "shapes=$TMP/data" --dataset "other=$TMP/data"
}
ctl() {
  timeout 60 "$BIN/coordctl" --coordinator "$address" --token-file "$TMP/read.token" --retry-for 5 \
    --json "$@"
}
# train NP OUT ARGS...: `trainer train` on NP ranks with the admin token (or
# $TOKEN); returns its exit status.
train() {
  local np=$1 out=$2
  shift 2
  timeout 300 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$BIN/trainer" train \
    --coordinator "$address" --token-file "${TOKEN:-$TMP/admin.token}" --threads 1 \
    --progress-every 0 --coordinator-retry 5 "$@" >"$out" 2>&1
}
base=(--dataset shapes --num-classes 10 --head-epochs 1 --finetune-epochs 0)
small=("${base[@]}" --image-size 32 --batch-size 16)

# ---------------------------------------------------------------- a completed run

step setup/completed-run
start_coordinator
train 1 "$TMP/good.log" --run-name good --run-dir "$TMP/good" "${small[@]}" --augment flip ||
  { cat "$TMP/good.log"; fail "the reference run failed"; }
ctl checkpoints list good >"$TMP/good-checkpoints.json" || fail "checkpoints list good"
good_checkpoint=$(/usr/bin/python3 -c \
  "import json, sys; print(json.load(open(sys.argv[1]))['checkpoints'][0]['id'])" \
  "$TMP/good-checkpoints.json")
ctl runs >"$TMP/runs.json" || fail "runs"
expect_contains "$TMP/runs.json" '"state": "completed"'

# Nothing at the coordinator changed since $TMP/runs.json (no run started,
# none changed), and the completed run's checkpoints are the same.
expect_nothing_started() {
  ctl runs >"$TMP/runs-now.json" || fail "runs"
  diff "$TMP/runs.json" "$TMP/runs-now.json" >&2 || fail "$1: the runs changed"
  expect_good_run_intact "$1"
}
expect_good_run_intact() {
  ctl checkpoints list good >"$TMP/good-now.json" || fail "checkpoints list good"
  diff "$TMP/good-checkpoints.json" "$TMP/good-now.json" >&2 ||
    fail "$1: the checkpoints of run 'good' changed"
}

# ---------------------------------------------------------------- dataset files

stop_coordinator
before=$(fingerprint)
# bad_dataset NAME EDIT: a copy of the dataset in $TMP/NAME, then EDIT run in it.
bad_dataset() {
  rm -rf "${TMP:?}/$1"
  cp -r "$TMP/data" "$TMP/$1"
  (cd "$TMP/$1" && eval "$2")
}
# refused_dataset DIR MESSAGE: the coordinator (serving the good dataset too)
# and inspect-dataset both refuse DIR naming MESSAGE; nothing was written.
refused_dataset() {
  local dir=$1 message=$2
  rm -f "$TMP/port"
  expect_exit 2 "$TMP/refused.out" "$BIN/coordinator" "${coordinator_flags[@]}" \
    --dataset "shapes=$TMP/data" --dataset "bad=$dir"
  expect_contains "$TMP/refused.out" "cannot start: dataset 'bad': $message"
  [[ ! -e "$TMP/port" ]] || fail "a refused coordinator wrote its port file"
  [[ "$(fingerprint)" == "$before" ]] || fail "a refused start changed the state or checkpoints"
  expect_exit 2 "$TMP/inspect.out" "$BIN/inspect-dataset" --data "$dir"
  expect_contains "$TMP/inspect.out" "$message"
}

step dataset/truncated
bad_dataset truncated 'head -c $((3074 * 50 + 100)) train.bin >t && mv t train.bin'
refused_dataset "$TMP/truncated" "$TMP/truncated/train.bin: truncated: size 153800 bytes is not a multiple of 3074; record 50 has 100 bytes (expected 3074)"

step dataset/empty-file
bad_dataset empty ': >test.bin'
refused_dataset "$TMP/empty" "$TMP/empty/test.bin: empty file (expected a positive multiple of 3074 bytes"

step dataset/cifar10-records
# CIFAR-10's records (3,073 bytes: one label) are not CIFAR-100's.
bad_dataset cifar10 'head -c $((3073 * 40)) test.bin >t && mv t test.bin'
refused_dataset "$TMP/cifar10" "$TMP/cifar10/test.bin: truncated: size 122920 bytes is not a multiple of 3074; record 39 has 3034 bytes (expected 3074)"

step dataset/fine-label-out-of-range
bad_dataset fine 'printf "\x64" | dd of=train.bin bs=1 seek=$((3074 * 3 + 1)) conv=notrunc status=none'
refused_dataset "$TMP/fine" "$TMP/fine/train.bin: record 3: fine label 100 out of range (expected 0..99)"

step dataset/coarse-label-out-of-range
bad_dataset coarse 'printf "\x14" | dd of=test.bin bs=1 seek=$((3074 * 2)) conv=notrunc status=none'
refused_dataset "$TMP/coarse" "$TMP/coarse/test.bin: record 2: coarse label 20 out of range (expected 0..19)"

step dataset/missing-name-file
bad_dataset nonames 'rm fine_label_names.txt'
refused_dataset "$TMP/nonames" "$TMP/nonames/fine_label_names.txt: file not found"

step dataset/name-file-short
bad_dataset shortnames 'sed -i "\$d" coarse_label_names.txt'
refused_dataset "$TMP/shortnames" "$TMP/shortnames/coarse_label_names.txt: has 19 label names (expected 20, one per line)"

step dataset/missing-dir
refused_dataset "$TMP/absent" "$TMP/absent: not a directory (expected a CIFAR-100 dataset directory"

step dataset/flag-errors
# The same name twice, and a flag without NAME=.
expect_exit 2 "$TMP/twice.out" "$BIN/coordinator" "${coordinator_flags[@]}" \
  --dataset "shapes=$TMP/data" --dataset "shapes=$TMP/data"
expect_contains "$TMP/twice.out" "--dataset: name 'shapes' given twice (expected each name once)"
expect_exit 2 "$TMP/form.out" "$BIN/coordinator" "${coordinator_flags[@]}" --dataset "$TMP/data"
expect_contains "$TMP/form.out" "': expected NAME=DIR with NAME of 1-64 characters"
[[ "$(fingerprint)" == "$before" ]] || fail "a refused start changed the state or checkpoints"

step config/coordinator-config-typo
# A misspelled key in the coordinator's --config file.
printf 'datasets = ["shapes=%s"]\n' "$TMP/data" >"$TMP/coordinator.toml"
expect_exit 2 "$TMP/config.out" "$BIN/coordinator" "${coordinator_flags[@]}" \
  --config "$TMP/coordinator.toml" --dataset "shapes=$TMP/data"
expect_contains "$TMP/config.out" "--config $TMP/coordinator.toml: unknown key 'datasets' (expected the long name of a flag"
[[ "$(fingerprint)" == "$before" ]] || fail "a refused start changed the state or checkpoints"

step dataset/restart-serves-all
# Restarted on the good dataset, it serves everything it had.
start_coordinator
expect_nothing_started "restart after the refused datasets"

echo "bad input: dataset rows ok"

# ---------------------------------------------------------------- flags and tokens

# refused_train CODE MESSAGE ARGS...: `trainer train` on 2 ranks exits CODE
# naming MESSAGE, and started or changed nothing at the coordinator.
refused_train() {
  local code=$1 message=$2 rc=0
  shift 2
  train 2 "$TMP/refused.log" --run-dir "$TMP/refused-run" "$@" || rc=$?
  [[ $rc -eq $code ]] || { cat "$TMP/refused.log" >&2; fail "exit status $rc, expected $code: $*"; }
  expect_contains "$TMP/refused.log" "$message"
  [[ ! -e "$TMP/refused-run" ]] || fail "a refused job created its run dir: $*"
  expect_nothing_started "trainer train $*"
}
step flags/batch-size-0
refused_train 2 "--batch-size: Value 0 not in range 1 to 65536" --run-name r "${base[@]}" \
  --image-size 32 --batch-size 0
step flags/image-size-out-of-range
refused_train 2 "--image-size: Value 4 not in range 8 to 1024" --run-name r "${base[@]}" \
  --image-size 4
step flags/image-size-not-a-number
refused_train 2 "--image-size: Value big not in range 8 to 1024" --run-name r "${base[@]}" \
  --image-size big
step flags/unknown-arch
refused_train 2 "--arch: resnet50 not in {efficientnet_b0,torchscript}" --run-name r \
  "${small[@]}" --arch resnet50
step flags/cache-features-unknown
refused_train 2 "--cache-features: maybe not in {auto,on,off}" --run-name r "${small[@]}" \
  --cache-features maybe
step flags/torchscript-without-base
refused_train 2 "--arch torchscript: expected --base FILE too" --run-name r "${small[@]}" \
  --arch torchscript
step flags/no-epochs
refused_train 2 "--head-epochs 0: expected at least one epoch in some phase" --run-name r \
  --dataset shapes --head-epochs 0 --finetune-epochs 0
step flags/brightness-without-delta
# --cache-features on with brightness drops brightness in the head phase and
# says so (tests/train/train_cache_test.sh); a brightness without its delta
# is refused before anything starts.
refused_train 1 "--augment 'flip,brightness': 'brightness' needs a value" --run-name r \
  "${small[@]}" --cache-features on --augment flip,brightness
step flags/resume-unknown-run
refused_train 1 "--resume latest: the coordinator has no run 'fresh' to resume" --run-name fresh \
  "${small[@]}" --resume latest
step flags/run-exists
refused_train 1 "run 'good' exists already (attempt 1, RUN_STATE_COMPLETED); pass --resume latest" \
  --run-name good "${small[@]}"
step flags/resume-on-other-dataset
refused_train 1 "--dataset other: run 'good' was started on dataset 'shapes'" --run-name good \
  "${small[@]/shapes/other}" --resume latest
step flags/unknown-dataset
refused_train 1 "no dataset 'nope' (served: other, shapes)" --run-name r "${small[@]/shapes/nope}"

# Tokens: read-only, unknown, missing file.
step auth/trainer-read-only-token
TOKEN=$TMP/read.token refused_train 1 \
  "StartRun: the read-only token may not call this method (it needs the admin token)" \
  --run-name r "${small[@]}"
step auth/trainer-wrong-token
echo "wrong-token-0123456789abcdef" >"$TMP/wrong.token"
TOKEN=$TMP/wrong.token refused_train 1 \
  "UNAUTHENTICATED (code 16): GetRun: unknown token (expected this coordinator's admin" \
  --run-name r "${small[@]}"
step auth/trainer-missing-token-file
TOKEN=$TMP/absent.token refused_train 1 \
  "token file $TMP/absent.token cannot be opened (expected a readable file" --run-name r \
  "${small[@]}"
step auth/coordctl-wrong-token
rc=0
timeout 60 "$BIN/coordctl" --coordinator "$address" --token-file "$TMP/wrong.token" --retry-for 0 \
  runs >"$TMP/ctl-wrong.out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || { cat "$TMP/ctl-wrong.out" >&2; fail "coordctl with a wrong token exited $rc"; }
expect_contains "$TMP/ctl-wrong.out" "UNAUTHENTICATED"
step auth/coordctl-read-only-delete
rc=0
timeout 60 "$BIN/coordctl" --coordinator "$address" --token-file "$TMP/read.token" --retry-for 0 \
  checkpoints delete "$good_checkpoint" >"$TMP/ctl-read.out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || { cat "$TMP/ctl-read.out" >&2; fail "delete with the read-only token exited $rc"; }
expect_contains "$TMP/ctl-read.out" "PERMISSION_DENIED"
expect_nothing_started "coordctl with refused tokens"
echo "bad input: flag and token rows ok"

# ---------------------------------------------------------------- configuration

# failed_run CODE MESSAGE RUN ARGS...: the job starts run RUN, fails naming
# MESSAGE and marks RUN failed; it stored no checkpoint, and the other runs
# are unchanged.
failed_run() {
  local code=$1 message=$2 run=$3 rc=0
  shift 3
  train 1 "$TMP/$run.log" --run-name "$run" --run-dir "$TMP/runs/$run" "$@" || rc=$?
  [[ $rc -eq $code ]] || { cat "$TMP/$run.log" >&2; fail "exit status $rc, expected $code: $*"; }
  expect_contains "$TMP/$run.log" "$message"
  ctl status "$run" >"$TMP/$run.json" || fail "status $run"
  expect_contains "$TMP/$run.json" '"state": "failed"'
  ctl checkpoints list "$run" >"$TMP/$run-checkpoints.json" || fail "checkpoints list $run"
  expect_contains "$TMP/$run-checkpoints.json" '"checkpoints": []'
  expect_good_run_intact "run $run"
}
step config/bad-split-spec
# Resolved (read-only) before the run is started: nothing at the coordinator changes.
refused_train 1 "--train-split 'train[:120%]': ResolveSplit: invalid split spec 'train[:120%]'" \
  --run-name split "${small[@]}" --train-split 'train[:120%]'
refused_train 1 "--test-split 'nope': " --run-name split "${small[@]}" --test-split nope

step setup/weights
# Weights: torchvision's B0 (random), then one tensor of another shape, one renamed.
/usr/bin/python3 "$SRC/tools/export_weights.py" --arch efficientnet_b0 --random --seed 1 \
  --out "$TMP/b0.pt" >/dev/null 2>&1 || fail "export_weights.py"
/usr/bin/python3 - "$TMP" <<'PY' || fail "writing the broken weights"
import sys, torch
from PIL import Image
tmp = sys.argv[1]
d = torch.load(f"{tmp}/b0.pt")
shape = dict(d)
shape["features.1.0.block.0.0.weight"] = torch.zeros(32, 1, 5, 5)
torch.save(shape, f"{tmp}/shape.pt")
renamed = dict(d)
renamed["features.0.0.weights"] = renamed.pop("features.0.0.weight")
torch.save(renamed, f"{tmp}/renamed.pt")
Image.new("RGB", (40, 30), (200, 40, 10)).save(f"{tmp}/image.png")
PY
step config/weights-wrong-shape
failed_run 1 "$TMP/shape.pt: tensor features.1.0.block.0.0.weight has shape [32, 1, 5, 5], expected [32, 1, 3, 3]" \
  shape "${small[@]}" --weights "$TMP/shape.pt"
step config/weights-unknown-name
failed_run 1 "$TMP/renamed.pt has tensor features.0.0.weights (shape [32, 3, 3, 3]) that the model does not have" \
  renamed "${small[@]}" --weights "$TMP/renamed.pt"
step config/checkpoint-of-another-run
# Resuming a run from another run's checkpoint.
failed_run 1 "checkpoint $good_checkpoint belongs to run 'good', not 'shape'" shape "${small[@]}" \
  --resume "$good_checkpoint"

step setup/predict
# trainer predict: exit 2, nothing on stdout, the inputs untouched.
predict() {
  timeout 120 "$BIN/trainer" predict "$@" >"$TMP/predict.stdout" 2>"$TMP/predict.stderr"
}
predict --weights "$TMP/b0.pt" --image "$TMP/image.png" --top-k 3 ||
  { cat "$TMP/predict.stderr"; fail "predict on good inputs failed"; }
sums=$(sha256sum "$TMP"/*.pt "$TMP/image.png")
refused_predict() {
  local message=$1 rc=0
  shift
  predict "$@" || rc=$?
  [[ $rc -eq 2 ]] || { cat "$TMP/predict.stderr" >&2; fail "predict exited $rc, expected 2: $*"; }
  expect_contains "$TMP/predict.stderr" "$message"
  [[ ! -s "$TMP/predict.stdout" ]] || { cat "$TMP/predict.stdout"; fail "a refused predict printed"; }
  [[ "$(sha256sum "$TMP"/*.pt "$TMP/image.png")" == "$sums" ]] || fail "predict changed its inputs"
}
step predict/weights-wrong-shape
refused_predict "$TMP/shape.pt: tensor features.1.0.block.0.0.weight has shape [32, 1, 5, 5]" \
  --weights "$TMP/shape.pt" --image "$TMP/image.png"
step predict/weights-unknown-name
refused_predict "$TMP/renamed.pt has tensor features.0.0.weights" --weights "$TMP/renamed.pt" \
  --image "$TMP/image.png"
step predict/not-an-image
refused_predict "cannot decode image $TMP/admin.token" --weights "$TMP/b0.pt" --image "$TMP/admin.token"
step predict/image-size-out-of-range
expect_exit 2 "$TMP/size.out" "$BIN/trainer" predict --weights "$TMP/b0.pt" --image "$TMP/image.png" \
  --image-size 0
expect_contains "$TMP/size.out" "--image-size: Value 0 not in range 1 to 4096"
step predict/config-bad-value
# --config files: a bad value, and a misspelled key (not ignored).
printf '[predict]\ntop-k = 0\n' >"$TMP/predict.toml"
expect_exit 2 "$TMP/config.out" "$BIN/trainer" --config "$TMP/predict.toml" predict \
  --weights "$TMP/b0.pt" --image "$TMP/image.png"
expect_contains "$TMP/config.out" "--top-k: Value 0 not in range 1 to 100000"
step predict/config-typo
printf '[train]\nbatch-size = 8\n[predict]\ntopk = 3\n' >"$TMP/predict.toml"
expect_exit 2 "$TMP/config.out" "$BIN/trainer" --config "$TMP/predict.toml" predict \
  --weights "$TMP/b0.pt" --image "$TMP/image.png"
expect_contains "$TMP/config.out" "--config $TMP/predict.toml: unknown key 'predict.topk'"

stop_coordinator
echo "PASS"
