#!/usr/bin/env bash
# Real HAProxy (Debian's `haproxy` package, 2.6) for the workloads
# framework's load balancing and its tests.
#
#   scripts/haproxy.sh install   # apt-get install haproxy (idempotent); prints its path last
#
# The Debian package's own service is stopped and disabled: the framework
# runs HAProxy itself (master-worker mode, `--haproxy`), writing its
# configuration and reloading it.
set -euo pipefail

log() { echo "[haproxy] $*" >&2; }

install() {
    if ! command -v haproxy >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        log "installing Debian packages haproxy and curl (the tests' traffic)"
        if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq haproxy curl >/dev/null
        # The package starts its own instance where an init system runs.
        "${SUDO[@]}" service haproxy stop >/dev/null 2>&1 || true
    else
        log "haproxy already installed"
    fi
    command -v haproxy
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
