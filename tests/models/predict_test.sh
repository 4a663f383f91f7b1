#!/usr/bin/env bash
# `trainer predict` against torchvision on the same pixels: probabilities
# within 1e-3 relative for a 224x224 PNG (no resize) and a 61x97 PNG (bilinear
# resize), the --json format, a model file from Python with labels, JPEG
# input, and the errors a user can cause.
# Why 1e-3 and not float32's last bits: predict runs B0 in eval mode, where
# each BatchNorm is folded into its convolution (trainer/models/
# conv_bn_activation.h), which rounds differently from torchvision; the
# reference network's randomly moved BN statistics amplify that to 1.7e-4 on
# image.png (torchvision's own channels-last differs from its NCHW by 6e-5; a
# preprocessing mistake differs by far more than 1e-3).
# usage: predict_test.sh BIN_DIR MAKE_REFERENCE_PY
source "$(dirname "$0")/../e2e/lib.sh"
BIN=$1
/usr/bin/python3 "$2" --arch predict --out "$TMP" --num-classes 10 || fail "reference generator"

# compare JSON_FILE IMAGE_NAME: --json output vs reference.json.
compare() {
  /usr/bin/python3 - "$1" "$TMP/reference.json" "$2" <<'PY' || fail "predict $2 differs from torchvision"
import json, sys
out_text = open(sys.argv[1]).read()
out = json.loads(out_text)
reference = json.load(open(sys.argv[2]))[sys.argv[3]]
assert list(out) == ["predictions"], out_text
predictions = out["predictions"]
assert len(predictions) == len(reference), (len(predictions), len(reference))
for p in predictions:
    assert list(p) == ["index", "label", "probability"], p
ours = [p["probability"] for p in predictions]
assert ours == sorted(ours, reverse=True), "not sorted by probability"
expected_order = sorted(range(len(reference)), key=lambda i: (-reference[i], i))
scale = max(abs(r) for r in reference)
error = max(abs(p["probability"] - reference[p["index"]]) for p in predictions) / scale
print(f"{sys.argv[3]}: predict vs torchvision relative error {error:.3g}")
assert error < 1e-3, error
assert [p["index"] for p in predictions] == expected_order, "order differs"
PY
}

"$BIN/trainer" predict --weights "$TMP/weights.pt" --image "$TMP/image.png" --top-k 10 --json \
  >"$TMP/out.json" 2>"$TMP/log" || { cat "$TMP/log"; fail "predict image.png"; }
compare "$TMP/out.json" image.png
# Exactly one line, no spaces: the documented format.
[[ $(wc -l <"$TMP/out.json") == 1 ]] || fail "--json printed more than one line"
grep -q '^{"predictions":\[{"index":[0-9]*,"label":"class_[0-9]*","probability":' "$TMP/out.json" ||
  fail "--json format: $(cat "$TMP/out.json")"

"$BIN/trainer" predict --weights "$TMP/weights.pt" --image "$TMP/small.png" --top-k 10 --json \
  --num-classes 10 --image-size 224 >"$TMP/small.json" 2>"$TMP/log" ||
  { cat "$TMP/log"; fail "predict small.png"; }
compare "$TMP/small.json" small.png

# The model file (written by Python's torch.save) brings its labels; top-k 3.
"$BIN/trainer" predict --weights "$TMP/model.pt" --image "$TMP/image.png" --top-k 3 \
  >"$TMP/text" 2>"$TMP/log" || { cat "$TMP/log"; fail "predict with a model file"; }
top=$(/usr/bin/python3 -c "
import json; r = json.load(open('$TMP/reference.json'))['image.png']
i = max(range(len(r)), key=lambda k: r[k]); print(i, 'uncertain' if r[i] < 0.5 else 'sure')")
expect_contains "$TMP/text" "1. label ${top% *}"
if [[ ${top#* } == uncertain ]]; then
  expect_contains "$TMP/text" "image.png: uncertain: the top probability"
else
  expect_contains "$TMP/text" "image.png: label ${top% *} (probability"
fi
[[ $(grep -c '^ *[0-9]\. label' "$TMP/text") == 3 ]] || { cat "$TMP/text"; fail "top-k 3"; }

# A labels file overrides the model file's.
seq 1 10 | sed 's/^/name /' >"$TMP/names.txt"
"$BIN/trainer" predict --weights "$TMP/model.pt" --image "$TMP/image.jpg" --labels "$TMP/names.txt" \
  --json >"$TMP/jpg.json" 2>"$TMP/log" || { cat "$TMP/log"; fail "predict JPEG"; }
expect_contains "$TMP/jpg.json" '"label":"name '
[[ $(grep -o '"index"' "$TMP/jpg.json" | wc -l) == 5 ]] || fail "default top-k is not 5"

# A TorchScript base + head (base.* and classifier.1.* in the state dict).
mkdir "$TMP/rn"
/usr/bin/python3 "$2" --arch resnet18 --out "$TMP/rn" --num-classes 10 || fail "resnet18 reference"
"$BIN/trainer" predict --arch torchscript --base "$TMP/rn/base.pt" --weights "$TMP/rn/weights.pt" \
  --image "$TMP/image.png" --top-k 10 --json >"$TMP/rn.json" 2>"$TMP/log" ||
  { cat "$TMP/log"; fail "predict with a TorchScript base"; }
[[ $(grep -o '"index"' "$TMP/rn.json" | wc -l) == 10 ]] || fail "torchscript predict: $(cat "$TMP/rn.json")"
expect_fail "$TMP/e0" "$BIN/trainer" predict --arch torchscript --weights "$TMP/rn/weights.pt" \
  --image "$TMP/image.png"
expect_contains "$TMP/e0" "--arch torchscript needs --base FILE"

# Errors: each names the file or flag and exits 2.
expect_fail "$TMP/e1" "$BIN/trainer" predict --weights "$TMP/weights.pt" --image "$TMP/image.png" \
  --num-classes 7
expect_contains "$TMP/e1" "has a 10-class head (classifier.1.weight [10, 1280]), but --num-classes is 7"
head -c 100000 "$TMP/weights.pt" >"$TMP/cut.pt"
expect_fail "$TMP/e2" "$BIN/trainer" predict --weights "$TMP/cut.pt" --image "$TMP/image.png"
expect_contains "$TMP/e2" "cannot read $TMP/cut.pt as a torch.save file"
expect_fail "$TMP/e3" "$BIN/trainer" predict --weights "$TMP/weights.pt" --image "$TMP/labels.txt"
expect_contains "$TMP/e3" "cannot decode image $TMP/labels.txt"
seq 1 4 >"$TMP/four.txt"
expect_fail "$TMP/e4" "$BIN/trainer" predict --weights "$TMP/weights.pt" --image "$TMP/image.png" \
  --labels "$TMP/four.txt"
expect_contains "$TMP/e4" "labels file $TMP/four.txt has 4 labels, the model has 10 classes"
expect_fail "$TMP/e5" "$BIN/trainer" predict --weights "$TMP/model.pt" --image "$TMP/image.png" \
  --arch torchscript
expect_contains "$TMP/e5" "is a model file for arch efficientnet_b0, but --arch is torchscript"
expect_fail "$TMP/e6" "$BIN/trainer" predict --weights "$TMP/weights.pt"
expect_contains "$TMP/e6" "--image is required"
echo "trainer predict: ok"
