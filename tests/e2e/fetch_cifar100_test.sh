#!/usr/bin/env bash
# tools/fetch-cifar100.sh fails clearly offline and on a bad tarball, and
# leaves nothing behind. No traffic leaves the machine: the URL points at a
# closed port on 127.0.0.1.   usage: fetch_cifar100_test.sh SOURCE_DIR
source "$(dirname "$0")/lib.sh"
fetch="$1/tools/fetch-cifar100.sh"

CIFAR100_URL=http://127.0.0.1:9/cifar-100-binary.tar.gz \
  expect_fail "$TMP/offline.out" "$fetch" "$TMP/dest"
expect_contains "$TMP/offline.out" "download of http://127.0.0.1:9/cifar-100-binary.tar.gz failed"
[[ ! -e "$TMP/dest" ]] || fail "offline fetch left $TMP/dest behind"

mkdir -p "$TMP/fake/cifar-100-binary"
echo x >"$TMP/fake/cifar-100-binary/train.bin"
tar -czf "$TMP/fake.tar.gz" -C "$TMP/fake" cifar-100-binary
expect_fail "$TMP/md5.out" "$fetch" --from "$TMP/fake.tar.gz" "$TMP/dest"
expect_contains "$TMP/md5.out" "checksum mismatch"
expect_contains "$TMP/md5.out" "expected 03b5dce01913d631647c71ecec9e9cb8"
[[ ! -e "$TMP/dest" ]] || fail "bad tarball left $TMP/dest behind"

expect_fail "$TMP/arg.out" "$fetch" --bogus
expect_contains "$TMP/arg.out" "unknown option '--bogus'"
echo "fetch-cifar100: ok"
