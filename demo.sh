#!/usr/bin/env bash
# The README's main command. On a fresh Debian 12 machine it installs what is
# missing, builds, and runs the transfer-learning recipe end to end through
# the real coordinator and `mpirun -np 2 trainer train`:
#
#   1. two synthetic datasets: a "source" task (50 classes of shapes, colours
#      and two textures) and a different "target" task (100 classes: the
#      same shapes and colours with four textures, other images);
#   2. ImageNet weights cannot be downloaded here, so a stand-in base is
#      trained from scratch on the source task (--full-epochs). The base is a
#      ResNet-18 exported with random weights by tools/export_weights.py and
#      run through the TorchScript path (--arch torchscript): at 32 px it
#      learns in a few epochs, where EfficientNet-B0 from scratch needs far
#      more than a demo can spend (docs/training.md has the figures);
#   3. that base is transferred to the target task: head training on the
#      frozen base, then fine-tuning, printing test accuracy after each step;
#   4. for comparison, the same head training on a random (untrained) base.
#
# Environment: DEMO_DIR (default demo-output/), BUILD_DIR (default build/),
# DEMO_QUICK=1 (fewer images and epochs: a smoke run, for tests),
# DEMO_SKIP_BUILD=1 (use the binaries already in BUILD_DIR; the test suite).
set -euo pipefail
cd "$(dirname "$0")"

if [[ "${DEMO_SKIP_BUILD:-0}" != 1 ]]; then
  deploy/install-deps.sh
  deploy/build.sh -DBUILD_TESTING=OFF
fi
bin="${BUILD_DIR:-build}/bin"
demo_dir="${DEMO_DIR:-demo-output}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [[ "${DEMO_QUICK:-0}" == 1 ]]; then
  source_train=1000 target_train=1000 full_epochs=1 head_epochs=1 finetune_epochs=1
else
  source_train=10000 target_train=5000 full_epochs=6 head_epochs=4 finetune_epochs=3
fi

echo
echo "== 1. Two synthetic datasets in $demo_dir/data"
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
"$bin/make-synthetic-cifar" --out "$demo_dir/data/source" --train "$source_train" --test 1000 \
  --classes 50 --seed 1 --log-level warn
"$bin/make-synthetic-cifar" --out "$demo_dir/data/target" --train "$target_train" --test 1000 \
  --classes 100 --seed 2 --log-level warn
echo "source: $source_train train images, 50 classes; target: $target_train train images, 100 classes"
/usr/bin/python3 tools/export_weights.py --arch resnet18 --random --seed 1 --out "$demo_dir/resnet18_base.pt"

echo
echo "== 2. The coordinator serving both (a free port on 127.0.0.1)"
state="$demo_dir/coordinator"
mkdir -p "$state"
"$bin/coordinator" --listen 127.0.0.1:0 --port-file "$state/port" \
  --dataset "source=$demo_dir/data/source" --dataset "target=$demo_dir/data/target" \
  --checkpoint-dir "$state/checkpoints" --state-dir "$state/state" >"$state/coordinator.log" 2>&1 &
coordinator_pid=$!
trap 'kill "$coordinator_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [[ -s "$state/port" ]] && break; sleep 0.1; done
[[ -s "$state/port" ]] || { cat "$state/coordinator.log"; echo "demo: the coordinator did not start" >&2; exit 1; }
address="127.0.0.1:$(cat "$state/port")"
echo "coordinator at $address (log: $state/coordinator.log)"

train() {
  mpirun --oversubscribe -np 2 "$bin/trainer" train --coordinator "$address" --threads 1 \
    --arch torchscript --base "$demo_dir/resnet18_base.pt" --image-size 32 --batch-size 32 \
    --progress-every 30 --run-dir "$demo_dir/runs/$1" --run-name "$@"
}

echo
echo "== 3. A stand-in base: ResNet-18 trained from scratch on the source task"
train source-base --dataset source --num-classes 50 --full-epochs "$full_epochs" --full-lr 1e-3 \
  --head-epochs 0 --finetune-epochs 0

echo
echo "== 4. Transfer to the target task: head on the frozen base, then fine-tuning"
train transfer --dataset target --num-classes 100 --weights "$demo_dir/runs/source-base/model.pt" \
  --head-epochs "$head_epochs" --finetune-epochs "$finetune_epochs" --finetune-lr 1e-4

echo
echo "== 5. The same head training on a random base (what the transferred features are worth)"
train random-base --dataset target --num-classes 100 --head-epochs "$head_epochs" \
  --finetune-epochs 0

echo
echo "== 6. What the coordinator holds"
ctl=("$bin/coordctl" --coordinator "$address")
"${ctl[@]}" runs
"${ctl[@]}" metrics transfer
"${ctl[@]}" checkpoints list transfer
"${ctl[@]}" report transfer >"$demo_dir/report.txt"
head -16 "$demo_dir/report.txt"
echo "... (the whole report: $demo_dir/report.txt)"

summary() {
  /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%-12s test top-1 %.4f  top-3 %.4f" % (sys.argv[2], r["top1"], r["top3"]))' "$1" "$2"
}
echo
echo "== Result (target task, 100 classes, chance 1%)"
summary "$demo_dir/runs/transfer/report.json" "transferred"
summary "$demo_dir/runs/random-base/report.json" "random base"
echo "report: $demo_dir/runs/transfer/report.json (classes.csv, confusion.csv beside it);"
echo "model: $demo_dir/runs/transfer/model.pt (trainer predict --weights $demo_dir/runs/transfer/model.pt --base $demo_dir/resnet18_base.pt --image FILE);"
echo "checkpoints: $state/checkpoints (coordctl --coordinator $address checkpoints list transfer)"
kill -TERM "$coordinator_pid"
wait "$coordinator_pid" || true
trap - EXIT
