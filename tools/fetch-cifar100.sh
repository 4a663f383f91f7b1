#!/usr/bin/env bash
# Downloads the real CIFAR-100 (binary version), checks it against the MD5 the
# dataset's authors publish, and unpacks it into a dataset directory the
# coordinator serves with --dataset cifar100=DIR.
#
#   tools/fetch-cifar100.sh [DEST]            # DEST defaults to data/cifar-100
#   tools/fetch-cifar100.sh --from FILE DEST  # use a tarball you copied in
#
# Needs internet (or --from). Nothing is left in DEST unless every step passed.
set -euo pipefail

readonly URL="${CIFAR100_URL:-https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz}"
# Published on https://www.cs.toronto.edu/~kriz/cifar.html for cifar-100-binary.tar.gz.
readonly MD5="03b5dce01913d631647c71ecec9e9cb8"
readonly FILES=(train.bin test.bin fine_label_names.txt coarse_label_names.txt)

die() {
  echo "fetch-cifar100: error: $*" >&2
  exit 1
}

from=""
dest=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from)
      [[ $# -ge 2 ]] || die "--from needs a FILE argument"
      from="$2"
      shift 2
      ;;
    -h | --help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    -*) die "unknown option '$1' (expected --from FILE or a destination directory)" ;;
    *)
      [[ -z "$dest" ]] || die "more than one destination given ('$dest' and '$1')"
      dest="$1"
      shift
      ;;
  esac
done
dest="${dest:-data/cifar-100}"

for tool in tar md5sum; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run deploy/install-deps.sh)"
done
if [[ -e "$dest" ]] && [[ -n "$(ls -A "$dest" 2>/dev/null)" ]]; then
  die "destination '$dest' exists and is not empty; remove it or choose another"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-cifar100.XXXXXX")
trap 'rm -rf "$work"' EXIT
tarball="$work/cifar-100-binary.tar.gz"

if [[ -n "$from" ]]; then
  [[ -f "$from" ]] || die "--from '$from': no such file"
  cp "$from" "$tarball"
else
  command -v curl >/dev/null || die "'curl' not found (run deploy/install-deps.sh)"
  echo "fetch-cifar100: downloading $URL (about 161 MB)"
  if ! curl --fail --location --silent --show-error --connect-timeout 20 --retry 2 \
    --output "$tarball" "$URL"; then
    die "download of $URL failed (offline or blocked?). On a machine with internet, download it \
and pass it with --from FILE."
  fi
fi

actual=$(md5sum "$tarball" | cut -d' ' -f1)
[[ "$actual" == "$MD5" ]] ||
  die "checksum mismatch for ${from:-$URL}: MD5 $actual, expected $MD5 (corrupt or not the CIFAR-100 binary tarball)"

tar -xzf "$tarball" -C "$work" || die "cannot unpack the tarball"
for f in "${FILES[@]}"; do
  [[ -f "$work/cifar-100-binary/$f" ]] || die "the tarball has no cifar-100-binary/$f"
done
mkdir -p "$dest"
for f in "${FILES[@]}"; do
  mv "$work/cifar-100-binary/$f" "$dest/$f"
done
echo "fetch-cifar100: CIFAR-100 is in $dest (serve it with: coordinator --dataset cifar100=$dest)"
