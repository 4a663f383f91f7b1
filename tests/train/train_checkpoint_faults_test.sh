#!/usr/bin/env bash
# Checkpoint faults, end to end (issue #9; docs/checkpoints.md "Faults").
#
# corrupt:   a preempted run's newest checkpoint gets a flipped byte (then, in
#            another run, a truncated blob): `coordctl checkpoints get` fails
#            with DATA_LOSS and `coordctl status` shows it; --resume ID of it
#            fails and says why; --resume latest / auto fall back to the newest
#            valid checkpoint, say so, and complete; a run whose checkpoints
#            are all corrupt fails with the list of what was tried; a corrupt
#            best head checkpoint is replaced by the best valid one before
#            fine-tuning.
# full-disk: the coordinator's --checkpoint-dir on a tmpfs sized so that the
#            big checkpoints (full phase epoch 2, fine-tuning: Adam state for
#            every weight) do not fit and the small head one does: the job
#            warns once per lost checkpoint and completes, `coordctl status`
#            shows the error, the stored checkpoints verify and load, no
#            temporary file is left, and a restarted coordinator reads the
#            manifest. Needs root (mount); exits 77 (skipped) otherwise.
# usage: train_checkpoint_faults_test.sh BIN_DIR MPIEXEC SOURCE_DIR corrupt|full-disk
source "$(dirname "$0")/train_lib.sh"
part=${4:?usage: train_checkpoint_faults_test.sh BIN_DIR MPIEXEC SOURCE_DIR corrupt|full-disk}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# start_coord CKPT_DIR: a coordinator of this test (keep-last 2, keep-best 1
# per phase) with its checkpoints in CKPT_DIR; sets $address.
start_coord() {
  launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
    timeout 900 "$BIN/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" \
    --dataset "shapes=$TMP/data" --checkpoint-dir "$1" --state-dir "$TMP/state" \
    --keep-last 2 --keep-best 1
}

stop_coord() {
  if [[ -n "$coordinator_pid" ]]; then
    kill "$coordinator_pid" 2>/dev/null || true
    wait "$coordinator_pid" 2>/dev/null || true
    coordinator_pid=""
  fi
}

# ctrain NP LOG ARGS...: `train` bounded in time.
ctrain() {
  local np=$1 log=$2
  shift 2
  timeout 600 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$BIN/trainer" train \
    --coordinator "$address" --threads 1 --progress-every 0 "$@" >"$log" 2>&1
}

# expect_rc WANT LOG CMD...: CMD's exit status must be WANT.
expect_rc() {
  local want=$1 log=$2 rc=0
  shift 2
  "$@" || rc=$?
  [[ $rc -eq $want ]] || { cat "$log" >&2; fail "exit status $rc, expected $want: $*"; }
}

# expect_job_failed LOG CMD...: CMD must fail (not 0, not 75 = preempted).
expect_job_failed() {
  local log=$1 rc=0
  shift
  "$@" || rc=$?
  [[ $rc -ne 0 && $rc -ne 75 ]] || { cat "$log" >&2; fail "exit status $rc, expected a failure: $*"; }
}

# show LOG: the job's lines about checkpoints it could not use or store (for the test's log).
show() {
  grep -E "is corrupt|resuming from|restor|was not stored|no checkpoint of run" "$1" | sed 's/^/  | /' || true
}

# checkpoint_field JSON_FILE FIELD: one field of `coordctl --json checkpoints best|latest`.
checkpoint_field() {
  py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}

# list_ids RUN: the run's checkpoint ids, newest (epoch, step) first, one a line.
list_ids() {
  ctl --json checkpoints list "$1" >"$TMP/$1.list.json" || fail "coordctl checkpoints list $1"
  py - "$TMP/$1.list.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["checkpoints"]
for x in sorted(c, key=lambda x: (x["epoch"], x["step"], x["created_unix_ms"], x["id"]), reverse=True):
    print(x["id"])
PY
}

# flip_byte FILE: inverts one bit of the byte in the middle of FILE, in place.
flip_byte() {
  py - "$1" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x10]))
PY
}

# expect_data_loss ID: `coordctl checkpoints get ID` fails with DATA_LOSS and writes nothing.
expect_data_loss() {
  local rc=0
  ctl checkpoints get "$1" -o "$TMP/got-$1.pt" >"$TMP/get-$1.out" 2>&1 || rc=$?
  [[ $rc -eq 3 ]] || { cat "$TMP/get-$1.out"; fail "coordctl checkpoints get $1 exited $rc, expected 3"; }
  expect_contains "$TMP/get-$1.out" "DATA_LOSS"
  expect_contains "$TMP/get-$1.out" "checkpoint $1"
  expect_contains "$TMP/get-$1.out" "is corrupt"
  [[ ! -e "$TMP/got-$1.pt" ]] || fail "coordctl wrote $TMP/got-$1.pt for corrupt checkpoint $1"
}

