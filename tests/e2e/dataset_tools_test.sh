#!/usr/bin/env bash
# End to end: make-synthetic-cifar writes a dataset that inspect-dataset (the
# coordinator's reader) accepts, and a damaged file is refused with a message
# that names it.   usage: dataset_tools_test.sh BIN_DIR
source "$(dirname "$0")/lib.sh"
bin="$1"

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 600 --test 200 --classes 20 --seed 7 \
  >"$TMP/gen.log" 2>&1 || { cat "$TMP/gen.log"; fail "make-synthetic-cifar failed"; }
for f in train.bin test.bin fine_label_names.txt coarse_label_names.txt; do
  [[ -f "$TMP/data/$f" ]] || fail "missing $f"
done
[[ $(stat -c %s "$TMP/data/train.bin") -eq $((600 * 3074)) ]] || fail "train.bin size"
[[ $(wc -l <"$TMP/data/fine_label_names.txt") -eq 100 ]] || fail "fine names lines"

"$bin/inspect-dataset" --data "$TMP/data" --split 'train[20%:]' --split 'train[:50%]+test' \
  --parts 2 >"$TMP/inspect.out" 2>&1 || { cat "$TMP/inspect.out"; fail "inspect-dataset failed"; }
expect_contains "$TMP/inspect.out" "480 records  train[120:600]"
expect_contains "$TMP/inspect.out" "500 records  train[0:300]+test[0:200]"
expect_contains "$TMP/inspect.out" "part 1/2"

# Same seed, same bytes.
"$bin/make-synthetic-cifar" --out "$TMP/again" --train 600 --test 200 --classes 20 --seed 7 \
  >/dev/null 2>&1
cmp -s "$TMP/data/train.bin" "$TMP/again/train.bin" || fail "generator not deterministic"

# A bad split spec is refused with the spec quoted.
expect_fail "$TMP/bad-spec.out" "$bin/inspect-dataset" --data "$TMP/data" --split 'train[:120%]'
expect_contains "$TMP/bad-spec.out" "invalid split spec 'train[:120%]'"

# A truncated file is refused with its path.
head -c $((3074 * 10 + 5)) "$TMP/data/test.bin" >"$TMP/data/test.bin.cut"
mv "$TMP/data/test.bin.cut" "$TMP/data/test.bin"
expect_fail "$TMP/trunc.out" "$bin/inspect-dataset" --data "$TMP/data"
expect_contains "$TMP/trunc.out" "$TMP/data/test.bin: truncated"

# Bad flags are refused by name.
expect_fail "$TMP/flag.out" "$bin/make-synthetic-cifar" --out "$TMP/x" --classes 0
expect_contains "$TMP/flag.out" "classes"
echo "dataset tools: ok"
