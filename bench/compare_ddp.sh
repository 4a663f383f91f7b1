#!/usr/bin/env bash
# Our trainer against PyTorch DDP (../shared/peers/pytorch_ddp.py) on the
# same machine, model (EfficientNet-B0, random weights, 100 classes) and
# synthetic data, side by side in one run. Prints three tables:
#
#   1. training throughput, img/s over all ranks, full and finetune phases at
#      32 px (batch 64 per rank) and finetune at 224 px (batch 16 per rank);
#   2. wall and training time of 10 head-phase epochs: ours from cached
#      features with flips and without augmentation, ours uncached
#      (--cache-features off), the peer's --phase head (which recomputes the
#      base every epoch; its training time from its own img/s);
#   3. what the coordinator can stream per rank (with images, and labels only)
#      against what a rank consumes;
#   4. the gradient reducer against a raw MPI_Allreduce of the same 16 MiB
#      (bench/allreduce), the size of B0's gradients.
#
#   bench/compare_ddp.sh [--bin build/bin] [--peer ../shared/peers/pytorch_ddp.py]
#       [--ranks 2] [--train 8192] [--repeats 1] [--skip-224] [--skip-head]
#
# Both sides: --ranks processes on this host, 1 intra-op thread each,
# channels-last (the peer's default and ours). Ours: img/s of the last of 2
# epochs from epochs.csv (its first epoch pays for warm-up); the peer: its
# own figure over both epochs minus its first 3 steps. Pairs run back to
# back, ours first, --repeats times; each cell is the median. Not a test:
# the figures depend on the machine and its load.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
bin=build/bin
peer="$src/../shared/peers/pytorch_ddp.py"
ranks=2
train_images=8192
repeats=1
skip_224=0
skip_head=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --train) train_images=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --skip-224) skip_224=1; shift ;;
    --skip-head) skip_head=1; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "compare_ddp: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
bin=$(cd "$bin" && pwd)
for tool in trainer coordinator make-synthetic-cifar stream_bench allreduce_bench; do
  [[ -x "$bin/$tool" ]] || { echo "compare_ddp: $bin/$tool not found (build first)" >&2; exit 2; }
done
[[ -f "$peer" ]] || { echo "compare_ddp: peer script $peer not found (--peer)" >&2; exit 2; }
python=/usr/bin/python3  # Debian's torch imports only here
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

tmp=$(mktemp -d /tmp/compare_ddp.XXXXXX)
coordinator_pid=""
cleanup() {
  [[ -n "$coordinator_pid" ]] && kill "$coordinator_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$bin/make-synthetic-cifar" --out "$tmp/data" --train "$train_images" --test 1024 --classes 100 \
  --seed 1 >/dev/null
source "$src/tests/lib/wait.sh"  # launch_coordinator
launch_coordinator "$tmp/port" "$tmp/coordinator.log" \
  "$bin/coordinator" --listen 127.0.0.1:0 --port-file "$tmp/port" --dataset "bench=$tmp/data" \
  --checkpoint-dir "$tmp/ckpt" --state-dir "$tmp/state" --keep-last 1 --keep-best 1
run_counter=0

# ours OUT_VAR PHASE RES BATCH EPOCHS TRAIN_SPLIT [extra trainer flags...]: runs the
# job; sets OUT_VAR to the last epoch's img/s and leaves the run dir in $last_run_dir
# and the command's wall seconds in $last_wall.
ours() {
  local out=$1 phase=$2 res=$3 batch=$4 epochs=$5 split=$6
  shift 6
  run_counter=$((run_counter + 1))
  local name="r$run_counter" phases=(--full-epochs 0 --head-epochs 0 --finetune-epochs 0)
  case "$phase" in
    full) phases[1]=$epochs ;;
    head) phases[3]=$epochs ;;
    finetune) phases[5]=$epochs ;;
  esac
  last_run_dir="$tmp/runs/$name"
  local start end
  start=$(date +%s.%N)
  if ! mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$bin/trainer" train \
    --coordinator "$address" --run-name "$name" --run-dir "$last_run_dir" --dataset bench \
    --num-classes 100 --image-size "$res" --batch-size "$batch" "${phases[@]}" \
    --train-split "$split" --val-split 'train[:256]' --test-split 'test[:256]' --augment "${augment:-flip}" \
    --threads 1 --progress-every 60 --report-every 50 "$@" >"$tmp/$name.log" 2>&1; then
    tail -30 "$tmp/$name.log" >&2
    echo "compare_ddp: our trainer failed (log above)" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  last_wall=$($python -c "print(f'{$end - $start:.1f}')")
  # epochs.csv: phase,epoch,step,...,seconds (11th),checkpoint.
  printf -v "$out" '%s' "$($python - "$last_run_dir/epochs.csv" "$ranks" "$batch" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ranks, batch = int(sys.argv[2]), int(sys.argv[3])
