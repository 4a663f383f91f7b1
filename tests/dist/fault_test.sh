#!/usr/bin/env bash
# A rank that dies, hangs or fails mid-training ends the whole job: every
# rank exits (mpirun non-zero) within a bound, and the output names the
# failed rank and the operation. Usage: fault_test.sh MPIEXEC DRIVER
source "$(dirname "$0")/../e2e/lib.sh"
MPIEXEC=$1
DRIVER=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=("$MPIEXEC" --allow-run-as-root --oversubscribe)
BOUND=60  # seconds; a job that hangs is killed by `timeout` and fails here

# run_job NAME NP ARGS...: runs the driver under mpirun, output to $TMP/NAME.log,
# exit status to $TMP/NAME.rc, seconds taken to $TMP/NAME.s; fails if the job
# outlives the hard limit (it is then killed).
LIMIT=$((BOUND + 30))
run_job() {
  local name=$1 np=$2
  shift 2
  local rc=0 start=$SECONDS
  timeout -s KILL "$LIMIT" "${MPIRUN[@]}" -np "$np" "$@" >"$TMP/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$TMP/$name.rc"
  echo $((SECONDS - start)) >"$TMP/$name.s"
  if [ $((SECONDS - start)) -ge "$LIMIT" ]; then
    cat "$TMP/$name.log" >&2
    fail "$name: the job was still running after $LIMIT s"
  fi
}

# expect_within_bound NAME: every rank was gone within $BOUND seconds.
expect_within_bound() {
  local took
  took=$(cat "$TMP/$1.s")
  [ "$took" -le "$BOUND" ] || { cat "$TMP/$1.log" >&2; fail "$1: took $took s (bound $BOUND s)"; }
}

expect_job_failed() {
  local name=$1
  local rc
  rc=$(cat "$TMP/$name.rc")
  [ "$rc" != 0 ] || { cat "$TMP/$name.log" >&2; fail "$name: mpirun exited 0 after a rank failed"; }
}

# Healthy run first: the driver itself works and exits 0.
run_job healthy 3 "$DRIVER" --steps 4 --check-sync-every 2
[ "$(cat "$TMP/healthy.rc")" = 0 ] || { cat "$TMP/healthy.log" >&2; fail "healthy job failed"; }
expect_contains "$TMP/healthy.log" "training finished"

# 1. SIGKILL rank 1 at step 3, mpirun's default policy.
run_job kill 3 "$DRIVER" --fail kill --fail-rank 1 --fail-step 3 --steps 50
expect_job_failed kill
expect_within_bound kill
expect_contains "$TMP/kill.log" "rank 1"
expect_contains "$TMP/kill.log" "allreduce"

# 2. SIGKILL with mpirun told to keep the job going (as srun does by default):
#    the survivors must notice the dead peer themselves and abort.
run_job kill_recovery 3 --enable-recovery "$DRIVER" --fail kill --fail-rank 1 --fail-step 3 \
  --steps 50
# (mpirun's own exit status is 0 under --enable-recovery even after
# MPI_Abort, so the check is that both survivors said why and were gone.)
expect_within_bound kill_recovery
for r in 0 2; do
  grep -q " r$r rank $r/3 on .*rank 1 (pid [0-9]* on .*) is no longer running" \
    "$TMP/kill_recovery.log" || { cat "$TMP/kill_recovery.log" >&2; fail "rank $r did not name rank 1"; }
done
expect_contains "$TMP/kill_recovery.log" "rank 1 (pid"
expect_contains "$TMP/kill_recovery.log" "allreduce #"
expect_contains "$TMP/kill_recovery.log" "bucket 1 of 1"
expect_contains "$TMP/kill_recovery.log" "step 3"

# 3. Rank 2 hangs outside any collective: the others time out (10 s here).
run_job hang 3 "$DRIVER" --fail hang --fail-rank 2 --fail-step 3 --steps 50 \
  --collective-timeout 10
expect_job_failed hang
expect_within_bound hang
expect_contains "$TMP/hang.log" "timed out after"
expect_contains "$TMP/hang.log" "allreduce #"
expect_contains "$TMP/hang.log" "step 3"
expect_contains "$TMP/hang.log" "rank 0/3 on"

# 4. Rank 1 throws (bad input on its side): it logs and aborts the job.
run_job throw 2 "$DRIVER" --fail throw --fail-rank 1 --fail-step 2 --steps 50
expect_job_failed throw
expect_within_bound throw
expect_contains "$TMP/throw.log" "rank 1/2 on"
expect_contains "$TMP/throw.log" "training failed: injected failure"

for f in kill kill_recovery hang throw; do grep -E " C " "$TMP/$f.log" | sed "s/^/[$f] /"; done
echo "dist fault tests passed"
