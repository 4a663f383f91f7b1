#!/usr/bin/env bash
# `coordctl watch` against the real coordinator binary (tokens on: the
# watcher holds the read-only one), fed by watch_feed_driver over the client
# library while it watches:
#  - on a pseudo-terminal: the live view (cursor hidden, frames redrawn from
#    the top), the run, the rank rows with the slow rank marked and
#    highlighted, the latest metrics, the final state; the terminal restored
#    and exit 0 for a COMPLETED run, 6 for a FAILED one; SIGINT (Ctrl-C)
#    mid-run restores the terminal and exits 130;
#  - on a pipe: one line per aggregated epoch, no escape codes (as before);
#  - --json on a terminal: machine output, one JSON object per line.
#   usage: watch_live_e2e_test.sh BIN_DIR TEST_SOURCE_DIR
source "$(dirname "$0")/../e2e/lib.sh"
bin="$1"
src="$2"
py=/usr/bin/python3
driver_pid=""
watch_pid=""
at_exit '[[ -n "$driver_pid" ]] && kill "$driver_pid" 2>/dev/null'
at_exit '[[ -n "$watch_pid" ]] && kill "$watch_pid" 2>/dev/null'

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 40 --test 10 --classes 10 >/dev/null 2>&1 ||
  fail "make-synthetic-cifar"
echo "admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$TMP/admin.token"
echo "read-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$TMP/read.token"
chmod 600 "$TMP/admin.token" "$TMP/read.token"
launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
  "$bin/coordinator" --listen 127.0.0.1:0 --port-file "$TMP/port" --dataset "synthetic=$TMP/data" \
  --rank-timeout 0 --checkpoint-dir "$TMP/ckpt" --state-dir "$TMP/state" --token-file "$TMP/admin.token" \
  --read-token-file "$TMP/read.token"
watch=("$bin/coordctl" --coordinator "$address" --token-file "$TMP/read.token" --retry-for 5)

# feed RUN END [ARGS...]: starts the driver in the background; returns once
# the run exists. The driver reports nothing until $TMP/go.RUN exists.
feed() {
  local run=$1 end=$2
  shift 2
  rm -f "$TMP/started"
  "$bin/watch_feed_driver" --coordinator "$address" --token-file "$TMP/admin.token" \
    --run "$run" --end "$end" --started-file "$TMP/started" --go-file "$TMP/go.$run" \
    --go-timeout-s "$XFER_TEST_TIMEOUT" "$@" >"$TMP/$run.driver.log" 2>&1 &
  driver_pid=$!
  wait_until --pid "$driver_pid" --show "$TMP/$run.driver.log" "the driver of $run to start its run" -- \
    test -s "$TMP/started"
}
# watch_on_pty RAW RUN [run_in_pty.py options] -- COMMAND...: COMMAND (a
# watcher of RUN) on a pseudo-terminal in the background, its screen in RAW;
# once it has drawn its first frame, the driver of RUN may go. Sets $watch_pid.
watch_on_pty() {
  local raw=$1 run=$2
  shift 2
  "$py" "$src/run_in_pty.py" --out "$raw" --timeout "$XFER_TEST_TIMEOUT" "$@" &
  watch_pid=$!
  wait_until --pid "$watch_pid" --show "$raw" "the first frame of the watch of $run" -- \
    grep -aqF $'\x1b[H' "$raw"
  touch "$TMP/go.$run"
}
# end_watch: waits for the watcher; sets $rc to its exit status.
end_watch() {
  rc=0
  wait "$watch_pid" || rc=$?
  watch_pid=""
}
finish_feed() {
  wait "$driver_pid" || { cat "$1"; fail "the driver failed: $1"; }
  driver_pid=""
}

# last_frame FILE: the last screen drawn, escape codes removed.
last_frame() {
  "$py" - "$1" <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
frame = raw.split("\x1b[H")[-1]
print(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame).replace("\r", ""), end="")
PY
}

# ---- A run that completes, watched on a terminal to its end.
feed live completed --epochs 2 --steps 4 --step-ms 150
watch_on_pty "$TMP/live.raw" live --columns 120 -- "${watch[@]}" watch live --interval 0.2
end_watch
finish_feed "$TMP/live.driver.log"
[[ $rc -eq 0 ]] || { cat -v "$TMP/live.raw" | tail -40; fail "watch of a COMPLETED run exited $rc"; }
last_frame "$TMP/live.raw" >"$TMP/live.screen"
# Entered the live screen, redrew more than once (a first frame before any
# report, the driver going only then), and restored the terminal last.
grep -qF $'\x1b[?25l' "$TMP/live.raw" || fail "the cursor was never hidden"
frames=$(grep -oF $'\x1b[H' "$TMP/live.raw" | wc -l)
((frames >= 2)) || fail "expected the screen redrawn, got $frames frame(s)"
"$py" - "$TMP/live.raw" <<'PY' || fail "the terminal was not restored after the last frame"
import sys
raw = open(sys.argv[1], "rb").read()
last_frame = raw.rfind(b"\x1b[H")
restore = raw.rfind(b"\x1b[?25h")
sys.exit(0 if restore > last_frame and raw.rfind(b"\x1b[0m") > last_frame else 1)
PY
expect_contains "$TMP/live.screen" "run live - COMPLETED - attempt 1 - 2 ranks - dataset synthetic"
expect_contains "$TMP/live.screen" "message: driver done"
# Each rank's last report: its validation (2 batches of 2); rank 1 is slow.
expect_contains "$TMP/live.screen" "phase head  epoch 2  validation  step 2/2  [=============================="
grep -qE '^ +0 +head +2 +validation +2/2 +400\.0 ' "$TMP/live.screen" ||
  { cat "$TMP/live.screen"; fail "no row for rank 0"; }
