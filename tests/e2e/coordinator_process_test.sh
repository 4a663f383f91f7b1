#!/usr/bin/env bash
# The real coordinator binary as its own process, driven by coordctl: start
# with tokens on a free port, answer status over the read-only token, refuse
# a missing token, stop cleanly on SIGTERM, and keep its runs across a
# restart.   usage: coordinator_process_test.sh BIN_DIR
source "$(dirname "$0")/lib.sh"
bin="$1"

"$bin/make-synthetic-cifar" --out "$TMP/data" --train 300 --test 100 --classes 10 >/dev/null 2>&1
echo "admin-token-0123456789abcdef" >"$TMP/admin.token"
echo "read-token-0123456789abcdef" >"$TMP/read.token"

# Datasets and directories come from a config file, the rest from flags.
cat >"$TMP/coordinator.toml" <<CONFIG
dataset = ["synthetic=$TMP/data", "second=$TMP/data"]
checkpoint-dir = "$TMP/ckpt"
state-dir = "$TMP/state"
CONFIG

start_coordinator() {
  launch_coordinator "$TMP/port" "$TMP/coordinator.log" \
    "$bin/coordinator" --config "$TMP/coordinator.toml" --listen 127.0.0.1:0 --port-file "$TMP/port" \
    --token-file "$TMP/admin.token" --read-token-file "$TMP/read.token"
}

start_coordinator
ctl=("$bin/coordctl" --coordinator "$address")
"${ctl[@]}" --retry-for 5 --token-file "$TMP/read.token" --json status >"$TMP/status.json" 2>&1 ||
  { cat "$TMP/status.json"; fail "status with the read-only token failed"; }
expect_contains "$TMP/status.json" '"synthetic"'
expect_contains "$TMP/status.json" '"second"'

rc=0
"${ctl[@]}" --retry-for 0 status >"$TMP/noauth.out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || { cat "$TMP/noauth.out"; fail "status without a token exited $rc, expected 3"; }
expect_contains "$TMP/noauth.out" "UNAUTHENTICATED"

rc=0
"${ctl[@]}" --token-file "$TMP/read.token" metrics ghost >"$TMP/ghost.out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || { cat "$TMP/ghost.out"; fail "metrics of an unknown run exited $rc"; }
expect_contains "$TMP/ghost.out" "NOT_FOUND"

# A second coordinator on the same port is refused, by name.
expect_fail "$TMP/second.out" "$bin/coordinator" --listen "$address" --dataset "synthetic=$TMP/data" \
  --checkpoint-dir "$TMP/ckpt2" --state-dir "$TMP/state2"
expect_contains "$TMP/second.out" "cannot listen there"

# A bad dataset flag is refused at start-up.
expect_fail "$TMP/badflag.out" "$bin/coordinator" --listen 127.0.0.1:0 --dataset "no-equals-sign" \
  --checkpoint-dir "$TMP/ckpt3" --state-dir "$TMP/state3"
expect_contains "$TMP/badflag.out" "expected NAME=DIR"

stop_coordinator
expect_contains "$TMP/coordinator.log" "coordinator stopped"
start_coordinator  # a new free port
ctl=("$bin/coordctl" --coordinator "$address")
"${ctl[@]}" --token-file "$TMP/read.token" status >"$TMP/status2.out" 2>&1 ||
  { cat "$TMP/status2.out"; fail "status after restart failed"; }
stop_coordinator
echo "coordinator process: ok"
