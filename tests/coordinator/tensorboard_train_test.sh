#!/usr/bin/env bash
# TensorBoard event files from a real training run: a coordinator with
# --tensorboard-dir and `mpirun -np 2 trainer train` (a small TorchScript
# ResNet-18, head then finetune) on synthetic data. The files, read by the
# independent reader, must equal `coordctl metrics --json` value by value,
# the fine-tuning steps must follow the head steps, and each train epoch must
# carry both ranks' images/s.
#   usage: tensorboard_train_test.sh BIN_DIR MPIEXEC SOURCE_DIR
source "$(dirname "$0")/../train/train_lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

make_data 512 64 7
random_weights resnet18 1 "$TMP/r18.pt"
launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
  "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" --dataset "shapes=$TMP/data" \
  --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state" --tensorboard-dir "$TMP/tb"

train 2 "$TMP/train.log" --run-name tb --dataset shapes --run-dir "$TMP/run" \
  --arch torchscript --base "$TMP/r18.pt" --num-classes 10 --image-size 32 --batch-size 32 \
  --head-epochs 2 --finetune-epochs 2 --finetune-lr 1e-4 --seed 5 ||
  { cat "$TMP/train.log"; fail "trainer train exited non-zero"; }

ctl metrics tb --json >"$TMP/history.json" || fail "coordctl metrics"
py "$HERE/../coordinator/tfevents_reader.py" "$TMP/tb/tb" >"$TMP/events.json" ||
  fail "the reader rejected the event files"
py "$HERE/../coordinator/tensorboard_compare.py" "$TMP/history.json" "$TMP/events.json" 2 ||
  fail "event files differ from the history"
py - "$TMP/events.json" <<'PY' || fail "steps or tags of the real run are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
by_tag = {}
for s in d["scalars"]:
    by_tag.setdefault(s["tag"], {})[s["step"]] = s["value"]
assert sorted(by_tag["train/loss"]) == [1, 2, 3, 4], by_tag["train/loss"]
assert sorted(by_tag["validation/loss"]) == [1, 2, 3, 4], by_tag["validation/loss"]
# The trainer evaluates the test split after each phase: at its last epoch.
assert sorted(by_tag["test/top1"]) == [2, 4], by_tag["test/top1"]
assert by_tag["phase"] == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}, by_tag["phase"]
assert by_tag["learning_rate"][3] < by_tag["learning_rate"][2], by_tag["learning_rate"]
for r in (0, 1):
    assert sorted(by_tag["rank_%d/images_per_second" % r]) == [1, 2, 3, 4]
PY
echo "tensorboard with a real training run: ok"
