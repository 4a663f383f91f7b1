#!/usr/bin/env bash
# trainer build-info runs without MPI launcher or GPU and reports every
# component; NCCL shows a version when the build has it.
# usage: trainer_build_info_test.sh BIN_DIR WITH_NCCL(0|1)
source "$(dirname "$0")/lib.sh"
"$1/trainer" build-info >"$TMP/info" 2>&1 || { cat "$TMP/info"; fail "build-info failed"; }
for key in xfer LibTorch "CUDA devices" MPI NCCL gRPC protobuf; do
  expect_contains "$TMP/info" "$key:"
done
expect_contains "$TMP/info" "LibTorch:         1."
if [[ "$2" == 1 ]]; then
  grep -Eq '^NCCL: +[0-9]+\.[0-9]+\.[0-9]+ \(compiled against' "$TMP/info" || {
    cat "$TMP/info"
    fail "NCCL version missing"
  }
fi
"$1/trainer" --version >"$TMP/version"
expect_contains "$TMP/version" "gRPC:"
expect_fail "$TMP/nosub" "$1/trainer"
echo "trainer build-info: ok"
