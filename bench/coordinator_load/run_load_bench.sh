#!/usr/bin/env bash
# Training throughput with and without monitoring load on the coordinator.
#
# Each trial is a short real run: a fresh coordinator, then `mpirun -np 2
# trainer train` (ResNet-18 TorchScript base with random weights, 32 px,
# synthetic data). A "load" trial also runs coordinator_load beside it:
# --watchers Watch streams and --pollers clients calling GetStatus and Ranks
# every --poll-interval-ms, all on their own connections, plus optional
# stuck watchers. Trials alternate (base, load, load, base, base, load, ...)
# so a change in the machine's background load, or an advantage of running
# first or second, hits both alike.
#
#   bench/coordinator_load/run_load_bench.sh --bin build/bin [--trainer build/bin/trainer]
#       [--repeats 3] [--epochs 4] [--watchers 50] [--pollers 10] [--poll-interval-ms 100]
#       [--stuck-watchers 0] [--train 2000]
#
# Throughput is the coordinator's aggregated train img/s (the sum over ranks
# of each rank's end-of-epoch figure), averaged over the epochs after the
# first (warm-up). Peak RSS is the coordinator's VmHWM from /proc at the end
# of the trial, CPU its user + system time over the trial; the load
# generator's own CPU time is shown too (it shares the machine here, where a
# real dashboard would not). Prints one row per trial, then the medians and the slowdown.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
bin=build/bin
trainer=""
repeats=3
epochs=4
watchers=50
pollers=10
poll_ms=100
stuck=0
train_images=2000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --trainer) trainer=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --watchers) watchers=$2; shift 2 ;;
    --pollers) pollers=$2; shift 2 ;;
    --poll-interval-ms) poll_ms=$2; shift 2 ;;
    --stuck-watchers) stuck=$2; shift 2 ;;
    --train) train_images=$2; shift 2 ;;
    *) echo "run_load_bench.sh: unknown option '$1' (see the header for the options)" >&2; exit 2 ;;
  esac
done
trainer=${trainer:-$bin/trainer}
for b in coordinator coordctl coordinator_load make-synthetic-cifar; do
  [[ -x "$bin/$b" ]] || { echo "run_load_bench.sh: $bin/$b is missing (build it, or pass --bin)" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xfer-load-bench.XXXXXX")
coordinator_pid=""
load_pid=""
cleanup() {
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null || true
  [[ -n "$coordinator_pid" ]] && kill "$coordinator_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
source "$src/tests/lib/wait.sh"  # launch_coordinator

# Every trial runs the same trainer: a copy, so a rebuild of --trainer's
# directory meanwhile cannot change or remove it (waits up to 5 min for it).
for _ in $(seq 1 300); do [[ -x "$trainer" ]] && break; sleep 1; done
cp "$trainer" "$tmp/trainer" 2>/dev/null ||
  { echo "run_load_bench.sh: trainer $trainer is missing (--trainer)" >&2; exit 2; }

"$bin/make-synthetic-cifar" --out "$tmp/data" --train "$train_images" --test 200 --classes 10 \
  --seed 3 >/dev/null 2>&1
/usr/bin/python3 "$src/tools/export_weights.py" --arch resnet18 --random --seed 1 \
  --out "$tmp/r18.pt" >/dev/null 2>&1

# trial MODE N: prints "MODE N img/s peak_rss_kib coordinator_cpu_s load_cpu_s events polls".
trial() {
  local mode=$1 n=$2 dir="$tmp/$1-$2"
  mkdir -p "$dir"
  launch_coordinator "$dir/port" "$dir/coordinator.log" \
    "$bin/coordinator" --listen 127.0.0.1:0 --port-file "$dir/port" --dataset "shapes=$tmp/data" \
    --checkpoint-dir "$dir/ckpt" --state-dir "$dir/state"
  local run="bench-$mode-$n"
  if [[ $mode == load ]]; then
    "$bin/coordinator_load" --coordinator "$address" --run "$run" --watchers "$watchers" \
      --pollers "$pollers" --poll-interval-ms "$poll_ms" --stuck-watchers "$stuck" \
      --json "$dir/load.json" >"$dir/load.log" 2>&1 &
    load_pid=$!
  fi
  mpirun --oversubscribe -np 2 "$tmp/trainer" train --coordinator "$address" --threads 1 \
    --progress-every 0 --run-name "$run" --dataset shapes --run-dir "$dir/run" \
    --arch torchscript --base "$tmp/r18.pt" --num-classes 10 --image-size 32 --batch-size 32 \
    --full-epochs "$epochs" --full-lr 1e-3 --head-epochs 0 --finetune-epochs 0 --seed 5 \
    >"$dir/train.log" 2>&1 || { tail -20 "$dir/train.log" >&2; exit 1; }
  local events=- polls=- load_cpu=-
  if [[ $mode == load ]]; then
    wait "$load_pid" || { cat "$dir/load.log" >&2; exit 1; }
    load_pid=""
    read -r events polls load_cpu < <(/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["watch_events"], r["polls"], "%.1f" % r["cpu_seconds"])' "$dir/load.json")
  fi
  local rss cpu
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$coordinator_pid/status")
  # utime + stime of the coordinator, in seconds.
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$coordinator_pid/stat")
  "$bin/coordctl" --coordinator "$address" metrics "$run" --csv >"$dir/metrics.csv"
  kill -TERM "$coordinator_pid"
  wait "$coordinator_pid" || true
  coordinator_pid=""
  local ips
  ips=$(/usr/bin/python3 -c '
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["split"] == "train"]
rows = rows[1:] if len(rows) > 1 else rows
print("%.1f" % (sum(float(r["images_per_second"]) for r in rows) / len(rows)))' "$dir/metrics.csv")
  echo "$mode $n $ips $rss $cpu $load_cpu $events $polls"
}

echo "# $repeats pairs of (base, load) trials: 2 ranks, $epochs epochs of $((train_images * 4 / 5)) images;" \
  "load = $watchers watchers + $pollers pollers every ${poll_ms} ms + $stuck stuck watchers"
printf "%-6s %5s %8s %16s %12s %11s %12s %8s\n" mode trial "img/s" "coord peak RSS" \
  "coord CPU s" "load CPU s" "watch events" polls
: >"$tmp/rows"
for n in $(seq 1 "$repeats"); do
  # Odd pairs run base first, even pairs load first: whatever the first trial
  # of a pair gains or loses (warm page cache, a neighbour's build) hits both.
  order="base load"
  [[ $((n % 2)) -eq 0 ]] && order="load base"
  for mode in $order; do
    row=$(trial "$mode" "$n")
    echo "$row" >>"$tmp/rows"
    read -r m t ips rss cpu load_cpu events polls <<<"$row"
    printf "%-6s %5s %8s %12s KiB %12s %11s %12s %8s\n" "$m" "$t" "$ips" "$rss" "$cpu" "$load_cpu" \
      "$events" "$polls"
  done
done
/usr/bin/python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def med(mode, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == mode)
base, load = med("base", 2), med("load", 2)
print("median img/s: without load %.1f, with load %.1f, slowdown %.1f%%" %
      (base, load, 100.0 * (base - load) / base))
print("median coordinator peak RSS: without load %.1f MiB, with load %.1f MiB" %
      (med("base", 3) / 1024, med("load", 3) / 1024))
PY
