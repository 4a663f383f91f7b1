#!/usr/bin/env bash
# The training job end to end with the real binaries: a coordinator and
# `mpirun -np 2 trainer train` on small synthetic data, all three phases.
# Asserts accuracy far above chance, the best and latest checkpoints present
# and usable by `trainer predict`, a complete report (coordinator and run
# directory), and that the coordinator's aggregated metrics equal what rank 0
# printed. The base is a TorchScript ResNet-18 with random weights trained
# from scratch (--full-epochs): it learns a 32 px task in a few epochs,
# where EfficientNet-B0 from scratch needs many more (docs/training.md).
# usage: train_e2e_test.sh BIN_DIR MPIEXEC SOURCE_DIR
source "$(dirname "$0")/train_lib.sh"

make_data 2000 400 3
random_weights resnet18 1 "$TMP/r18.pt"
start_coordinator "shapes=$TMP/data"

train 2 "$TMP/train.log" --run-name e2e --dataset shapes --run-dir "$TMP/run" \
  --arch torchscript --base "$TMP/r18.pt" \
  --num-classes 10 --image-size 32 --batch-size 32 --full-epochs 4 --full-lr 1e-3 \
  --head-epochs 1 --finetune-epochs 1 --finetune-lr 1e-4 --seed 5 ||
  { cat "$TMP/train.log"; fail "trainer train exited non-zero"; }
expect_contains "$TMP/train.log" "finished: "
expect_contains "$TMP/train.log" "restored the best head checkpoint"

# The run's files.
for f in model.pt report.json classes.csv confusion.csv epochs.csv; do
  [[ -s "$TMP/run/$f" ]] || fail "run directory lacks $f"
done

# The report at the coordinator: every test sample once, far above chance (10%).
ctl --json report e2e >"$TMP/report.json" || { cat "$TMP/report.json"; fail "coordctl report"; }
py - "$TMP/report.json" "$TMP/run/report.json" <<'PY' || fail "report check"
import json, sys
r = json.load(open(sys.argv[1]))
local = json.load(open(sys.argv[2]))
assert r["samples"] == 400, r["samples"]
assert r["num_classes"] == 10, r["num_classes"]
assert len(r["classes"]) == 10
assert sum(c["support"] for c in r["classes"]) == 400
assert sum(sum(row) for row in r["confusion"]) == 400
print("test top-1 %.4f top-3 %.4f" % (r["top1"], r["top3"]))
assert r["top1"] >= 0.25, "test accuracy %.3f is not far above chance (0.10)" % r["top1"]
assert abs(local["top1"] - r["top1"]) < 1e-12 and local["samples"] == 400
PY
ctl report e2e >"$TMP/report.txt" || fail "coordctl report (table)"

# Best and latest checkpoints exist and `trainer predict` reads them.
py - "$TMP/image.png" <<'PY'
import struct, sys, zlib
w = h = 32
raw = b"".join(b"\x00" + b"".join(bytes([(x * 8) % 256, (y * 8) % 256, 128]) for x in range(w))
              for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
for which in best latest; do
  ctl --json checkpoints "$which" e2e >"$TMP/$which.json" || fail "checkpoints $which"
  id=$(py -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$TMP/$which.json")
  ctl checkpoints get "$id" -o "$TMP/$which.pt" >/dev/null || fail "checkpoints get $id"
  "$BIN/trainer" predict --weights "$TMP/$which.pt" --base "$TMP/r18.pt" --image "$TMP/image.png" --top-k 3 --json \
    >"$TMP/$which.predict" 2>&1 || { cat "$TMP/$which.predict"; fail "predict with the $which checkpoint"; }
  expect_contains "$TMP/$which.predict" '"probability"'
done

# The coordinator's aggregated metrics equal rank 0's epoch summaries.
ctl metrics e2e --csv >"$TMP/metrics.csv" || fail "coordctl metrics"
py - "$TMP/train.log" "$TMP/metrics.csv" <<'PY' || fail "metrics differ"
import csv, re, sys
line_re = re.compile(r"(full|head|finetune) (\d+)/\d+ \d+/\d+ - .* - loss: ([\d.]+) - acc: ([\d.]+)"
                     r" - top3: ([\d.]+) - val_loss: ([\d.]+) - val_acc: ([\d.]+) - val_top3: ([\d.]+)")
printed = {}
for line in open(sys.argv[1]):
    m = line_re.search(line)
    if m:
        phase, epoch = m.group(1), int(m.group(2))
        v = [float(x) for x in m.groups()[2:]]
        printed[(phase, epoch, "train")] = v[0:3]
        printed[(phase, epoch, "validation")] = v[3:6]
assert len(printed) == 2 * 6, "expected 6 epoch summaries, got %s" % sorted(printed)
stored = {}
for row in csv.DictReader(open(sys.argv[2])):
    key = (row["phase"], int(row["epoch"]), row["split"])
    stored[key] = [float(row["loss"]), float(row["top1"]), float(row["top3"])]
for key, values in printed.items():
    assert key in stored, "coordinator lacks %s" % (key,)
    for p, s in zip(values, stored[key]):
        assert abs(p - s) <= 0.00005 + 1e-9, "%s: printed %s, coordinator %s" % (key, values, stored[key])
print("%d epoch metrics match" % len(printed))
PY
ctl --json status e2e >"$TMP/status.json"
expect_contains "$TMP/status.json" '"state": "completed"'
echo "PASS"
