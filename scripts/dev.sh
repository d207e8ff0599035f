#!/usr/bin/env bash
# Starts kinkod on its embedded development defaults. On first run it creates, under
# ${KINKO_DEV_DIR:-.kinko-dev}: a SoftHSM2 token (installing SoftHSM2 when missing), a local CA with
# certificates for a requester, three officers and an auditor, officer and requester keys, one
# signing key per chain, the audit-log key and a development policy. NOT FOR PRODUCTION.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${KINKO_DEV_DIR:-.kinko-dev}"
hsm-config/softhsm2/install.sh
mkdir -p "$dir/softhsm/tokens"
dir="$(cd "$dir" && pwd)"
conf="$dir/softhsm/softhsm2.conf"
[ -e "$conf" ] || printf 'directories.tokendir = %s/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > "$conf"
cargo build --release --locked -p kinkod -p kinko
# Run the binary directly: `cargo run` would replace SOFTHSM2_CONF with the tests' one.
SOFTHSM2_CONF="$conf" exec target/release/kinkod dev --data-dir "$dir" "$@"
