#!/usr/bin/env bash
# Head phase from cached features: with flip augmentation and dropout on, a
# cached head phase on 2 ranks ends with the parameters of the uncached one
# (within 1e-5); the cache fills in epoch 1 (both flips of every sample,
# shared between the ranks) and later epochs miss nothing; with --cache-mb 0
# every row goes through the spill file, the result is the same and the
# file is gone afterwards. Brightness: auto leaves the phase uncached and
# says why; --cache-features on drops brightness in the head phase and says so.
# Without flips one view per sample is cached, with the same result. Later
# epochs stream labels only; a batch with a sample never cached (an epoch
# drops other samples when the batch leaves a remainder) is fetched again
# with its images, with the same result.
# usage: train_cache_test.sh BIN_DIR MPIEXEC SOURCE_DIR
source "$(dirname "$0")/train_lib.sh"

# expect_within A B BOUND WHAT: the largest parameter difference between the
# model files of run dirs A and B is at most BOUND, else fail naming WHAT.
expect_within() {
  local diff
  diff=$(py "$HERE/model_files.py" max-diff "$TMP/$1/model.pt" "$TMP/$2/model.pt")
  echo "max |$1 - $2| = $diff"
  py -c "import sys; sys.exit(0 if float('$diff') <= $3 else 1)" ||
    fail "$4 by $diff (> $3)"
}

make_data 1200 200 6
start_coordinator "shapes=$TMP/data"
# 960 train samples, global batch 2 x 16: 30 steps per epoch; 240 validation samples.
common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 3
        --finetune-epochs 0 --seed 5 --dropout 0.3 --augment flip)

train 2 "$TMP/off.log" --run-name off --run-dir "$TMP/off" "${common[@]}" --cache-features off ||
  { cat "$TMP/off.log"; fail "the uncached run failed"; }
if grep -q "feature cache" "$TMP/off.log"; then fail "--cache-features off still cached"; fi

train 2 "$TMP/on.log" --run-name on --run-dir "$TMP/on" "${common[@]}" ||
  { cat "$TMP/on.log"; fail "the cached run failed"; }
expect_contains "$TMP/on.log" "head phase: training the head from cached base features (1280 floats"
# Epoch 1 computes both flips of its 480 samples and receives the other rank's: 960 x 2 rows.
expect_contains "$TMP/on.log" "feature cache after the epoch's rows were shared: 1920 rows (0 on disk"
# Epoch 3 (and epoch 2's validation before it) finds everything.
last=$(grep "feature cache after" "$TMP/on.log" | tail -1)
echo "last cache line: $last"
[[ "$last" == *", 0 misses (100.0% hits)"* ]] || fail "the last cached epoch still missed: $last"
[[ $(grep -c "feature cache after" "$TMP/on.log") -eq 3 ]] || fail "expected one cache line per epoch"

expect_within off on 1e-5 "the cached head phase differs from the uncached one"

mkdir -p "$TMP/spill"
train 2 "$TMP/disk.log" --run-name disk --run-dir "$TMP/disk" "${common[@]}" --cache-mb 0 \
  --cache-dir "$TMP/spill" || { cat "$TMP/disk.log"; fail "the run with every row on disk failed"; }
expect_contains "$TMP/disk.log" "feature cache after the epoch's rows were shared: 1920 rows (1920 on disk, 0 MiB in memory)"
expect_within on disk 0 "rows read back from the spill file changed the result"
[[ -z "$(ls -A "$TMP/spill")" ]] || { ls -l "$TMP/spill"; fail "spill files were left behind"; }

# Brightness: auto does not cache and says why; on drops it in the head phase.
bright=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 1
        --finetune-epochs 0 --augment flip,brightness=0.4)
train 2 "$TMP/bright.log" --run-name bright --run-dir "$TMP/bright" "${bright[@]}" ||
  { cat "$TMP/bright.log"; fail "the run with brightness failed"; }
expect_contains "$TMP/bright.log" "head phase: features are not cached because --augment flip,brightness=0.4 changes the base's input"
if grep -q "feature cache after" "$TMP/bright.log"; then fail "auto cached with brightness on"; fi
train 2 "$TMP/forced.log" --run-name forced --run-dir "$TMP/forced" "${bright[@]}" \
  --cache-features on || { cat "$TMP/forced.log"; fail "--cache-features on with brightness failed"; }
expect_contains "$TMP/forced.log" "--cache-features on: the head phase trains without brightness augmentation (--augment flip,brightness=0.4 becomes flip there)"
expect_contains "$TMP/forced.log" "feature cache after the epoch's rows were shared"
# Without flips only the delivered view is computed (960 rows, half), later
# epochs still miss nothing, and the result is the uncached one's.
none=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --head-epochs 3
      --finetune-epochs 0 --seed 5 --dropout 0.3 --augment none)
train 2 "$TMP/none-off.log" --run-name none-off --run-dir "$TMP/none-off" "${none[@]}" \
  --cache-features off || { cat "$TMP/none-off.log"; fail "the uncached run without flips failed"; }
train 2 "$TMP/none.log" --run-name none --run-dir "$TMP/none" "${none[@]}" ||
  { cat "$TMP/none.log"; fail "the cached run without flips failed"; }
expect_contains "$TMP/none.log" "feature cache after the epoch's rows were shared: 960 rows (0 on disk"
last=$(grep "feature cache after" "$TMP/none.log" | tail -1)
[[ "$last" == *", 0 misses (100.0% hits)"* ]] || fail "without flips the last epoch still missed: $last"
expect_within none-off none 1e-5 "without flips the cached head phase differs from the uncached one"
# Epochs after the first stream labels only. With a batch that leaves a
# remainder (960 = 34 x 28 + 8), each epoch drops other samples, so a later
# epoch meets samples epoch 1 never cached: their batches are fetched again
# with images, and the result is still the uncached one's.
odd=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 14 --head-epochs 3
     --finetune-epochs 0 --seed 5 --dropout 0.3 --augment flip)
train 2 "$TMP/odd-off.log" --run-name odd-off --run-dir "$TMP/odd-off" "${odd[@]}" \
  --cache-features off || { cat "$TMP/odd-off.log"; fail "the uncached run with a remainder failed"; }
train 2 "$TMP/odd.log" --run-name odd --run-dir "$TMP/odd" "${odd[@]}" ||
  { cat "$TMP/odd.log"; fail "the cached run with a remainder failed"; }
grep "feature cache after" "$TMP/odd.log"
refetched=$(grep "feature cache after" "$TMP/odd.log" | sed -n 's/.*; \([0-9]*\) labels-only batches fetched again.*/\1/p' |
  awk '{ s += $1 } END { print s + 0 }')
echo "labels-only batches fetched again: $refetched"
[[ "$refetched" -gt 0 ]] || fail "no labels-only batch was fetched again, though epochs drop other samples"
expect_within odd-off odd 1e-5 "with batches fetched again the cached head phase differs from the uncached one"
echo "PASS"
