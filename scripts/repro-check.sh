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
# KINKO_REPRO_KEEP=1 keeps both builds (for a closer look at a difference).
if [ "${KINKO_REPRO_KEEP:-}" = 1 ]; then
  echo "keeping both builds in $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
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
  (cd "$(out_dir "$src")" && sha256sum $bins)
}
out_dir() {
  case "$profile" in dev|debug) echo "$1/target/debug" ;; *) echo "$1/target/$profile" ;; esac
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
  # The printable strings that differ usually name the cause (a path, a time).
  for bin in $bins; do
    x="$(out_dir "$work/a/kinko")/$bin"; y="$(out_dir "$work/second-place/src/kinko")/$bin"
    cmp -s "$x" "$y" && continue
    echo "strings that differ in $bin (first 20):" >&2
    diff <(strings -n 8 "$x") <(strings -n 8 "$y") | grep '^[<>]' | head -20 >&2 || true
  done
  exit 1
fi
