#!/usr/bin/env bash
# Spark for the tests: the unmodified Spark 4.3 distribution inside the PyPI
# package pyspark (spark-submit, spark-class, the jars), installed once into
# the test venv (the same one scripts/hadoop-env.sh uses), and a JDK 17.
#
#   scripts/spark-env.sh            # prints SPARK_HOME (pyspark's directory) last
#
# Idempotent: does nothing when pyspark already imports in the venv.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYENV="${CORRAL_PYENV:-$REPO/target/pyenv}"
PYTHON_BIN="${PYTHON:-python3}"
PYSPARK_VERSION="${PYSPARK_VERSION:-4.3.0}"

log() { echo "[spark-env] $*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -z "${JAVA_HOME:-}" ]; then
    for candidate in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 \
        /usr/lib/jvm/java-17-openjdk; do
        if [ -d "$candidate" ]; then JAVA_HOME="$candidate"; break; fi
    done
fi
[ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ] \
    || die "no JDK 17 found: install openjdk-17-jdk-headless or set JAVA_HOME"

PY="$PYENV/bin/python"
if [ ! -x "$PY" ]; then
    log "creating venv at $PYENV"
    mkdir -p "$(dirname "$PYENV")"
    "$PYTHON_BIN" -m venv "$PYENV" >&2
fi
if ! "$PY" -c 'import pyspark' >/dev/null 2>&1; then
    log "installing pyspark==$PYSPARK_VERSION into $PYENV (a ~455 MB download, once)"
    "$PY" -m pip --disable-pip-version-check --no-input install --quiet \
        "pyspark==$PYSPARK_VERSION" >&2
fi
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
[ -x "$SPARK_HOME/bin/spark-submit" ] || die "no bin/spark-submit in $SPARK_HOME"
log "Spark $("$PY" -c 'import pyspark; print(pyspark.__version__)') at $SPARK_HOME (JAVA_HOME=$JAVA_HOME)"
echo "$SPARK_HOME"