last = rows[-1]
steps = int(last["step"]) - (int(rows[-2]["step"]) if len(rows) > 1 else 0)
print(f"{steps * ranks * batch / float(last['seconds']):.1f}")
PY
)"
}

# peer OUT_VAR PHASE RES BATCH EPOCHS LIMIT: the peer's img/s; wall seconds in $last_wall.
peer() {
  local out=$1 phase=$2 res=$3 batch=$4 epochs=$5 limit=$6 start end line
  start=$(date +%s.%N)
  line=$($python "$peer" "$tmp/data" --ranks "$ranks" --epochs "$epochs" --batch "$batch" \
    --res "$res" --threads 1 --phase "$phase" --limit "$limit" 2>"$tmp/peer.err" | grep "^peer ") ||
    { cat "$tmp/peer.err" >&2; echo "compare_ddp: the peer failed" >&2; exit 1; }
  end=$(date +%s.%N)
  last_wall=$($python -c "print(f'{$end - $start:.1f}')")
  printf -v "$out" '%s' "$(sed -E 's/.*train ([0-9.]+) img\/s.*/\1/' <<<"$line")"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR+1)/2; print (NR%2) ? a[m] : (a[m-0.5]+a[m+0.5])/2}'; }
ratio() { $python -c "print(f'{float($1) / float($2):.2f}')"; }

echo "compare_ddp: $ranks ranks x 1 thread, EfficientNet-B0 (random weights), 100 classes, $train_images synthetic train images; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---- 1. throughput
rows=("full 32 64 train" "finetune 32 64 train")
[[ $skip_224 -eq 1 ]] || rows+=("finetune 224 16 train[:640]")
echo "| phase | px | batch/rank | ours img/s | PyTorch DDP img/s | ours / DDP |"
echo "|---|---:|---:|---:|---:|---:|"
ours_full_32=""
for row in "${rows[@]}"; do
  read -r phase res batch split <<<"$row"
  limit=0
  [[ "$split" == "train" ]] || limit=640
  o=()
  p=()
  for _ in $(seq "$repeats"); do
    ours fig "$phase" "$res" "$batch" 2 "$split"
    o+=("$fig")
    peer fig "$phase" "$res" "$batch" 2 "$limit"
    p+=("$fig")
  done
  om=$(median "${o[@]}")
  pm=$(median "${p[@]}")
  [[ "$phase $res" == "full 32" ]] && ours_full_32=$om
  echo "| $phase | $res | $batch | $om | $pm | $(ratio "$om" "$pm") |"
done
echo

