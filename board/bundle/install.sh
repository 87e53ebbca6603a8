#!/bin/sh
# moth-edge bundle installer, run on the board from the unpacked bundle directory:
#   sudo ./install.sh            # installs to /opt/moth-edge, config in /etc/moth-edge
#   PREFIX=/home/pi/moth-edge ./install.sh
# Then: pm2 start /opt/moth-edge/ecosystem.config.js && pm2 save && pm2 startup (prints the
# systemd command to run once so pm2 comes back after a reboot).
set -eu

PREFIX=${PREFIX:-/opt/moth-edge}
CONFIG_DIR=${CONFIG_DIR:-/etc/moth-edge}
SRC=$(cd "$(dirname "$0")" && pwd)

fail() { echo "install: $*" >&2; exit 1; }

arch=$(uname -m)
want=$(sed -n 's/.*"arch": *"\([a-z0-9]*\)".*/\1/p' "$SRC/BUNDLE.json" | head -n1)
case "$arch:$want" in
  aarch64:arm64) ;;
  *) fail "this bundle is for $want, this machine is $arch" ;;
esac

command -v node >/dev/null 2>&1 || fail "node not found: install Node.js 20 (e.g. NodeSource or the distribution's nodejs)"
abi=$(node -p process.versions.modules)
want_abi=$(sed -n 's/.*"abi": *"\([0-9]*\)".*/\1/p' "$SRC/BUNDLE.json" | head -n1)
[ "$abi" = "$want_abi" ] || fail "node $(node -v) has ABI $abi; this bundle's native addons need ABI $want_abi (Node $(sed -n 's/.*"major": *\([0-9]*\).*/\1/p' "$SRC/BUNDLE.json"))"
# pm2 loads the ESM ecosystem file with require(): needs Node >= 20.19.
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || fail "node $(node -v) is too old: need >= 20.19"

echo "checking the bundle on this board..."
node "$SRC/selfcheck.mjs" || fail "self-check failed (see the JSON above)"

if [ "$SRC" != "$PREFIX" ]; then
  if [ -d "$PREFIX" ]; then
    rm -rf "$PREFIX.prev"
    mv "$PREFIX" "$PREFIX.prev"
    echo "previous install kept in $PREFIX.prev"
  fi
  mkdir -p "$(dirname "$PREFIX")"
  cp -a "$SRC" "$PREFIX"
fi
mkdir -p "$PREFIX/logs" "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/config.yaml" ]; then
  echo "# moth-edge config: see the README. Empty = the embedded demo (test pattern + simulated IMU)." > "$CONFIG_DIR/config.yaml"
  echo "{}" >> "$CONFIG_DIR/config.yaml"
  echo "wrote $CONFIG_DIR/config.yaml"
fi
node "$PREFIX/dist/runtime/cli.js" --check-config --config "$CONFIG_DIR/config.yaml"

if command -v pm2 >/dev/null 2>&1; then
  MOTH_EDGE_CONFIG="$CONFIG_DIR/config.yaml" pm2 startOrReload "$PREFIX/ecosystem.config.js" --update-env
  pm2 save
  echo "pm2 runs moth-edge. To start it at boot, run once: pm2 startup   (and the command it prints)"
else
  echo "pm2 not found: npm install -g pm2, then: MOTH_EDGE_CONFIG=$CONFIG_DIR/config.yaml pm2 start $PREFIX/ecosystem.config.js && pm2 save && pm2 startup"
fi
