#!/usr/bin/env bash
# Builds the Docker image the Spark dispatcher's Docker tests run Spark 4 in,
# from a root filesystem put together here and loaded with `docker import`
# (no image registry is reachable here):
#   /opt/spark                            pyspark's Spark (bin, sbin, jars, conf)
#   /usr/lib/jvm/java-17-openjdk-amd64    the host's JDK 17, with the files its
#                                         links point at (/etc/java-17-openjdk,
#                                         the CA store) copied in
#   bash, sh (dash), coreutils, ps, hostname, grep, sed, awk, tar, gzip, and
#   the shared libraries all of them load (found with ldd)
# ENV: SPARK_HOME=/opt/spark, JAVA_HOME, PATH with both bin directories.
#
# Idempotent: an existing image is kept. Prints the image name as its last
# line (everything else goes to stderr). CORRAL_SPARK_IMAGE overrides the
# name; CORRAL_SPARK_HOME the Spark to copy (default: scripts/spark-env.sh's);
# CORRAL_IMAGE_JDK the JDK (default: Debian's JDK 17 at its usual path, which
# is also its path in the image).
set -euo pipefail

IMAGE="${CORRAL_SPARK_IMAGE:-corral/spark:test}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[spark-docker-image] $*" >&2; }
die() { log "error: $*"; exit 1; }
START=$SECONDS

# --- sources ----------------------------------------------------------------
SPARK_SRC="${CORRAL_SPARK_HOME:-}"
if [ -z "$SPARK_SRC" ]; then
    SPARK_SRC="$("$REPO/scripts/spark-env.sh" | tail -n 1)"
fi
[ -x "$SPARK_SRC/bin/spark-class" ] && [ -d "$SPARK_SRC/jars" ] \
    || die "no Spark at '$SPARK_SRC' (bin/spark-class and jars/ expected)"

JDK="${CORRAL_IMAGE_JDK:-}"
if [ -z "$JDK" ]; then
    for candidate in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64; do
        if [ -d "$candidate" ]; then JDK="$candidate"; break; fi
    done
fi
[ -n "$JDK" ] && [ -x "$JDK/bin/java" ] && [ -f "$JDK/lib/server/libjvm.so" ] \
    || die "no JDK 17 found: install openjdk-17-jdk-headless or set CORRAL_IMAGE_JDK"
JDK="${JDK%/}"
log "building $IMAGE from Spark at $SPARK_SRC and the JDK at $JDK"

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT

# Copies a directory tree as hard links when it can (no need to write the
# jars and the JDK twice; the staging tree is only read by tar), otherwise
# as a plain copy. Staged files are never modified in place.
copy_tree() {
    local src="$1" dst="$2"
    mkdir -p "$(dirname "$dst")"
    if ! cp -al "$src" "$dst" 2>/dev/null; then
        rm -rf "$dst"
        cp -a "$src" "$dst"
    fi
}

# --- layout (merged /usr, as in Debian) --------------------------------------
mkdir -p "$ROOT"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,root,opt,proc,sys,dev,mnt/mesos/sandbox}
mkdir -p "$ROOT/tmp" "$ROOT/var/tmp"
chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"
chmod 700 "$ROOT/root"
ln -s usr/bin "$ROOT/bin"
ln -s usr/sbin "$ROOT/sbin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"

# --- Spark -------------------------------------------------------------------
# The JVM side only: the launcher scripts, the daemons' scripts and the jars.
# pyspark's Python sources (and find_spark_home.py, so that find-spark-home
# falls back to bin/..) stay out: the image has no Python.
SPARK="$ROOT/opt/spark"
mkdir -p "$SPARK"
for sub in bin sbin jars conf licenses; do
    if [ -d "$SPARK_SRC/$sub" ]; then copy_tree "$SPARK_SRC/$sub" "$SPARK/$sub"; fi
done
for f in RELEASE LICENSE NOTICE; do
    if [ -f "$SPARK_SRC/$f" ]; then cp "$SPARK_SRC/$f" "$SPARK/$f"; fi
