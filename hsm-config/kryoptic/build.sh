#!/usr/bin/env bash
# Builds Kryoptic (https://github.com/latchset/kryoptic), a second PKCS#11 software token, for
# the tests that run Kinko's Ed25519 paths on a token other than SoftHSM2
# (crates/kinko-hsm/tests/second_token.rs; docs/hsm-profiles.md). Prints the module's path.
#   hsm-config/kryoptic/build.sh [TARGET_DIR]      (default: target/kryoptic)
# Kryoptic's EdDSA needs OpenSSL >= 3.2 and Debian 12 has 3.0: OpenSSL 3.6 is built from the
# sources the openssl-src crate carries (crates.io; hsm-config/kryoptic/openssl) and linked
# statically. Needs clang (bindgen), pkg-config, perl and make; installs clang, libclang-dev and
# pkg-config with apt-get when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${1:-$root/target/kryoptic}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
module="$target/release/libkryoptic_pkcs11.so"
if [ -e "$module" ]; then echo "$module"; exit 0; fi
if ! command -v clang >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1 || [ ! -e /usr/include/sqlite3.h ]; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing clang and libclang-dev for Kryoptic's bindgen (apt-get)..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang libclang-dev pkg-config libsqlite3-dev >/dev/null
fi
# OpenSSL 3.6 from the openssl-src crate, built and installed under the target directory.
CARGO_TARGET_DIR="$target/openssl" cargo build --release --locked \
  --manifest-path "$here/openssl/Cargo.toml" >&2
install_file="$(find "$target/openssl/release/build" -name openssl-install-dir | head -1)"
ossl="$(cat "$install_file")"
pc="$(find "$ossl" -name openssl.pc -printf '%h\n' | head -1)"
[ -n "$pc" ] || { echo "no openssl.pc under $ossl" >&2; exit 1; }
# Kryoptic's pinned sources (fetched from crates.io; checksums in this directory's Cargo.lock).
cargo fetch --locked --manifest-path "$here/Cargo.toml" >/dev/null
kryoptic="$(cargo metadata --locked --format-version 1 --manifest-path "$here/Cargo.toml" \
  | sed -n 's|.*"manifest_path":"\([^"]*/kryoptic-1\.5\.4\)/Cargo.toml".*|\1|p' | head -1)"
[ -n "$kryoptic" ] || { echo "cannot find the kryoptic sources" >&2; exit 1; }
echo "building Kryoptic from $kryoptic against OpenSSL in $ossl (static)..." >&2
# pkg-config finds the OpenSSL above; only its static libraries exist there, so they are linked in.
PKG_CONFIG_PATH="$pc" PKG_CONFIG_ALL_STATIC=1 CARGO_TARGET_DIR="$target" \
  cargo build --release --locked --manifest-path "$kryoptic/Cargo.toml" >&2
test -e "$module" || { echo "Kryoptic built but $module is missing" >&2; exit 1; }
echo "$module"
