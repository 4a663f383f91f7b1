#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine: installs missing
# packages, configures and builds (warnings are errors), then runs every test.
# Prints how long each of the three took and the ten slowest tests.
set -euo pipefail
cd "$(dirname "$0")"
build_dir="${BUILD_DIR:-build}"

start=$SECONDS
deploy/install-deps.sh
installed=$SECONDS
deploy/build.sh -DBUILD_TESTING=ON -DXFER_WERROR=ON
built=$SECONDS
# mpirun refuses root without these; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rc=0
ctest --test-dir "$build_dir" --output-on-failure --parallel 2 --timeout 900 || rc=$?
tested=$SECONDS

echo
echo "test.sh: install $((installed - start)) s, build $((built - installed)) s," \
  "tests $((tested - built)) s (ctest exit status $rc)"
echo "the ten slowest tests of this run (s):"
# LastTest.log: "N/M Testing: NAME" ... "Test time =   S sec" for each test.
awk '/^[0-9]+\/[0-9]+ Testing: / { name = $3 }
     /^Test time = / { printf "%9.2f  %s\n", $4, name }' \
  "$build_dir/Testing/Temporary/LastTest.log" | sort -rn | head -10 || true
exit "$rc"
