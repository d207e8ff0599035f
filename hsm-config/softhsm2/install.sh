#!/usr/bin/env bash
# Installs SoftHSM2 when it is missing (Debian/Ubuntu). Idempotent; does nothing when the module
# is already present.
set -euo pipefail
module="${KINKO_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
if [ -e "$module" ] && command -v softhsm2-util >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "SoftHSM2 is missing and this is not a Debian-like system: install softhsm2 and set KINKO_PKCS11_MODULE" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing softhsm2 (apt-get)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 >/dev/null
test -e "$module" || { echo "softhsm2 installed but $module is missing" >&2; exit 1; }
