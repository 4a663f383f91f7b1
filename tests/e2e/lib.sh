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
