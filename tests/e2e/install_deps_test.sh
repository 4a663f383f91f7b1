#!/usr/bin/env bash
# deploy/install-deps.sh: lists its packages, finds them all installed after
# the suite's own install step, and refuses unknown arguments.
# usage: install_deps_test.sh SOURCE_DIR
source "$(dirname "$0")/lib.sh"
script="$1/deploy/install-deps.sh"

"$script" --list >"$TMP/list"
expect_contains "$TMP/list" "libtorch-dev"
expect_contains "$TMP/list" "libgrpc++-dev"
"$script" --check >"$TMP/check" 2>&1 || { cat "$TMP/check"; fail "--check reports missing packages"; }
expect_contains "$TMP/check" "already installed"
expect_fail "$TMP/bad" "$script" --frobnicate
expect_contains "$TMP/bad" "unknown argument '--frobnicate'"
echo "install-deps: ok"
