#!/usr/bin/env bash
# Builds the small Docker image Corral's Docker tests and benchmark run, from
# a busybox-static root filesystem imported with `docker import` (no image
# registry is reachable here). Idempotent: an existing image is kept.
# Prints the image name as its last line. CORRAL_TEST_IMAGE overrides the name.
set -euo pipefail

IMAGE="${CORRAL_TEST_IMAGE:-corral/busybox:test}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi

BUSYBOX=/bin/busybox
if ! ldd "$BUSYBOX" 2>&1 | grep -q "not a dynamic executable"; then
    # Debian's busybox-static: one static binary with every applet.
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q busybox-static >&2 || {
        apt-get update -q >&2
        apt-get install -y -q busybox-static >&2
    }
fi

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,mnt/mesos/sandbox,var/www}
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf /bin/busybox "$ROOT/bin/$applet"
done
cat >"$ROOT/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$ROOT/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
echo "corral test image" >"$ROOT/var/www/index.html"

tar -C "$ROOT" -c . | docker import \
    -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/sh"]' \
    -m "busybox-static root filesystem for Corral's tests" \
    - "$IMAGE" >&2
echo "$IMAGE"
