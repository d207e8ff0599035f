#!/usr/bin/env bash
# Reproducible-build check (docs/supply-chain.md): builds this commit twice, in two different
# directories with separate target directories, and compares the SHA-256 of the shipped
# binaries. Exit 0 when they are identical; otherwise prints both hashes and exits 1.
#   scripts/repro-check.sh [--profile release] [BIN...]     (default: kinkod kinko kinko-witness)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
if [ "${1:-}" = --profile ]; then profile="$2"; shift 2; fi
bins="${*:-kinkod kinko kinko-witness}"
rev="$(git -C "$here" rev-parse HEAD)"
work="$(mktemp -d /tmp/kinko-repro.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
build() {
  local src="$1"
  git clone -q "$here" "$src"
  git -C "$src" checkout -q "$rev"
  local pkgs=""
  for b in $bins; do pkgs="$pkgs -p $b"; done
  (cd "$src" && \
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" \
    RUSTFLAGS="--remap-path-prefix=$src=/build/kinko --remap-path-prefix=$cargo_home=/cargo" \
    CARGO_TARGET_DIR="$src/target" cargo build --locked --profile "$profile" $pkgs >/dev/null 2>&1)
  case "$profile" in dev|debug) out="$src/target/debug" ;; *) out="$src/target/$profile" ;; esac
  (cd "$out" && sha256sum $bins)
}
echo "building $rev twice ($profile: $bins)..." >&2
a="$(build "$work/a/kinko")"
b="$(build "$work/second-place/src/kinko")"
echo "$a"
if [ "$a" = "$b" ]; then
  echo "reproducible: both builds give the same binaries" >&2
else
  echo "NOT reproducible; second build:" >&2
  echo "$b" >&2
  exit 1
fi
