#!/usr/bin/env bash
# TensorBoard event files of the real coordinator binary: a 2-rank run's
# metrics (head then finetune, then test) reported through the client
# library, with a coordinator restart in between; the files are read by an
# independent Python reader (tfevents_reader.py) and compared value by value
# with `coordctl metrics RUN --json`. A flipped or missing byte must make
# the reader fail, and an unwritable run directory must show in
# `coordctl status` without failing any report.
#   usage: tensorboard_e2e_test.sh BIN_DIR TEST_SOURCE_DIR
source "$(dirname "$0")/../e2e/lib.sh"
bin="$1"
src="$2"
py=/usr/bin/python3

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 100 --test 20 --classes 10 >/dev/null 2>&1
# The flag comes from the config file (the key is the flag's name).
cat >"$TMP/coordinator.toml" <<CONFIG
dataset = ["synthetic=$TMP/data"]
checkpoint-dir = "$TMP/ckpt"
state-dir = "$TMP/state"
tensorboard-dir = "$TMP/tb"
CONFIG

start_coordinator() {
  launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
    "$bin/coordinator" --config "$TMP/coordinator.toml" --listen 127.0.0.1:0 --rank-timeout 0 \
    --port-file "$TMP/port"
}
drive() {
  "$bin/tensorboard_report_driver" --coordinator "$address" --world-size 2 "$@" \
    >>"$TMP/driver.log" 2>&1 || { cat "$TMP/driver.log"; fail "driver failed: $*"; }
}
read_events() {  # DIR OUT: the reader must succeed
  "$py" "$src/tfevents_reader.py" "$1" >"$2" 2>"$2.err" || { cat "$2.err"; fail "reader failed on $1"; }
}
count_files() { find "$1" -name '*tfevents*' | wc -l; }
compare() {  # RUN: event files against the history
  "$bin/coordctl" --coordinator "$address" metrics "$1" --json >"$TMP/$1.history.json" ||
    fail "coordctl metrics $1 failed"
  read_events "$TMP/tb/$1" "$TMP/$1.events.json"
  "$py" "$src/tensorboard_compare.py" "$TMP/$1.history.json" "$TMP/$1.events.json" 2 ||
    fail "event files of run $1 differ from its history"
}

# A --tensorboard-dir that cannot be created stops the coordinator at start-up.
echo "a file" >"$TMP/plain-file"
expect_fail "$TMP/badtb.out" "$bin/coordinator" --listen 127.0.0.1:0 --dataset "synthetic=$TMP/data" \
  --checkpoint-dir "$TMP/ckpt-bad" --state-dir "$TMP/state-bad" --tensorboard-dir "$TMP/plain-file/tb"
expect_contains "$TMP/badtb.out" "--tensorboard-dir $TMP/plain-file/tb: cannot create directory"

start_coordinator
expect_contains "$TMP/coordinator.log" "tensorboard: $TMP/tb"

# Head phase. Each epoch is on disk as soon as its last report is answered.
drive --run demo --phases head:2
[[ $(count_files "$TMP/tb/demo") -eq 1 ]] || fail "expected one event file after the head phase"
read_events "$TMP/tb/demo" "$TMP/head.json"
"$py" - "$TMP/head.json" <<'PY' || fail "head-phase steps are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["files"][0]["file_version"] == "brain.Event:2", d["files"]
steps = sorted({s["step"] for s in d["scalars"] if s["tag"] == "train/loss"})
assert steps == [1, 2], steps
PY
compare demo

# A restart writes no epoch again; fine-tuning then goes to a second file,
# its steps continuing after the head's.
stop_coordinator
start_coordinator
[[ $(count_files "$TMP/tb/demo") -eq 1 ]] || fail "the restart rewrote stored epochs"
drive --run demo --phases finetune:2 --first-global-step 6 --test --end
[[ $(count_files "$TMP/tb/demo") -eq 2 ]] || fail "expected a second event file after the restart"
compare demo
"$py" - "$TMP/demo.events.json" <<'PY' || fail "finetune/test steps are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
train = sorted(s["step"] for s in d["scalars"] if s["tag"] == "train/loss")
test = [s["step"] for s in d["scalars"] if s["tag"] == "test/top1"]
phase = {s["step"]: s["value"] for s in d["scalars"] if s["tag"] == "phase"}
assert train == [1, 2, 3, 4], train
assert test == [4], test
assert phase == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}, phase
PY

# The reader is not fooled: a flipped byte anywhere in a record, a truncated
# file.
file=$(find "$TMP/tb/demo" -name '*tfevents*' | sort | head -1)
size=$(stat -c %s "$file")
for offset in 3 9 $((size / 2)) $((size - 2)); do
  cp "$file" "$TMP/flipped.tfevents"
  "$py" - "$TMP/flipped.tfevents" "$offset" <<'PY'
import sys
path, offset = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
data[offset] ^= 0x01
open(path, "wb").write(data)
PY
  expect_fail "$TMP/flipped.out" "$py" "$src/tfevents_reader.py" "$TMP/flipped.tfevents"
  expect_contains "$TMP/flipped.out" "CRC"
done
head -c $((size - 3)) "$file" >"$TMP/truncated.tfevents"
expect_fail "$TMP/truncated.out" "$py" "$src/tfevents_reader.py" "$TMP/truncated.tfevents"
expect_contains "$TMP/truncated.out" "truncated"

# A run whose directory cannot be created: every report is still taken, the
# failure is listed once in the coordinator's recent errors.
mkdir -p "$TMP/tb"
echo "not a directory" >"$TMP/tb/blocked"
drive --run blocked --phases head:2 --end
"$bin/coordctl" --coordinator "$address" --json status >"$TMP/status.json"
expect_contains "$TMP/status.json" "tensorboard: run 'blocked'"
[[ $(grep -c "tensorboard: run 'blocked'" "$TMP/status.json") -eq 1 ]] ||
  fail "the lasting failure was reported more than once"
"$bin/coordctl" --coordinator "$address" metrics blocked --json >"$TMP/blocked.json"
"$py" -c "import json,sys; assert len(json.load(open(sys.argv[1]))['epochs']) == 4" \
  "$TMP/blocked.json" || fail "reports of the blocked run were not all stored"

stop_coordinator
echo "tensorboard e2e: ok"
