#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine: installs missing
# packages, configures and builds (warnings are errors), then runs every test.
set -euo pipefail
cd "$(dirname "$0")"

deploy/install-deps.sh
deploy/build.sh -DBUILD_TESTING=ON -DXFER_WERROR=ON
# mpirun refuses root without these; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --parallel 2 --timeout 900
