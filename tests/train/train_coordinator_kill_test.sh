#!/usr/bin/env bash
# The coordinator killed during training (SIGKILL, twice) and restarted on the
# same port with the same --state-dir and --checkpoint-dir, while a 2-rank job
# runs with a generous --coordinator-retry:
#   1. killed from outside at step 5 of head epoch 1 and kept down until a
#      rank logged a failed call, and 2 s more: the ranks' streams and calls
#      retry with backoff and go on;
#   2. restarted with the test hook --test-crash-in-put 1, it kills itself on
#      the first chunk of the next checkpoint upload (head epoch 1's), leaving
#      a partial *.tmp blob; restarted plainly, it deletes that leftover, and
#      the trainer's retried Put lands exactly once.
# The job then exits 0, and: each restarted coordinator logged that it reloaded
# the run; one checkpoint per epoch, ids unique, each downloadable with its
# SHA-256 verified, and MANIFEST.json and the blob files agree (no duplicate,
# no orphan, no temporary); the metrics history has every (phase, epoch, split)
# once, every train epoch with exactly the train split's 960 samples (nothing
# lost, nothing counted twice) and the figures rank 0 wrote to epochs.csv; the
# final report covers the whole test split; the run is COMPLETED.
# usage: train_coordinator_kill_test.sh BIN_DIR MPIEXEC
source "$(dirname "$0")/train_lib.sh"

launcher=""
at_exit '[[ -n "$launcher" ]] && kill "$launcher" 2>/dev/null'

make_data 1200 200 7
port=0
# coordinator_up LOG [FLAGS...]: starts the coordinator on $port (0 at first:
# a free one, kept for the restarts) with the test's directories; keeps every
# checkpoint (--keep-last 10) so each epoch's can be checked.
coordinator_up() {
  local log=$1
  shift
  launch_coordinator "$TMP/port" "$log" \
    "$BIN/coordinator" --listen "127.0.0.1:$port" --port-file "$TMP/port" \
    --dataset "shapes=$TMP/data" --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state" \
    --keep-best 1 --keep-last 10 "$@"
  port=$(cat "$TMP/port")
}

# coordinator_gone: waits for the coordinator to exit (the job must not end
# first); sets $coordinator_rc to its exit status. The crash hook needs the
# ranks to reconnect and finish an epoch first: a longer deadline.
coordinator_exited() { ! kill -0 "$coordinator_pid" 2>/dev/null; }
coordinator_gone() {
  coordinator_rc=0
  wait_until --pid "$launcher" --show "$TMP/train.log" --timeout $((3 * XFER_TEST_TIMEOUT)) \
    "the coordinator (pid $coordinator_pid) to exit before the job" -- coordinator_exited
  wait "$coordinator_pid" || coordinator_rc=$?
  coordinator_pid=""
}

coordinator_up "$TMP/coord1.log"
# 960 train samples (train[20%:]), global batch 2 x 16: 30 steps per epoch;
# head 2 epochs + finetune 1: three epoch checkpoints.
timeout -k 10 600 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN/trainer" train \
  --coordinator "$address" --coordinator-retry 120 --threads 1 --progress-every 0 \
  --run-name kill --run-dir "$TMP/run" --dataset shapes --num-classes 10 --image-size 32 \
  --batch-size 16 --head-epochs 2 --finetune-epochs 1 --finetune-lr 1e-4 --seed 3 \
  >"$TMP/train.log" 2>&1 &
launcher=$!

# 1. SIGKILL from outside at step 5 of head epoch 1; down for 3 s.
wait_until --pid "$launcher" --show "$TMP/train.log" "the progress line of head 1 step 5" -- \
  grep -Eq "head 1/2 +5/30" "$TMP/train.log"
kill -KILL "$coordinator_pid"
coordinator_gone
[[ $coordinator_rc -eq 137 ]] || fail "the coordinator killed with SIGKILL exited $coordinator_rc, expected 137"
# Down until a rank has noticed (its data stream broke, or its next report
# failed), then 2 s more: the outage itself, not a wait for anything.
wait_until --pid "$launcher" --show "$TMP/train.log" \
  "a rank's failed call to the coordinator while it is down" -- \
  grep -q "to coordinator $address: UNAVAILABLE" "$TMP/train.log"
