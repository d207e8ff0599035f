#!/usr/bin/env bash
# Counts the durable syncs (fsync, fdatasync) kinkod makes for withdrawals, one at a time: a
# fresh development set-up, then N Ethereum withdrawals (submit, approve alice, approve bob)
# through the CLI while strace counts kinkod's sync calls. Prints the total and the count per
# withdrawal. Usage: scripts/count-syncs.sh [BIN_DIR] [N]   (BIN_DIR defaults to target/debug)
#
# Nothing else runs against this kinkod, so the count is the withdrawal path's own, plus at most
# one periodic checkpoint per 10 s of run time (kinkod signs one while the log grows).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(cd "${1:-target/debug}" && pwd)"
n="${2:-5}"
command -v strace >/dev/null || { echo "needs strace (apt-get install -y strace)" >&2; exit 1; }
hsm-config/softhsm2/install.sh >/dev/null
tmp="$(mktemp -d)"
trap 'kill "${strace_pid:-}" "${kinkod_pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
dir="$tmp/dev"
mkdir -p "$dir/softhsm/tokens"
printf 'directories.tokendir = %s/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > "$tmp/softhsm2.conf"
export SOFTHSM2_CONF="$tmp/softhsm2.conf"
port=$(( 20000 + RANDOM % 20000 ))
"$bin/kinkod" dev --init-only --data-dir "$dir" --listen "127.0.0.1:$port" --token-label "syncs-$port" 2>/dev/null
"$bin/kinkod" --config "$dir/kinkod.toml" 2>"$tmp/kinkod.log" &
kinkod_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/kinkod.log" && break; sleep 0.2; done
grep -q "listening on" "$tmp/kinkod.log" || { cat "$tmp/kinkod.log" >&2; exit 1; }
strace -f -qq -e trace=fsync,fdatasync -p "$kinkod_pid" -o "$tmp/strace.txt" &
strace_pid=$!
sleep 1
export KINKO_SERVER="https://localhost:$port" KINKO_DEV_DIR="$dir"
# Unsigned EIP-1559 transfers of 1 ETH on Sepolia to the allowlisted development hot wallet,
# nonces 0.. (the README's transaction with its nonce byte replaced).
for i in $(seq 0 $((n - 1))); do
  nonce=$(printf '%02x' "$i"); [ "$i" = 0 ] && nonce=80
  tx="0x02f383aa36a7${nonce}843b9aca008506fc23ac00825208945aaeb6053f3e94c9b9a09f33669435e7ef1beaed880de0b6b3a764000080c0"
  out=$("$bin/kinko" request submit --as ledger --requester-key "$dir/requesters/ledger.key" \
    --key eth-dev --chain ethereum --payload "$tx" --idempotency-key "w-$i" --reference "syncs $i" 2>&1)
  id=$(grep -o 'req-[0-9a-f]*' <<<"$out" | head -1)
  [ -n "$id" ] || { echo "submit failed: $out" >&2; exit 1; }
  for officer in alice bob; do
    "$bin/kinko" approve "$id" --as "$officer" --officer-key "$dir/officers/$officer.key" \
      --policy "$dir/policy.toml" --yes >/dev/null 2>&1 </dev/null || { echo "approve $officer failed" >&2; exit 1; }
  done
done
sleep 1
kill "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
syncs=$(grep -cE 'fsync|fdatasync' "$tmp/strace.txt" || true)
echo "withdrawals: $n  durable syncs: $syncs  per withdrawal: $(awk -v s="$syncs" -v n="$n" 'BEGIN { printf "%.1f", s / n }')"
