# shellcheck shell=bash
# Starting a coordinator and waiting for it: the one copy, sourced by every
# test script (through tests/e2e/lib.sh) and by the bench scripts. It only
# defines functions. A sourcing script may define fail() first; otherwise
# this file's fail() prints the message and exits 1.
#
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

# wait_for_port_file PID FILE LOG: waits up to 10 s for a server process to
# write its port file; fails (showing LOG) when it dies or never writes it.
wait_for_port_file() {
  local pid=$1 file=$2 log=$3
  for _ in $(seq 1 100); do
    [[ -s "$file" ]] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "the server (pid $pid) died"; }
    sleep 0.1
  done
  fail "the server (pid $pid) wrote no port file $file"
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