sleep 2

# 2. Back with the crash hook: the next Put (head epoch 1's checkpoint) kills it.
coordinator_up "$TMP/coord2.log" --test-crash-in-put 1
coordinator_gone
[[ $coordinator_rc -eq 137 ]] ||
  { cat "$TMP/coord2.log"; fail "the coordinator with --test-crash-in-put 1 exited $coordinator_rc, expected 137 (SIGKILL)"; }
# It loaded the run (no metrics yet: the ranks report every 20 steps).
grep -Eq "run registry: 1 runs .*from $TMP/state/runs.json" "$TMP/coord2.log" ||
  { cat "$TMP/coord2.log"; fail "the restarted coordinator did not load the run record"; }
expect_contains "$TMP/coord2.log" "test hook --test-crash-in-put 1: killing the coordinator (SIGKILL) during the upload of checkpoint"
ls "$TMP/ckpt"/*.tmp >/dev/null 2>&1 || { ls -l "$TMP/ckpt"; fail "the interrupted upload left no temporary blob in the checkpoint folder"; }
sleep 2  # the second outage

# 3. Back for good: recovery removes the partial blob, the retried Put lands once.
coordinator_up "$TMP/coord3.log"
rc=0
wait "$launcher" || rc=$?
launcher=""
[[ $rc -eq 0 ]] || { cat "$TMP/train.log"; fail "the job exited $rc after the coordinator restarts, expected 0"; }
expect_contains "$TMP/train.log" "finished: 90 optimizer steps in total"
grep -Eq "run registry: 1 runs .*from $TMP/state/runs.json" "$TMP/coord3.log" ||
  { cat "$TMP/coord3.log"; fail "the restarted coordinator did not load the run record"; }
# Head epoch 1's metrics went to the second coordinator; the third replays them.
grep -Eq "metrics: run 'kill': reloaded [1-9][0-9]* records, 2 completed epochs" "$TMP/coord3.log" ||
  { cat "$TMP/coord3.log"; fail "the restarted coordinator did not reload head epoch 1's metrics"; }
expect_contains "$TMP/coord3.log" "(a write a crash interrupted)"
# The ranks retried: their data streams and calls while it was down, the upload after the hook.
grep -Eq "(StreamShard|Report) to coordinator $address: UNAVAILABLE .*retrying in" "$TMP/train.log" ||
  { cat "$TMP/train.log"; fail "the trainer log shows no retried StreamShard or Report"; }
grep -Eq "Put to coordinator $address: UNAVAILABLE .*retrying in" "$TMP/train.log" ||
  { cat "$TMP/train.log"; fail "the trainer log shows no retried checkpoint Put"; }
echo "retries logged by the ranks: $(grep -c 'retrying in' "$TMP/train.log")"

# Checkpoints: one per epoch, ids unique, each downloaded with its SHA-256 verified.
ctl --json checkpoints list kill >"$TMP/checkpoints.json" || fail "coordctl checkpoints list kill"
py - "$TMP/checkpoints.json" "$TMP/run/epochs.csv" >"$TMP/ids" <<'PY' || fail "checkpoint list (above)"
import csv, json, sys
ckpts = json.load(open(sys.argv[1]))["checkpoints"]
ids = [c["id"] for c in ckpts]
assert len(set(ids)) == len(ids), "duplicate ids: %s" % ids
epochs = sorted((c["phase"], c["epoch"]) for c in ckpts)
assert epochs == [("finetune", 3), ("head", 1), ("head", 2)], \
    "expected one checkpoint per epoch (head 1, head 2, finetune 3), got %s" % epochs
rows = list(csv.DictReader(open(sys.argv[2])))
assert sorted(r["checkpoint"] for r in rows) == sorted(ids), \
    "epochs.csv names checkpoints %s, the coordinator has %s" % ([r["checkpoint"] for r in rows], ids)
for c in ckpts:
    print(c["id"], c["sha256"])
PY
while read -r id sha; do
  ctl --json checkpoints get "$id" -o "$TMP/$id.pt" --sha256 "$sha" >"$TMP/get.json" ||
    { cat "$TMP/get.json"; fail "coordctl checkpoints get $id"; }
  expect_contains "$TMP/get.json" '"verified": true'
  [[ "$(sha256sum "$TMP/$id.pt" | cut -d' ' -f1)" == "$sha" ]] || fail "checkpoint $id downloaded with another SHA-256 than $sha"
done <"$TMP/ids"

# On disk: the manifest lists exactly the blob files there, no temporary is left.
py - "$TMP/ckpt" "$TMP/checkpoints.json" <<'PY' || fail "checkpoint folder (above)"
import json, os, sys
folder = sys.argv[1]
manifest = json.load(open(os.path.join(folder, "MANIFEST.json")))["checkpoints"]
files = [c["id"] + ".blob" for c in manifest]
uploads = [c["upload_id"] for c in manifest]
assert len(set(files)) == len(files), "MANIFEST.json lists a checkpoint twice: %s" % files
assert len(set(uploads)) == len(uploads), "an upload stored twice: upload ids %s" % uploads
listed = sorted(c["id"] for c in json.load(open(sys.argv[2]))["checkpoints"])
assert sorted(c["id"] for c in manifest) == listed, \
    "MANIFEST.json has %s, List answered %s" % (sorted(c["id"] for c in manifest), listed)
on_disk = sorted(n for n in os.listdir(folder) if n != "MANIFEST.json")
assert on_disk == sorted(files), \
    "the folder holds %s but MANIFEST.json lists %s (orphan or missing blob)" % (on_disk, sorted(files))
print("%d checkpoints, manifest and folder agree" % len(files))
PY

# Metrics: each (phase, epoch, split) once; train epochs whole; equal to epochs.csv.
ctl --json metrics kill >"$TMP/metrics.json" || fail "coordctl metrics kill"
py - "$TMP/metrics.json" "$TMP/run/epochs.csv" <<'PY' || fail "metrics history (above)"
import collections, csv, json, sys
epochs = json.load(open(sys.argv[1]))["epochs"]
keys = collections.Counter((e["phase"], e["epoch"], e["split"]) for e in epochs)
dupes = [k for k, n in keys.items() if n > 1]
assert not dupes, "groups stored more than once: %s" % dupes
by = {(e["phase"], e["epoch"], e["split"]): e for e in epochs}
want = [("finetune", 1), ("head", 1), ("head", 2)]
for split, samples in (("train", 960), ("validation", 240)):
    got = sorted((p, n) for p, n, s in by if s == split)
    assert got == want, "%s epochs: %s, expected %s" % (split, got, want)
    for p, n in want:
        e = by[(p, n, split)]
        assert e["samples"] == samples, \
            "%s %d %s: %d samples, expected %d (lost or double-counted reports)" % (
                p, n, split, e["samples"], samples)
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 3, "epochs.csv has %d rows, expected 3" % len(rows)
for r in rows:
    key = (r["phase"], int(r["epoch"]))
    for split, loss, acc in (("train", "loss", "acc"), ("validation", "val_loss", "val_acc")):
        e = by[key + (split,)]
        for mine, theirs in ((e["loss"], float(r[loss])), (e["top1"], float(r[acc]))):
            assert abs(mine - theirs) <= 1e-5, \
                "%s %s: coordinator %s, epochs.csv %s" % (key, split, (e["loss"], e["top1"]),
                                                         (r[loss], r[acc]))
print("%d metric groups, each once; train epochs of 960 samples; equal to epochs.csv" % len(epochs))
PY

# The final report covers the test split once; the run completed.
ctl --json report kill >"$TMP/report.json" || { cat "$TMP/report.json"; fail "coordctl report kill"; }
py - "$TMP/report.json" <<'PY' || fail "final report (above)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["samples"] == 200, "report of %d samples, expected the test split's 200" % r["samples"]
assert r["num_classes"] == 10 and len(r["classes"]) == 10, (r["num_classes"], len(r["classes"]))
assert len(r["confusion"]) == 10, "confusion has %d rows, expected 10" % len(r["confusion"])
assert sum(sum(row) for row in r["confusion"]) == 200, "confusion sums to %d, expected 200" % sum(
    sum(row) for row in r["confusion"])
PY
ctl --json status kill >"$TMP/status.json"
expect_contains "$TMP/status.json" '"state": "completed"'
echo "PASS"
