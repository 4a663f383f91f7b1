# Helpers for the training job's end-to-end tests: a real coordinator on a
# free port, and `trainer train` under mpirun. A test script sources this
# first; its arguments are BIN_DIR MPIEXEC [SOURCE_DIR].
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
BIN=$1
MPIEXEC=$2
SRC=${3:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# start_coordinator NAME=DIR...: serves the datasets; sets $address.
start_coordinator() {
  local flags=()
  for d in "$@"; do flags+=(--dataset "$d"); done
  launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
    "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" "${flags[@]}" \
    --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state" --keep-last 2
}

# train NP LOG ARGS...: `trainer train` on NP ranks, 1 thread each, output in LOG.
# Returns trainer's exit status.
train() {
  local np="$1" log="$2"
  shift 2
  "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" \
    "$BIN/trainer" train --coordinator "$address" --threads 1 --progress-every 0 "$@" >"$log" 2>&1
}

# test_trainers [TEXT]: the trainer processes of this test (their command line
# names $TMP/, or TEXT).
test_trainers() {
  local p exe
  exe=$(readlink -f "$BIN/trainer")
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == "$exe" ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "${1:-$TMP/}" || continue
    echo "${p#/proc/}"
  done
}

# ctl ARGS...: coordctl against the test's coordinator.
ctl() {
  "$BIN/coordctl" --coordinator "$address" --retry-for 5 "$@"
}

py() {
  /usr/bin/python3 "$@"
}

# make_data TRAIN TEST SEED: a 10-class synthetic dataset in $TMP/data.
make_data() {
  "$BIN/make-synthetic-cifar" --out "$TMP/data" --train "$1" --test "$2" --classes 10 \
    --seed "$3" >/dev/null 2>&1 || fail "make-synthetic-cifar"
}

# random_weights ARCH SEED OUT [--torchscript...]: tools/export_weights.py --random.
random_weights() {
  local arch=$1 seed=$2 out=$3
  shift 3
  py "$SRC/tools/export_weights.py" --arch "$arch" --random --seed "$seed" --out "$out" "$@" \
    >/dev/null 2>&1 || fail "export_weights.py --arch $arch --random"
}
