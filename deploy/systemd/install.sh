#!/usr/bin/env bash
# Installs jetsweep on this machine for systemd: the binaries in /usr/local/bin, the units in
# /etc/systemd/system, and /etc/default/jetsweep (mode 600, made only if missing) for the token,
# the coordinator's address and the CA certificate. Then enable what this machine runs:
#   sudo deploy/systemd/install.sh [BIN_DIR]        # BIN_DIR: where `cargo build --release` put them
#   sudo systemctl enable --now jetsweep-coordinator              # on the coordinator's machine
#   sudo systemctl enable --now jetsweep-worker@{1..4}            # on a worker machine, one per core
# DESTDIR=/some/root installs under that folder instead (and does not call systemctl).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$REPO/target}/release}
ROOT=${DESTDIR:-}
for b in jetsweep jetsweep-worker; do
  [ -x "$BIN/$b" ] || { echo "no $BIN/$b: run cargo build --release first, or give the folder" >&2; exit 1; }
done
install -d "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/etc/default" "$ROOT/etc/jetsweep"
install -m 755 "$BIN/jetsweep" "$BIN/jetsweep-worker" "$ROOT/usr/local/bin/"
install -m 644 "$REPO/deploy/systemd/jetsweep-coordinator.service" "$REPO/deploy/systemd/jetsweep-worker@.service" \
  "$ROOT/etc/systemd/system/"
ENV_FILE="$ROOT/etc/default/jetsweep"
if [ ! -e "$ENV_FILE" ]; then
  (umask 077; cat > "$ENV_FILE" <<EOT
# jetsweep's settings for its systemd units. The same token on the coordinator and every worker.
JETSWEEP_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# On worker machines: the coordinator's address and the authority that signed its certificate.
#JETSWEEP_COORDINATOR=https://coordinator.example.org:7070
#JETSWEEP_CA=/etc/jetsweep/ca.pem
EOT
  )
  echo "wrote $ENV_FILE with a fresh token: copy the same file to every worker machine"
else
  echo "kept $ENV_FILE as it is"
fi
[ -z "$ROOT" ] && command -v systemctl >/dev/null && systemctl daemon-reload || true
echo "installed jetsweep $("$ROOT/usr/local/bin/jetsweep" --version | awk '{print $2}') in $ROOT/usr/local/bin; units in $ROOT/etc/systemd/system"
echo "coordinator: put its TLS certificate and key in /etc/jetsweep/tls.crt and tls.key, then: systemctl enable --now jetsweep-coordinator"
echo "worker: set JETSWEEP_COORDINATOR (and JETSWEEP_CA) in /etc/default/jetsweep, then: systemctl enable --now jetsweep-worker@1 ..."
