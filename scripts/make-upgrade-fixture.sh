#!/usr/bin/env bash
# Makes the upgrade fixture tests/e2e/upgrade.rs opens: a store, audit log, token and set-up
# written by an earlier kinkod, with one withdrawal signed and one waiting for its second
# approval.
#   scripts/make-upgrade-fixture.sh REV OUT
# Builds kinkod and kinko at git revision REV (in a worktree, with a target directory of its
# own), runs `kinkod dev` with a SoftHSM2 token directory under OUT, submits and approves with
# the kinko CLI as the walkthrough does, stops kinkod, and writes OUT/FIXTURE (the revision
# and the request ids). Commit OUT as it is.
set -euo pipefail
rev="${1:?usage: make-upgrade-fixture.sh REV OUT}"
out="${2:?usage: make-upgrade-fixture.sh REV OUT}"
here="$(cd "$(dirname "$0")/.." && pwd)"
[ ! -e "$out" ] || { echo "$out exists" >&2; exit 1; }
src="$(mktemp -d /tmp/kinko-fixture-src.XXXXXX)"
trap 'git -C "$here" worktree remove --force "$src" >/dev/null 2>&1 || true' EXIT
git -C "$here" worktree add --detach "$src" "$rev" >/dev/null
full="$(git -C "$src" rev-parse HEAD)"
target="${FIXTURE_TARGET_DIR:-/tmp/kinko-fixture-target}"
(cd "$src" && CARGO_TARGET_DIR="$target" cargo build --locked -p kinkod -p kinko)
kinkod="$target/debug/kinkod" kinko="$target/debug/kinko"
mkdir -p "$out/softhsm/tokens"
out="$(cd "$out" && pwd)"
printf 'directories.tokendir = %s/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$out" > "$out/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$out/softhsm/softhsm2.conf"
port=47555
"$kinkod" dev --data-dir "$out/data" --listen "127.0.0.1:$port" --token-label kinko-fixture --init-only
"$kinkod" --config "$out/data/kinkod.toml" 2> "$out/kinkod.log" &
pid=$!
for _ in $(seq 1 600); do grep -q "listening on" "$out/kinkod.log" && break; sleep 0.1; done
export KINKO_SERVER="https://localhost:$port" KINKO_DEV_DIR="$out/data"
to=0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed
tx0=0x02f383aa36a780843b9aca008506fc23ac00825208945aaeb6053f3e94c9b9a09f33669435e7ef1beaed880de0b6b3a764000080c0
tx1=0x02f383aa36a701843b9aca008506fc23ac00825208945aaeb6053f3e94c9b9a09f33669435e7ef1beaed880de0b6b3a764000080c0
submit() {
  "$kinko" request submit --as ledger --requester-key "$out/data/requesters/ledger.key" \
    --key eth-dev --chain ethereum --payload "$1" --idempotency-key "$2" --reference "$2" \
    | awk 'NR == 1 { print $2 }'
}
approve() {
  "$kinko" approve "$1" --as "$2" --officer-key "$out/data/officers/$2.key" \
    --policy "$out/data/policy.toml" --yes >/dev/null
}
signed=$(submit "$tx0" fixture-signed)
approve "$signed" alice
approve "$signed" bob
pending=$(submit "$tx1" fixture-pending)
approve "$pending" alice
kill -INT "$pid"
wait "$pid" || true
rm -f "$out/kinkod.log"
printf 'revision %s\nsigned %s\npending %s\nto %s\n' "$full" "$signed" "$pending" "$to" > "$out/FIXTURE"
echo "fixture in $out: $(cat "$out/FIXTURE" | tr '\n' ' ')" >&2