# ---- 2. ten head epochs
# train_seconds RUN_DIR: the sum of the epochs' training seconds (epochs.csv).
train_seconds() {
  $python -c "import csv; print(f\"{sum(float(r['seconds']) for r in csv.DictReader(open('$1/epochs.csv'))):.1f}\")"
}
head_rate=""
if [[ $skip_head -eq 0 ]]; then
  peer peer_rate head 32 64 10 0
  peer_wall=$last_wall
  # The peer times its loop from its 4th step on; its 10 epochs of training
  # at that rate (each rank runs floor(N / ranks / 64) steps per epoch):
  peer_train=$($python -c "s = $train_images // $ranks // 64; print(f'{10 * s * 64 * $ranks / $peer_rate:.1f}')")
  echo "| 10 head epochs, 32 px, batch 64/rank | wall s | training s | peer / ours (training) | peer / ours (wall) |"
  echo "|---|---:|---:|---:|---:|"
  ours unused head 32 64 10 train
  cached_wall=$last_wall
  cached_train=$(train_seconds "$last_run_dir")
  head_rate=$($python - "$last_run_dir/epochs.csv" "$ranks" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = int(rows[-1]["step"]) - int(rows[-2]["step"])
print(f"{steps * 64 / float(rows[-1]['seconds']):.0f}")  # per rank
PY
)
  echo "| ours, cached features, --augment flip (both flips computed in epoch 1) | $cached_wall | $cached_train | $(ratio "$peer_train" "$cached_train") | $(ratio "$peer_wall" "$cached_wall") |"
  augment=none ours unused head 32 64 10 train
  none_train=$(train_seconds "$last_run_dir")
  echo "| ours, cached features, --augment none | $last_wall | $none_train | $(ratio "$peer_train" "$none_train") | $(ratio "$peer_wall" "$last_wall") |"
  ours unused head 32 64 10 train --cache-features off
  plain_train=$(train_seconds "$last_run_dir")
  echo "| ours, --cache-features off | $last_wall | $plain_train | $(ratio "$peer_train" "$plain_train") | $(ratio "$peer_wall" "$last_wall") |"
  echo "| PyTorch DDP --phase head ($peer_rate img/s) | $peer_wall | $peer_train | 1.00 | 1.00 |"
  echo
fi

# ---- 3. stream vs consumption
"$bin/stream_bench" --train "$train_images" --batch 64 --epochs 2 >"$tmp/stream.txt" || true
stream=$(grep "StreamShard, $ranks clients" "$tmp/stream.txt" | sed -E 's/.* ([0-9]+) images\/s.*/\1/') || stream=""
labels_stream=$(grep "StreamShard labels only, $ranks clients" "$tmp/stream.txt" |
  sed -E 's/.* ([0-9]+) images\/s.*/\1/') || labels_stream=""
echo "| per rank, 32 px | img/s |"
echo "|---|---:|"
if [[ -n "$stream" ]]; then
  echo "| coordinator stream, $ranks clients together (stream_bench) | $((stream / ranks)) |"
fi
[[ -n "$ours_full_32" ]] && echo "| trainer consumption, full phase | $($python -c "print(round($ours_full_32 / $ranks))") |"
if [[ -n "$labels_stream" ]]; then
  echo "| coordinator stream without images (labels_only: cached head epochs), $ranks clients together | $((labels_stream / ranks)) |"
fi
[[ -n "$head_rate" ]] && echo "| trainer consumption, head phase from the cache | $head_rate |"
echo

# ---- 4. reducer vs raw MPI_Allreduce at 16 MiB
echo "| 16 MiB all-reduce, $ranks ranks | raw MPI_Allreduce ms | reducer (sum) ms | reducer (average) ms | reducer sum bandwidth / raw |"
echo "|---|---:|---:|---:|---:|"
row=$(mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$bin/allreduce_bench" --iterations 30 \
  --skip-b0 --sizes-mib 16 2>"$tmp/allreduce.err" | grep '^| 16 |') ||
  { cat "$tmp/allreduce.err" >&2; echo "compare_ddp: allreduce_bench failed" >&2; exit 1; }
# | MiB | raw ms | busbw | communicator ms | busbw | reducer (sum) ms | busbw | reducer (average) ms | busbw | ratio |
IFS='|' read -r _ _ raw _ _ _ sum _ avg _ r _ <<<"$row"
echo "| bench/allreduce (median of 30, slowest rank) | ${raw// /} | ${sum// /} | ${avg// /} | ${r// /} |"
