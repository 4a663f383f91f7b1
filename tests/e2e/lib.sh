# Shared helpers for the shell-level tests. Each test sources this, gets a
# fresh $TMP that is removed on exit, and fails on the first broken check.
set -euo pipefail
TMP=$(mktemp -d "${TMPDIR:-/tmp}/xfer-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

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