done
rm -f "$SPARK"/bin/*.cmd

# --- JDK ---------------------------------------------------------------------
# Left out: jmods (only jlink needs them), man pages, the docs and src.zip
# links, and the libraries that need X11 or the accessibility bridge.
IMAGE_JDK="$ROOT$JDK"
copy_tree "$JDK" "$IMAGE_JDK"
rm -rf "$IMAGE_JDK/jmods" "$IMAGE_JDK/man" "$IMAGE_JDK/docs" "$IMAGE_JDK/lib/src.zip" \
    "$IMAGE_JDK"/lib/{libawt_xawt.so,libjawt.so,libsplashscreen.so,libatk-wrapper.so}
# Debian's JDK links into /etc/java-17-openjdk, /etc/ssl and /usr/share: a link
# that does not resolve inside the image becomes a copy of what it points at
# on this host (or goes, when it points nowhere here either).
while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    if [ "${target#/}" = "$target" ] && [ -e "$link" ]; then
        continue # relative, and resolves inside the staged tree
    fi
    host_path="${link#"$ROOT"}"
    rm -f "$link"
    if [ -e "$host_path" ]; then
        cp -rL "$host_path" "$link"
    else
        log "dropping $host_path (points nowhere)"
    fi
done < <(find "$IMAGE_JDK" -type l -print0)

# --- tools -------------------------------------------------------------------
# What Spark's bin scripts (spark-submit, spark-class, load-spark-env.sh,
# find-spark-home), the dispatcher's task scripts and a person debugging in
# the container use.
REQUIRED_TOOLS=(bash ps hostname uname dirname basename cat sleep timeout mkdir head)
OTHER_TOOLS=(
    dash env ls rm cp mv ln chmod chown touch mktemp rmdir readlink realpath pwd echo printf
    true false test '[' tail tr wc cut sort uniq tee date id whoami nohup nice stat du df
    expr seq yes sync grep sed awk find xargs tar gzip kill
)
find_tool() {
    local dir
    for dir in /usr/bin /bin /usr/sbin /sbin; do
        if [ -x "$dir/$1" ] && [ ! -d "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
    done
    return 1
}
BINARIES=()
for tool in "${REQUIRED_TOOLS[@]}" "${OTHER_TOOLS[@]}"; do
    if ! path="$(find_tool "$tool")"; then
        case " ${REQUIRED_TOOLS[*]} " in
            *" $tool "*) die "no $tool on this host" ;;
            *) log "skipping $tool (not on this host)"; continue ;;
        esac
    fi
    cp -L "$path" "$ROOT/usr/bin/$tool"
    BINARIES+=("$path")
done
if [ -x "$ROOT/usr/bin/dash" ]; then
    ln -s dash "$ROOT/usr/bin/sh"
else
    ln -s bash "$ROOT/usr/bin/sh"
fi

# --- shared libraries --------------------------------------------------------
# Every library the tools, the JDK's launchers and its native libraries
# (libjvm, libjava, libnet, libnio, libzip, ...) load, and the dynamic
# loader, at the paths ldd reports; libjvm.so is found through the JDK's own
# directories.
ELF_FILES=("${BINARIES[@]}")
while IFS= read -r -d '' f; do
    ELF_FILES+=("${f#"$ROOT"}")
done < <(find "$IMAGE_JDK/bin" "$IMAGE_JDK/lib" \( -name '*.so' -o -path "$IMAGE_JDK/bin/*" \
    -o -name jspawnhelper -o -name jexec \) -type f -print0)
declare -A LIBS=()
for f in "${ELF_FILES[@]}"; do
    out="$(LD_LIBRARY_PATH="$JDK/lib/server:$JDK/lib" ldd "$f" 2>/dev/null)" || continue
    while read -r line; do
        case "$line" in
            *"=> not found"*) log "warning: ${line%% *} (for $f) not found on this host" ;;
            *"=> /"*) lib="${line#*=> }"; LIBS["${lib%% (*}"]=1 ;;
            /*) LIBS["${line%% (*}"]=1 ;; # the loader itself
        esac
    done <<<"$out"
done
for lib in "${!LIBS[@]}"; do
    case "$lib" in "$JDK"/*) continue ;; esac # the JDK's own, already there
    mkdir -p "$ROOT$(dirname "$lib")"
    [ -e "$ROOT$lib" ] || cp -L "$lib" "$ROOT$lib"
done
[ -e "$ROOT/lib64/ld-linux-x86-64.so.2" ] || [ -n "$(ls "$ROOT"/usr/lib/ld-linux* 2>/dev/null)" ] \
    || die "no dynamic loader found with ldd"

# --- /etc and the locale -----------------------------------------------------
cat >"$ROOT/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
cat >"$ROOT/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
cat >"$ROOT/etc/nsswitch.conf" <<'N'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
N
LANG_ENV=()
if [ -d /usr/lib/locale/C.utf8 ]; then
    mkdir -p "$ROOT/usr/lib/locale"
    cp -r /usr/lib/locale/C.utf8 "$ROOT/usr/lib/locale/C.utf8"
    LANG_ENV=(-c 'ENV LANG=C.UTF-8')
fi
# A loader cache over the library directories, so lookups do not depend on
# the loader's built-in search path.
printf '%s\n' /usr/local/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib \
    >"$ROOT/etc/ld.so.conf"
LDCONFIG="$(PATH="$PATH:/usr/sbin:/sbin" command -v ldconfig || true)"
if [ -z "$LDCONFIG" ] || ! "$LDCONFIG" -X -r "$ROOT" 2>/dev/null; then
    log "warning: no loader cache (ldconfig -r failed); the loader's default paths apply"
fi

dangling="$(find "$ROOT" -xtype l -printf '/%P\n')"
[ -z "$dangling" ] || die "links that do not resolve in the image: $dangling"

# --- import ------------------------------------------------------------------
log "staged $(du -sh "$ROOT" | cut -f1) in $((SECONDS - START)) s; importing"
tar -C "$ROOT" --numeric-owner --owner=0 --group=0 -c . | docker import \
    -c "ENV JAVA_HOME=$JDK" \
    -c 'ENV SPARK_HOME=/opt/spark' \
    -c "ENV PATH=/opt/spark/bin:$JDK/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "${LANG_ENV[@]}" \
    -c 'CMD ["/bin/bash"]' \
    -m "Spark from pyspark and a JDK 17 for Corral's Spark tests" \
    - "$IMAGE" >&2

# A broken image must not survive as "already built".
if ! check="$(docker run --rm "$IMAGE" /opt/spark/bin/spark-submit --version 2>&1)"; then
    docker image rm "$IMAGE" >/dev/null 2>&1 || true
    die "the new image cannot run spark-submit --version; removed it:
$check"
fi
log "built $IMAGE in $((SECONDS - START)) s"
echo "$IMAGE"
