# Shared helpers for the shell-level tests: every test script sources this
# file, directly or through tests/train/train_lib.sh. It gives a fresh $TMP
# that is removed on exit and fails on the first broken check; with it comes
# tests/lib/wait.sh, the one place that starts a coordinator and waits for
# it (docs/testing.md).
#
#   fail MSG                           the test fails, saying MSG
#   expect_fail OUT CMD...             CMD must fail; its output goes to OUT
#   expect_contains FILE TEXT          FILE must contain TEXT
#   at_exit CMD                        CMD runs when the test exits (latest first)
#   launch_coordinator PORT_FILE LOG CMD...
#                                      starts a coordinator and waits for its port
#   stop_coordinator                   SIGTERM; it must exit 0
set -euo pipefail
TMP=$(mktemp -d "${TMPDIR:-/tmp}/xfer-e2e.XXXXXX")

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# launch_coordinator, stop_coordinator, wait_for_port_file.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/wait.sh"

exit_hooks=()
# at_exit CMD: CMD (one string, eval'ed) runs when the test exits, for any
# reason; hooks run latest first, then the coordinator is killed and $TMP
# removed. A failing hook does not stop the others.
at_exit() {
  exit_hooks=("$1" "${exit_hooks[@]}")
}
run_exit_hooks() {
  local hook
  for hook in "${exit_hooks[@]}"; do eval "$hook" || true; done
  [[ -n "$coordinator_pid" ]] && kill "$coordinator_pid" 2>/dev/null || true  # launch_coordinator's
  rm -rf "$TMP"
}
trap run_exit_hooks EXIT

# expect_fail OUTFILE CMD...: CMD must exit non-zero; its stdout+stderr go to OUTFILE.
expect_fail() {
  local out="$1"
  shift
  if "$@" >"$out" 2>&1; then
    cat "$out" >&2
    fail "expected failure: $*"
  fi
}

# expect_contains FILE TEXT: FILE must contain TEXT (fixed string).
expect_contains() {
  grep -qF -- "$2" "$1" || {
    cat "$1" >&2
    fail "'$1' lacks: $2"
  }
}
