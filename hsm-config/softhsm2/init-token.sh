#!/usr/bin/env bash
# Creates a SoftHSM2 token in DIR (never the system-wide token directory) for development.
#   hsm-config/softhsm2/init-token.sh DIR [LABEL]
# Writes DIR/softhsm2.conf, DIR/tokens/, and random PINs in DIR/user.pin and DIR/so.pin (mode 600).
# Use it with: SOFTHSM2_CONF=DIR/softhsm2.conf and, in kinkod's config, pin = { file = "DIR/user.pin" }.
# Development only: softhsm2-util takes the PINs as arguments, visible to local users for an instant.
set -euo pipefail
dir="${1:?usage: init-token.sh DIR [LABEL]}"
label="${2:-kinko-dev}"
here="$(cd "$(dirname "$0")" && pwd)"
"$here/install.sh"
mkdir -p "$dir/tokens"
dir="$(cd "$dir" && pwd)"
case "$dir" in
  /var/lib/softhsm*|/etc/softhsm*) echo "refusing the system-wide token directory $dir" >&2; exit 1 ;;
esac
umask 077
conf="$dir/softhsm2.conf"
if [ ! -e "$conf" ]; then
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > "$conf"
fi
export SOFTHSM2_CONF="$conf"
if softhsm2-util --show-slots | grep -Eq "Label:[[:space:]]+$label[[:space:]]*$"; then
  echo "token $label already exists in $dir" >&2
  exit 0
fi
for f in user.pin so.pin; do
  [ -e "$dir/$f" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/$f"
  chmod 600 "$dir/$f"
done
softhsm2-util --init-token --free --label "$label" \
  --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
echo "token $label created: SOFTHSM2_CONF=$conf, user PIN file $dir/user.pin" >&2