grep -qE '^! +1 +head +2 +validation +2/2 +100\.0 .*straggler$' "$TMP/live.screen" ||
  { cat "$TMP/live.screen"; fail "rank 1 is not marked a straggler"; }
expect_contains "$TMP/live.screen" "ranks: median 250.0 img/s; 1 straggler (below 80% of the median)"
# Latest aggregated train and validation epochs (2 ranks x 4 steps x 8 samples).
grep -qE '^train +head +2 +1\.0000 +25\.00% +50\.00% +64 ' "$TMP/live.screen" ||
  { cat "$TMP/live.screen"; fail "no latest train epoch"; }
grep -qE '^validation +head +2 +1\.0000 +25\.00% +50\.00% +32 ' "$TMP/live.screen" ||
  { cat "$TMP/live.screen"; fail "no latest validation epoch"; }
expect_contains "$TMP/live.screen" "the run has ended: COMPLETED - 4 epochs seen"
# The straggler's row is drawn in reverse video, the others are not.
grep -qF $'\x1b[7m!     1  head' "$TMP/live.raw" || fail "the straggler row is not highlighted"
if grep -qF $'\x1b[7m      0' "$TMP/live.raw"; then fail "rank 0 is highlighted"; fi
# Only read RPCs: the read-only token was enough and nothing was refused.
if grep -q "PERMISSION_DENIED\|refused a call" "$TMP/coordinator.log"; then
  cat "$TMP/coordinator.log"
  fail "the coordinator refused a call of the watcher"
fi

# ---- A run that fails: exit 6, the screen says FAILED and why.
feed broken failed --epochs 1 --steps 2 --step-ms 100
watch_on_pty "$TMP/broken.raw" broken -- "${watch[@]}" watch broken --interval 0.2
end_watch
finish_feed "$TMP/broken.driver.log"
[[ $rc -eq 6 ]] || { cat -v "$TMP/broken.raw" | tail -40; fail "watch of a FAILED run exited $rc"; }
last_frame "$TMP/broken.raw" >"$TMP/broken.screen"
expect_contains "$TMP/broken.screen" "run broken - FAILED - attempt 1"
expect_contains "$TMP/broken.screen" "message: driver: injected failure"
expect_contains "$TMP/broken.screen" "the run has ended: FAILED"

# ---- Ctrl-C mid-run: the terminal is restored, exit 130, the run goes on.
feed longrun none --epochs 1 --steps 200 --step-ms 100
watch_on_pty "$TMP/sigint.raw" longrun --interrupt-when "straggler" -- \
  "${watch[@]}" watch longrun --interval 0.2
end_watch
[[ $rc -eq 130 ]] || { cat -v "$TMP/sigint.raw" | tail -40; fail "watch interrupted by SIGINT exited $rc"; }
tail -c 20 "$TMP/sigint.raw" | grep -qF $'\x1b[?25h' || fail "the cursor was not shown again after SIGINT"
kill "$driver_pid" 2>/dev/null || true
wait "$driver_pid" 2>/dev/null || true
driver_pid=""

# ---- Not a terminal: one line per aggregated epoch, as before.
"${watch[@]}" watch live >"$TMP/pipe.out" 2>&1 || { cat "$TMP/pipe.out"; fail "watch on a pipe"; }
if grep -qF $'\x1b' "$TMP/pipe.out"; then cat -v "$TMP/pipe.out"; fail "escape codes on a pipe"; fi
[[ $(grep -c '^#[0-9]* head epoch [12] ' "$TMP/pipe.out") -eq 4 ]] ||
  { cat "$TMP/pipe.out"; fail "expected 4 epoch lines"; }
expect_contains "$TMP/pipe.out" "#2 head epoch 1 validation: loss 2.0000 top1 25.00% top3 50.00% samples 32"
expect_contains "$TMP/pipe.out" "run live completed (attempt 1): driver done"
rc=0
"${watch[@]}" watch broken >"$TMP/pipe-broken.out" 2>&1 || rc=$?
[[ $rc -eq 6 ]] || { cat "$TMP/pipe-broken.out"; fail "watch of a FAILED run on a pipe exited $rc"; }

# ---- --json on a terminal stays machine output.
rc=0
"$py" "$src/run_in_pty.py" --out "$TMP/json.raw" --timeout "$XFER_TEST_TIMEOUT" -- \
  "${watch[@]}" --json watch live || rc=$?
[[ $rc -eq 0 ]] || { cat -v "$TMP/json.raw"; fail "watch --json exited $rc"; }
if grep -qF $'\x1b' "$TMP/json.raw"; then cat -v "$TMP/json.raw"; fail "escape codes in --json"; fi
"$py" - "$TMP/json.raw" <<'PY' || fail "watch --json lines are not the 5 expected JSON objects"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l.strip()]
events = [json.loads(l) for l in lines]
assert len(events) == 5, events
assert [e["sequence"] for e in events[:4]] == [1, 2, 3, 4], events
PY

stop_coordinator
echo "watch live e2e: ok"
