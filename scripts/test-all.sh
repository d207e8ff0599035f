#!/usr/bin/env bash
# Every check and every test, as CI runs them. Installs SoftHSM2 when missing (Debian).
# Tests make their own SoftHSM2 tokens under target/tmp/softhsm2-test (see .cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
hsm-config/softhsm2/install.sh
rm -rf target/tmp/softhsm2-test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end and red-team tests (tests/) run the kinkod and kinko binaries.
cargo build --workspace --bins --locked
cargo test --workspace --locked
