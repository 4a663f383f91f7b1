# shellcheck shell=bash
# Waiting for things to happen, and starting a coordinator (which is waiting
# for its port file): the one copy, sourced by every test script (through
# tests/e2e/lib.sh) and by the bench scripts. It only defines functions. A
# sourcing script may define fail() first; otherwise this file's fail()
# prints the message and exits 1.
#
# The rule (docs/testing.md): a test waits on an event (a log line, a port
# file, a metric, a state), never on a fixed sleep or a count of polls or
# frames; each wait has a generous deadline, $XFER_TEST_TIMEOUT seconds
# (default 120), and prints what it saw when it gives up.
#
#   wait_until [--pid PID]... [--show FILE]... [--timeout S] WHAT -- CMD...
#                                             until CMD succeeds
#   launch_coordinator PORT_FILE LOG CMD...   starts a coordinator, waits for its port
#   stop_coordinator                          SIGTERM; it must exit 0
#   wait_for_port_file PID FILE LOG           waits for a server's port file

declare -F fail >/dev/null || fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The coordinator of launch_coordinator. The sourcing script's exit handler
# kills it if it still runs.
coordinator_pid=${coordinator_pid:-}
coordinator_log=${coordinator_log:-}
address=${address:-}

# Seconds a wait gives up after: generous, since a busy machine is slow.
XFER_TEST_TIMEOUT=${XFER_TEST_TIMEOUT:-120}

# wait_until [--pid PID]... [--show FILE]... [--timeout S] WHAT -- CMD...
# Runs CMD (in this shell: a function may fail the test itself) every 0.1 s
# until it succeeds. Gives up, failing the test with "gave up waiting for
# WHAT" and printing the tail of each --show FILE (what it saw), after
# --timeout S seconds ($XFER_TEST_TIMEOUT by default), or at once when a
# process named by --pid has ended first (CMD gets one last try then: the
# event may have come just before the exit).
wait_until() {
  local pids=() shows=() timeout=$XFER_TEST_TIMEOUT what pid file
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --pid) pids+=("$2"); shift 2 ;;
      --show) shows+=("$2"); shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) break ;;
    esac
  done
  what=$1
  [[ "${2:-}" == "--" ]] || fail "wait_until: expected WHAT -- CMD..., got: $*"
  shift 2
  local start=$SECONDS ended=""
  while true; do
    "$@" && return 0
    for pid in ${pids[@]+"${pids[@]}"}; do
      kill -0 "$pid" 2>/dev/null || ended=$pid
    done
    if [[ -n "$ended" ]]; then
      "$@" && return 0
      break
    fi
    ((SECONDS - start < timeout)) || break
    sleep 0.1
  done
  for file in ${shows[@]+"${shows[@]}"}; do
    echo "--- $file (last 60 lines):" >&2
    tail -n 60 "$file" >&2 2>/dev/null || echo "(missing)" >&2
  done
  if [[ -n "$ended" ]]; then
    fail "gave up waiting for $what: process $ended ended first ($((SECONDS - start)) s)"
  fi
  fail "gave up waiting for $what after $((SECONDS - start)) s (deadline $timeout s; XFER_TEST_TIMEOUT)"
}

# wait_for_port_file PID FILE LOG: waits for a server process to write its
# port file; fails (showing LOG) when it dies first or never writes it.
wait_for_port_file() {
  wait_until --pid "$1" --show "$3" "the port file $2 of pid $1" -- test -s "$2"
}

# launch_coordinator PORT_FILE LOG CMD...: runs CMD, a coordinator command line
# that writes PORT_FILE (--port-file PORT_FILE among its flags), in the
# background with its output appended to LOG, and waits for the port file.
# Sets $coordinator_pid, $coordinator_log and $address (127.0.0.1:PORT). Fails,
# showing LOG, when the coordinator dies first or writes no port file.
launch_coordinator() {
  local port_file=$1 log=$2
  shift 2
  rm -f "$port_file"
  "$@" >>"$log" 2>&1 &
  coordinator_pid=$!
  coordinator_log=$log
  wait_for_port_file "$coordinator_pid" "$port_file" "$log"
  address="127.0.0.1:$(cat "$port_file")"
}

# stop_coordinator: SIGTERM to the coordinator of launch_coordinator, which
# must exit 0 (else fails, showing its log).
stop_coordinator() {
  local rc=0
  kill -TERM "$coordinator_pid"
  wait "$coordinator_pid" || rc=$?
  coordinator_pid=""
  [[ $rc -eq 0 ]] || { cat "$coordinator_log"; fail "the coordinator exited $rc on SIGTERM"; }
}