# status_error_contains TEXT...: one of the coordinator's recent errors contains every TEXT.
status_error_contains() {
  ctl --json status >"$TMP/status.json" || fail "coordctl status"
  py - "$TMP/status.json" "$@" <<'PY' || { cat "$TMP/status.json" >&2; fail "coordctl status shows no error with: ${*}"; }
import json, sys
errors = json.load(open(sys.argv[1]))["errors"]
sys.exit(0 if any(all(t in e for t in sys.argv[2:]) for e in errors) else 1)
PY
}

corrupt_part() {
  make_data 600 200 5
  local ck="$TMP/ckpt"
  start_coord "$ck"
  # 480 train samples, global batch 2 x 16: 15 steps per epoch.
  local common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16
                --finetune-epochs 1 --finetune-lr 1e-4 --seed 11)

  # 1. A flipped byte in the newest checkpoint, a mid-epoch one (head epoch 3 step 5).
  expect_rc 75 "$TMP/flip1.log" ctrain 2 "$TMP/flip1.log" --run-name flip --run-dir "$TMP/flip" \
    "${common[@]}" --head-epochs 3 --preempt-after-steps 35
  mapfile -t ids < <(list_ids flip)
  [[ ${#ids[@]} -ge 2 ]] || fail "run flip keeps ${#ids[@]} checkpoints, expected at least 2"
  local bad=${ids[0]} good=${ids[1]}
  ctl --json checkpoints latest flip >"$TMP/flip.latest.json"
  [[ $(checkpoint_field "$TMP/flip.latest.json" step) -eq 35 ]] || fail "latest of flip is not step 35"
  [[ $(checkpoint_field "$TMP/flip.latest.json" id) == "$bad" ]] || fail "latest of flip is not $bad"
  flip_byte "$ck/$bad.blob"
  expect_data_loss "$bad"
  status_error_contains "$bad" "is corrupt"

  # An explicit id never falls back.
  expect_job_failed "$TMP/flip2.log" ctrain 2 "$TMP/flip2.log" --run-name flip --run-dir "$TMP/flip" \
    "${common[@]}" --head-epochs 3 --resume "$bad"
  show "$TMP/flip2.log"
  expect_contains "$TMP/flip2.log" "--resume $bad: checkpoint $bad is corrupt (DATA_LOSS"
  expect_contains "$TMP/flip2.log" "a checkpoint named by its id is never replaced by another"
  if grep -q "resuming from" "$TMP/flip2.log"; then fail "--resume $bad fell back"; fi

  ctrain 2 "$TMP/flip3.log" --run-name flip --run-dir "$TMP/flip" "${common[@]}" --head-epochs 3 \
    --resume latest || { cat "$TMP/flip3.log"; fail "--resume latest after a flipped byte failed"; }
  show "$TMP/flip3.log"
  expect_contains "$TMP/flip3.log" \
    "checkpoint $bad is corrupt (DATA_LOSS at the coordinator); resuming from $good, the newest valid one"
  expect_contains "$TMP/flip3.log" "resuming after head epoch 2 (step 30,"
  expect_contains "$TMP/flip3.log" "finished: 60 optimizer steps in total (30 this attempt)"
  ctl --json status flip >"$TMP/flip.status.json"
  expect_contains "$TMP/flip.status.json" '"state": "completed"'

  # 2. A truncated blob at an epoch boundary (end of head epoch 2), resumed with auto.
  expect_rc 75 "$TMP/cut1.log" ctrain 2 "$TMP/cut1.log" --run-name cut --run-dir "$TMP/cut" \
    "${common[@]}" --head-epochs 3 --preempt-after-steps 30
  mapfile -t ids < <(list_ids cut)
  [[ ${#ids[@]} -ge 2 ]] || fail "run cut keeps ${#ids[@]} checkpoints, expected at least 2"
  bad=${ids[0]}
  good=${ids[1]}
  truncate -s $(($(stat -c %s "$ck/$bad.blob") / 2)) "$ck/$bad.blob"
  expect_data_loss "$bad"
  status_error_contains "$bad" "is corrupt"
  ctrain 2 "$TMP/cut2.log" --run-name cut --run-dir "$TMP/cut" "${common[@]}" --head-epochs 3 \
    --resume auto || { cat "$TMP/cut2.log"; fail "--resume auto after a truncation failed"; }
  show "$TMP/cut2.log"
  expect_contains "$TMP/cut2.log" "continuing from its latest checkpoint $bad"
  expect_contains "$TMP/cut2.log" \
    "checkpoint $bad is corrupt (DATA_LOSS at the coordinator); resuming from $good, the newest valid one"
  expect_contains "$TMP/cut2.log" "resuming after head epoch 1 (step 15,"
  expect_contains "$TMP/cut2.log" "finished: 60 optimizer steps in total (45 this attempt)"

  # Every checkpoint corrupt: nothing to resume, and the error lists what was tried.
  mapfile -t ids < <(list_ids cut)
  for id in "${ids[@]}"; do flip_byte "$ck/$id.blob"; done
  expect_job_failed "$TMP/cut3.log" ctrain 2 "$TMP/cut3.log" --run-name cut --run-dir "$TMP/cut" \
    "${common[@]}" --head-epochs 3 --resume latest
  show "$TMP/cut3.log"
  expect_contains "$TMP/cut3.log" "--resume latest: no checkpoint of run cut is usable; tried"
  for id in "${ids[@]}"; do expect_contains "$TMP/cut3.log" "$id (corrupt (DATA_LOSS at the coordinator))"; done

  # 3. The best head checkpoint corrupt when fine-tuning begins. A head
  # learning rate of 1e-30 leaves the head's weights as they are, so both
  # head epochs have the same val_loss and the first is the best (ties go to
  # the earlier one); the job is preempted at the end of the head phase.
  expect_rc 75 "$TMP/best1.log" ctrain 2 "$TMP/best1.log" --run-name best --run-dir "$TMP/best" \
    "${common[@]}" --head-epochs 2 --head-lr 1e-30 --preempt-after-steps 30
  mapfile -t ids < <(list_ids best)
  [[ ${#ids[@]} -eq 2 ]] || fail "run best keeps ${#ids[@]} checkpoints, expected 2"
  ctl --json checkpoints best best --phase head >"$TMP/best.best.json"
  [[ $(checkpoint_field "$TMP/best.best.json" id) == "${ids[1]}" ]] ||
    { cat "$TMP/best.best.json"; fail "the best head checkpoint is not the first one, ${ids[1]} (test premise)"; }
  flip_byte "$ck/${ids[1]}.blob"
  ctrain 2 "$TMP/best2.log" --run-name best --run-dir "$TMP/best" "${common[@]}" --head-epochs 2 \
    --head-lr 1e-30 --resume latest || { cat "$TMP/best2.log"; fail "the run with a corrupt best head checkpoint failed"; }
  show "$TMP/best2.log"
  expect_contains "$TMP/best2.log" "resuming after head epoch 2 (step 30,"
  expect_contains "$TMP/best2.log" \
    "the best head checkpoint ${ids[1]} is corrupt (DATA_LOSS at the coordinator); restoring ${ids[0]} instead, the best valid one"
  expect_contains "$TMP/best2.log" "restored the best head checkpoint ${ids[0]} (head epoch 2"
  expect_contains "$TMP/best2.log" "finished: 45 optimizer steps in total (15 this attempt)"
}

full_disk_part() {
  [[ $(id -u) -eq 0 ]] || { echo "SKIP: mounting a tmpfs needs root"; exit 77; }
  MNT="$TMP/ckfs"  # global: the EXIT trap needs it
  local mnt=$MNT
  mkdir -p "$mnt"
  mount -t tmpfs -o size=1g xfer-ckpt-faults "$mnt" 2>"$TMP/mount.err" ||
    { cat "$TMP/mount.err"; echo "SKIP: cannot mount a tmpfs"; exit 77; }
  cleanup_disk() {
    stop_coord
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  }
  at_exit cleanup_disk
  make_data 400 100 3
  local ck="$mnt/ckpt"
  start_coord "$ck"
  # 320 train samples, global batch 2 x 16: 10 steps per epoch, 40 in all.
  local common=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16
                --full-epochs 2 --full-lr 1e-3 --head-epochs 1 --finetune-epochs 1
                --finetune-lr 1e-4 --seed 3 --coordinator-retry 20)

  # The checkpoint sizes of this job, from a run with room to spare.
  ctrain 2 "$TMP/probe.log" --run-name probe --run-dir "$TMP/probe" "${common[@]}" ||
    { cat "$TMP/probe.log"; fail "the probe run failed"; }
  ctl --json checkpoints list probe >"$TMP/probe.list.json"
  read -r full head finetune < <(py - "$TMP/probe.list.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["checkpoints"]
size = {x["phase"]: x["size_bytes"] for x in c}
print(size["full"], size["head"], size["finetune"])
PY
)
  echo "checkpoint bytes: full $full, head $head, finetune $finetune"
  for id in $(py -c "import json,sys; print(' '.join(x['id'] for x in json.load(open(sys.argv[1]))['checkpoints']))" "$TMP/probe.list.json"); do
    ctl checkpoints delete "$id" >/dev/null || fail "coordctl checkpoints delete $id"
  done
  # Room for one full-phase and one head checkpoint plus 1 MiB: full epoch 2
  # cannot be written beside full epoch 1, head epoch 1 can, fine-tuning cannot.
  local slack=$((1 << 20))
  [[ $full -gt $((head + 2 * slack)) && $finetune -gt $((head + 2 * slack)) ]] ||
    fail "full/fine-tuning checkpoints ($full, $finetune bytes) not larger than head ones ($head) (test premise)"
  local kib=$(((full + head + slack) / 1024))
  mount -o remount,size=${kib}k "$mnt" || fail "cannot resize the tmpfs to ${kib} KiB"
  df -k "$mnt"

  ctrain 2 "$TMP/disk.log" --run-name disk --run-dir "$TMP/disk" "${common[@]}" ||
    { cat "$TMP/disk.log"; fail "the job failed on a full checkpoint disk (expected it to complete)"; }
  show "$TMP/disk.log"
  expect_contains "$TMP/disk.log" "the checkpoint of full epoch 2 was not stored: Put to coordinator"
  expect_contains "$TMP/disk.log" "the checkpoint of finetune epoch 1 was not stored: Put to coordinator"
  expect_contains "$TMP/disk.log" "RESOURCE_EXHAUSTED"
  expect_contains "$TMP/disk.log" "No space left on device"
  expect_contains "$TMP/disk.log" "training continues without it"
  local warnings
  warnings=$(grep -c "was not stored:" "$TMP/disk.log" || true)
  [[ $warnings -eq 2 ]] || { cat "$TMP/disk.log"; fail "$warnings warnings about lost checkpoints, expected 2"; }
  expect_contains "$TMP/disk.log" "restored the best head checkpoint"
  expect_contains "$TMP/disk.log" "finished: 40 optimizer steps in total (40 this attempt)"
  ctl --json status disk >"$TMP/disk.status.json"
  expect_contains "$TMP/disk.status.json" '"state": "completed"'
  status_error_contains "Put" "run 'disk'" "was not stored" "No space left on device"

  # What was stored before and between the failures is intact, listed, and loads.
  check_stored() {
    ctl --json checkpoints list disk >"$TMP/disk.list.json"
    py - "$TMP/disk.list.json" <<'PY' || fail "run disk's checkpoints are not (full 1, head 2) (above)"
import json, sys
c = json.load(open(sys.argv[1]))["checkpoints"]
got = sorted((x["phase"], x["epoch"]) for x in c)
print("stored:", got)
sys.exit(0 if got == [("full", 1), ("head", 3)] else 1)
PY
    local id
    for id in $(py -c "import json,sys; print(' '.join(x['id'] for x in json.load(open(sys.argv[1]))['checkpoints']))" "$TMP/disk.list.json"); do
      ctl checkpoints get "$id" -o "$TMP/$id.pt" --run disk >"$TMP/get.out" 2>&1 ||
        { cat "$TMP/get.out"; fail "stored checkpoint $id does not verify"; }
      py "$HERE/model_files.py" state "$TMP/$id.pt" phase >/dev/null ||
        fail "stored checkpoint $id does not load"
    done
    # Nothing but the manifest and the two blobs: no temporary or partial file.
    local files
    files=$(find "$ck" -type f -printf '%f\n' | sort | tr '\n' ' ')
    [[ $(find "$ck" -type f | wc -l) -eq 3 && $files == *MANIFEST.json* ]] ||
      fail "the checkpoint folder holds: $files (expected MANIFEST.json and 2 blobs)"
  }
  check_stored
  # The manifest on disk is valid: a restarted coordinator serves the same.
  stop_coord
  start_coord "$ck"
  check_stored
  grep "checkpoint store $ck:" "$TMP/coordinator.log" | tail -1 >"$TMP/recovery.line"
  expect_contains "$TMP/recovery.line" \
    "2 checkpoints of 1 runs; removed 0 temporary and 0 unlisted files; dropped 0 entries"
}

case "$part" in
  corrupt) corrupt_part ;;
  full-disk) full_disk_part ;;
  *) fail "unknown part '$part' (expected corrupt or full-disk)" ;;
esac
echo "PASS ($part)"
