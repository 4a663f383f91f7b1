#!/usr/bin/env bash
# deploy/run-local.sh, the workstation path: a whole small job through it
# (coordinator started, mpirun -np 2, report written, coordinator stopped),
# its usage errors, and Ctrl-C (SIGINT to the script) in the middle of
# training: the script exits 130 within seconds and leaves no coordinator
# or trainer process behind.   usage: run_local_test.sh BIN_DIR SOURCE_DIR
source "$(dirname "$0")/lib.sh"
BIN=$1
SRC=$2
run_local="$SRC/deploy/run-local.sh"
script_pid=""
cleanup_run_local() {
  [[ -n "$script_pid" ]] && kill -TERM "$script_pid" 2>/dev/null || true
  pkill -TERM -f "$TMP" 2>/dev/null || true
}
at_exit cleanup_run_local

# Processes (other than this test's shell) whose command line mentions $TMP.
leftovers() { pgrep -af -- "$TMP" | grep -v -e "run_local_test" -e "pgrep" || true; }
no_leftovers() {
  leftovers >"$TMP/leftovers"
  [[ ! -s "$TMP/leftovers" ]]
}

"$BIN/make-synthetic-cifar" --out "$TMP/data" --train 400 --test 80 --classes 10 --seed 2 \
  >/dev/null 2>&1 || fail "make-synthetic-cifar"
trainer_flags=(--dataset shapes --num-classes 10 --image-size 32 --batch-size 16 --threads 1)

# Usage errors name the problem.
expect_fail "$TMP/usage.out" "$run_local" --bin "$BIN" --dir "$TMP/local" -- --run-name x
expect_contains "$TMP/usage.out" "no dataset"
expect_fail "$TMP/usage2.out" "$run_local" --frobnicate
expect_contains "$TMP/usage2.out" "unknown option '--frobnicate'"
expect_fail "$TMP/usage3.out" "$run_local" --bin "$TMP/nowhere" --dataset "shapes=$TMP/data"
expect_contains "$TMP/usage3.out" "$TMP/nowhere/coordinator is missing"

# A whole job.
"$run_local" --bin "$BIN" --dir "$TMP/local" --np 2 --dataset "shapes=$TMP/data" -- \
  --run-name whole --run-dir "$TMP/run" "${trainer_flags[@]}" --head-epochs 1 \
  --finetune-epochs 0 >"$TMP/whole.log" 2>&1 || { cat "$TMP/whole.log"; fail "run-local.sh failed"; }
expect_contains "$TMP/whole.log" "coordinator at 127.0.0.1:"
expect_contains "$TMP/whole.log" "finished: "
expect_contains "$TMP/whole.log" "coordinator stopped"
[[ -s "$TMP/run/report.json" ]] || fail "no report after run-local.sh"
[[ -d "$TMP/local/checkpoints" && -d "$TMP/local/state" ]] || fail "no coordinator state in --dir"
wait_until --show "$TMP/leftovers" "no process left after a finished job" -- no_leftovers

# Ctrl-C in the middle of training. A background job of a script starts with
# SIGINT ignored (and bash cannot trap a signal ignored at entry), so it is
# launched with SIGINT back at its default, as a terminal's foreground job has it.
/usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$run_local" --bin "$BIN" --dir "$TMP/local2" --np 2 --dataset "shapes=$TMP/data" -- \
  --run-name interrupted --run-dir "$TMP/run2" "${trainer_flags[@]}" --head-epochs 0 \
  --finetune-epochs 50 >"$TMP/interrupted.log" 2>&1 &
script_pid=$!
wait_until --pid "$script_pid" --show "$TMP/interrupted.log" "training to start" -- \
  grep -q "phase finetune" "$TMP/interrupted.log"
kill -INT "$script_pid"
since=$SECONDS
script_gone() { ! kill -0 "$script_pid" 2>/dev/null; }
wait_until --show "$TMP/interrupted.log" "run-local.sh to exit after SIGINT" -- script_gone
echo "run-local.sh exited $((SECONDS - since)) s after SIGINT"
rc=0
wait "$script_pid" || rc=$?
script_pid=""
[[ $rc -eq 130 ]] || { cat "$TMP/interrupted.log"; fail "run-local.sh exited $rc after SIGINT, expected 130"; }
expect_contains "$TMP/interrupted.log" "interrupted; stopping the job and the coordinator"
wait_until --show "$TMP/leftovers" "no process left after Ctrl-C" -- no_leftovers
# The service's example configuration parses and serves (its paths and tokens
# replaced by this test's: flags override the file).
echo "admin-token-0123456789abcdef" >"$TMP/admin.token"
echo "read-token-0123456789abcdef" >"$TMP/read.token"
launch_coordinator "$TMP/service.port" "$TMP/service.log" \
  "$BIN/coordinator" --config "$SRC/deploy/coordinator.example.toml" --listen 127.0.0.1:0 \
  --port-file "$TMP/service.port" --dataset "cifar100=$TMP/data" --checkpoint-dir "$TMP/svc/ckpt" \
  --state-dir "$TMP/svc/state" --token-file "$TMP/admin.token" --read-token-file "$TMP/read.token"
stop_coordinator
expect_contains "$TMP/service.log" "auth on"
echo "PASS"
