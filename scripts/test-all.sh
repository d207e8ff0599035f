#!/usr/bin/env bash
# Every check and every test, as CI runs them. Installs SoftHSM2, promtool, Chromium with
# chromedriver, systemd-analyze, openssl, and PostgreSQL when missing (Debian), and starts a throwaway PostgreSQL
# cluster of its own (initdb/pg_ctl in a temporary directory, as an unprivileged user; stopped
# at exit).
# Tests make their own SoftHSM2 tokens under target/tmp/softhsm2-test (see .cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
hsm-config/softhsm2/install.sh
# need COMMAND PACKAGE...: installs the Debian packages when COMMAND is missing.
need() {
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$cmd is missing and this is not a Debian-like system: install $*" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing $* for $cmd (apt-get)..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# promtool (Debian's prometheus package) tests the alert rules in docs/alerts.
need promtool prometheus
# Headless Chromium and chromedriver drive the officer's console in the browser tests
# (tests/e2e/console.rs), with Chromium's virtual WebAuthn authenticator.
need chromium chromium chromium-driver
need chromedriver chromium chromium-driver
# systemd-analyze rates the shipped unit's sandbox (tests/e2e/operations.rs); openssl makes the
# install guide's CA (tests/e2e/install.rs runs docs/install.md); dpkg-deb builds the package.
need systemd-analyze systemd
need openssl openssl
need dpkg-deb dpkg
# cargo-deny checks licenses, banned crates and sources (deny.toml; docs/supply-chain.md says how
# release engineers also check advisories against a copy of the RustSec database).
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny (cargo install)..." >&2
  cargo install --locked cargo-deny --version 0.20.2 >/dev/null
fi
cargo deny --locked check licenses bans sources
# A second PKCS#11 implementation beside SoftHSM2: Kryoptic, built from crates.io sources with a
# static OpenSSL 3.6 (crates/kinko-hsm/tests/second_token.rs; docs/hsm-profiles.md).
KINKO_SECOND_PKCS11_MODULE="$(hsm-config/kryoptic/build.sh)"
export KINKO_SECOND_PKCS11_MODULE
promtool check rules docs/alerts/kinko.rules.yml
promtool test rules docs/alerts/kinko.rules.test.yml
rm -rf target/tmp/softhsm2-test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The PostgreSQL backend's tests, and the second run of the end-to-end and red-team suites,
# use a cluster of their own.
pg_dir="$(mktemp -d /tmp/kinko-pg.XXXXXX)"
trap 'scripts/pg-cluster.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
KINKO_TEST_PG_URL="$(scripts/pg-cluster.sh start "$pg_dir")"
export KINKO_TEST_PG_URL
# The end-to-end and red-team tests (tests/) run the kinkod and kinko binaries: every test on
# the embedded SQLite store, then the end-to-end and red-team suites again with kinkod's store
# in PostgreSQL (tests that edit the SQLite file itself say so and stop on that run).
cargo build --workspace --bins --locked
cargo test --workspace --locked
KINKO_TEST_BACKEND=postgres cargo test -p kinko-tests --locked
