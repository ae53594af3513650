#!/usr/bin/env bash
# A real browser for the web UI tests: Debian's `chromium` and
# `chromium-driver` (WebDriver), installed idempotently.
#
#   scripts/chromium.sh install   # apt-get install chromium chromium-driver; prints chromedriver's path last
#
# The tests start their own chromedriver on a free port and drive a headless
# Chromium through it (tests/src/browser.rs); nothing stays running.
set -euo pipefail

log() { echo "[chromium] $*" >&2; }

install() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        log "installing Debian packages chromium and chromium-driver"
        if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
            chromium chromium-driver fonts-dejavu-core >/dev/null
    else
        log "chromium $(chromium --version 2>/dev/null | awk '{print $2}') already installed"
    fi
    command -v chromedriver
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
