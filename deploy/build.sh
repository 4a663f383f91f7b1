#!/usr/bin/env bash
# Configures and builds the project in BUILD_DIR (default: build/).
#
#   deploy/build.sh [extra cmake -D options...]
#
# Environment: BUILD_DIR, BUILD_TYPE (default Release), JOBS (default: cores),
# CMAKE_PREFIX_PATH (a CUDA LibTorch, see README).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# An existing build dir keeps its generator; only pass -G on first configure.
if [[ -f "$build_dir/CMakeCache.txt" ]]; then generator=(); fi

cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@"
cmake --build "$build_dir" --parallel "$jobs"
