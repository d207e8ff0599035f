#!/usr/bin/env bash
# Builds the Debian package of Kinko from this checkout, with dpkg-deb only (no cargo-deb):
#   packaging/deb/build.sh [--profile release|debug] [--no-build] [--out DIR]
# Writes DIR/kinko_VERSION_ARCH.deb (default DIR: target/debian), DIR/SHA256SUMS (the binaries
# and the package) and DIR/kinko-VERSION.cdx.json (the CycloneDX SBOM of the binaries).
# The package installs kinkod, kinko and kinko-witness in /usr/bin, the systemd unit, an example
# configuration and policy, and the docs; it creates the system user kinko and /var/lib/kinko,
# enables and starts nothing, and never removes /var/lib/kinko (the store holds the audit log).
# File times are SOURCE_DATE_EPOCH (default: the last commit's time), so that two builds of one
# commit give the same package when the binaries are the same (docs/supply-chain.md).
# DEB_COMPRESSION=none|gzip|xz (default xz) chooses dpkg-deb's compression.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release build=1 out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--profile release|debug] [--no-build] [--out DIR]" >&2; exit 1 ;;
  esac
done
bins="kinkod kinko kinko-witness"
case "$profile" in debug) profile=dev ;; esac
if [ "$build" = 1 ]; then
  # Paths of this checkout and of Cargo's home are remapped so that a rebuild elsewhere gives
  # the same binaries (docs/supply-chain.md, scripts/repro-check.sh).
  RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/build/kinko --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
    cargo build --locked --profile "$profile" -p kinkod -p kinko -p kinko-witness
  cargo build --locked --profile "$profile" -p kinko-release
fi
case "$profile" in dev|debug) dir=target/debug ;; *) dir="target/$profile" ;; esac
version="$(cargo metadata --format-version 1 --no-deps --locked \
  | sed -n 's/.*"name":"kinkod","version":"\([^"]*\)".*/\1/p')"
[ -n "$version" ] || { echo "cannot read kinkod's version" >&2; exit 1; }
arch="$(dpkg --print-architecture)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/kinko_${version}_${arch}"
install -d -m 755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
  "$root/usr/share/doc/kinko" "$root/usr/share/kinko/examples"
for b in $bins; do
  test -x "$dir/$b" || { echo "$dir/$b is missing: build it first (or drop --no-build)" >&2; exit 1; }
  install -m 755 "$dir/$b" "$root/usr/bin/$b"
done
install -m 644 packaging/systemd/kinkod.service "$root/lib/systemd/system/kinkod.service"
install -m 644 README.md "$root/usr/share/doc/kinko/README.md"
for d in docs/*.md; do install -m 644 "$d" "$root/usr/share/doc/kinko/"; done
install -d -m 755 "$root/usr/share/doc/kinko/alerts"
install -m 644 docs/alerts/*.yml "$root/usr/share/doc/kinko/alerts/"
install -m 644 policy/example.toml "$root/usr/share/kinko/examples/policy-example.toml"
# The commented configuration kinkod init writes, as an example.
ex="$stage/example"
"$dir/kinkod" init --dir "$ex" --state-dir "$ex/state" --origin kinko.example.com/log \
  --module /usr/lib/softhsm/libsofthsm2.so --token-label kinko 2>/dev/null
sed "s|$ex/state|/var/lib/kinko|g" "$ex/kinkod.toml" > "$root/usr/share/kinko/examples/kinkod.toml"
install -m 644 "$ex/state/policy.toml" "$root/usr/share/kinko/examples/policy.toml"
cat > "$root/usr/share/doc/kinko/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kinko
Files: *
License: $(cargo metadata --format-version 1 --no-deps --locked | sed -n 's/.*"name":"kinkod",[^}]*"license":"\([^"]*\)".*/\1/p' | head -1)
COPYRIGHT
cat > "$root/DEBIAN/control" <<CONTROL
Package: kinko
Version: $version
Architecture: $arch
Maintainer: Kinko developers <kinko@example.invalid>
Depends: libc6, adduser
Recommends: openssl
Suggests: softhsm2
Section: admin
Priority: optional
Homepage: https://github.com/kinko-project/kinko
Description: hardware-backed cold-wallet signing service
 kinkod decodes unsigned transactions into intents, enforces a withdrawal
 policy and M-of-N officer approvals, and appends to a verifiable audit log
 before a PKCS#11 HSM signs. kinko is the CLI for requesters, officers and
 auditors; kinko-witness cosigns audit-log checkpoints. See
 /usr/share/doc/kinko/install.md.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd kinko >/dev/null; then
    adduser --system --group --home /var/lib/kinko --no-create-home --shell /usr/sbin/nologin kinko
  fi
  install -d -m 755 -o root -g root /etc/kinko
  install -d -m 700 -o kinko -g kinko /var/lib/kinko
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
POSTINST
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
# /var/lib/kinko holds the store and its audit log: never removed by the package, not even on
# purge. Remove it by hand once the log is archived.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
POSTRM
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb="$out/kinko_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
(cd "$root/usr/bin" && sha256sum $bins) > "$out/SHA256SUMS"
(cd "$out" && sha256sum "$(basename "$deb")") >> "$out/SHA256SUMS"
"$dir/kinko-release" sbom --out "$out/kinko-$version.cdx.json" $(for b in $bins; do printf -- '--binary %s ' "$root/usr/bin/$b"; done)
echo "$deb"
