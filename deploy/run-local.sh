#!/usr/bin/env bash
# The workstation path: a coordinator for this one job, `mpirun -np N trainer
# train`, and the coordinator stopped again when the job ends, fails or is
# interrupted (Ctrl-C). Only the processes this script started are signalled.
#
#   deploy/run-local.sh --dataset cifar100=data/cifar-100 [--np N] [--dir D] \
#       -- --run-name b0 --dataset cifar100 --weights b0.pt [more trainer train flags]
#
# Options (or the environment variable beside each):
#   --dataset NAME=DIR  dataset the coordinator serves, repeatable   XFER_DATASETS (space-separated)
#   --np N              ranks (default: the GPUs nvidia-smi lists, else 2 CPU ranks)   XFER_NP
#   --dir D             coordinator state, checkpoints and its log (default runs/local)  XFER_LOCAL_DIR
#   --bin D             where the binaries are (default build/bin)  XFER_BIN
# Everything after `--` goes to `trainer train` (its --coordinator is set here).
# Exit status: the trainer's (130 after Ctrl-C).
set -euo pipefail

bin="${XFER_BIN:-build/bin}"
dir="${XFER_LOCAL_DIR:-runs/local}"
np="${XFER_NP:-}"
read -r -a datasets <<<"${XFER_DATASETS:-}"

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit "$1"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dataset) datasets+=("${2:?--dataset needs NAME=DIR}"); shift 2 ;;
    --np) np="${2:?--np needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a folder}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a folder}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage 0 ;;
    *) echo "run-local.sh: unknown option '$1' (expected --dataset, --np, --dir, --bin, then -- and the trainer's flags)" >&2; exit 2 ;;
  esac
done

if [[ ${#datasets[@]} -eq 0 ]]; then
  echo "run-local.sh: no dataset: give --dataset NAME=DIR (or XFER_DATASETS)" >&2
  exit 2
fi
for tool in coordinator trainer; do
  [[ -x "$bin/$tool" ]] || { echo "run-local.sh: $bin/$tool is missing: build first (deploy/build.sh) or pass --bin" >&2; exit 2; }
done
command -v mpirun >/dev/null || { echo "run-local.sh: mpirun not found: run deploy/install-deps.sh" >&2; exit 2; }
if [[ -z "$np" ]]; then
  np=2
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    [[ "$gpus" -gt 0 ]] && np=$gpus
  fi
fi
[[ "$np" =~ ^[1-9][0-9]*$ ]] || { echo "run-local.sh: --np '$np' is not a positive number" >&2; exit 2; }

mkdir -p "$dir"
log="$dir/coordinator.log"
port_file="$dir/coordinator.port"
rm -f "$port_file"
dataset_flags=()
for d in "${datasets[@]}"; do dataset_flags+=(--dataset "$d"); done

coordinator_pid=""
trainer_pid=""
stop() {
  # Only what this script started: the mpirun (which stops its ranks) and the coordinator.
  if [[ -n "$trainer_pid" ]] && kill -0 "$trainer_pid" 2>/dev/null; then
    kill -TERM "$trainer_pid" 2>/dev/null || true
    wait "$trainer_pid" 2>/dev/null || true
  fi
  if [[ -n "$coordinator_pid" ]] && kill -0 "$coordinator_pid" 2>/dev/null; then
    kill -TERM "$coordinator_pid" 2>/dev/null || true
    wait "$coordinator_pid" 2>/dev/null || true
    echo "run-local.sh: coordinator stopped (log: $log)" >&2
  fi
  rm -f "$port_file"
}
interrupted() {
  echo "run-local.sh: interrupted; stopping the job and the coordinator" >&2
  stop
  exit 130
}
trap stop EXIT
trap interrupted INT TERM

"$bin/coordinator" --listen 127.0.0.1:0 --port-file "$port_file" "${dataset_flags[@]}" \
  --checkpoint-dir "$dir/checkpoints" --state-dir "$dir/state" >>"$log" 2>&1 &
coordinator_pid=$!
for _ in $(seq 1 300); do
  [[ -s "$port_file" ]] && break
  kill -0 "$coordinator_pid" 2>/dev/null || { tail -20 "$log" >&2; echo "run-local.sh: the coordinator exited (log: $log)" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$port_file" ]] || { echo "run-local.sh: the coordinator wrote no port within 30 s (log: $log)" >&2; exit 1; }
address="127.0.0.1:$(cat "$port_file")"
echo "run-local.sh: coordinator at $address (state: $dir, log: $log); $np ranks" >&2

mpi_flags=()
[[ "$(id -u)" == 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(( np > $(nproc) )) && mpi_flags+=(--oversubscribe)
# In the background so that Ctrl-C reaches the trap at once, not after mpirun ends.
mpirun "${mpi_flags[@]}" -np "$np" "$bin/trainer" train --coordinator "$address" "$@" &
trainer_pid=$!
rc=0
wait "$trainer_pid" || rc=$?
trainer_pid=""
exit "$rc"
