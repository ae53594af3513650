#!/usr/bin/env bash
# Prepare a shell for Corral's HDFS volume backend (`corral-storage`, cargo
# feature `hdfs`): Hadoop's own client (libhdfs, compiled into the binary by
# hdfs-sys, calling the Hadoop Java client through JNI) needs
#
#   JAVA_HOME        a JDK 17 (jni.h to build libhdfs, libjvm to run it)
#   LD_LIBRARY_PATH  the directory of libjvm.so
#   CLASSPATH        the Hadoop client jars, listed one by one, plus
#                    $HADOOP_CONF_DIR when it is set
#   LIBHDFS_OPTS     JVM options for the JVM libhdfs starts
#
# The jars come from the Spark distribution inside the PyPI package pyspark,
# installed (once, idempotently) into the project venv ($REPO/target/pyenv,
# the one scripts/test-deps.sh uses; CORRAL_PYENV overrides it).
#
# Usage:
#   eval "$(scripts/hadoop-env.sh)"     # prints `export ...` lines on stdout
#   source scripts/hadoop-env.sh        # the same, in the current shell
#   scripts/hadoop-env.sh --check       # also starts a JVM with that CLASSPATH
#                                       # and lists file:/// through Hadoop
#
# Pointing at a real cluster: set HADOOP_CONF_DIR to a directory holding the
# cluster's core-site.xml (fs.defaultFS = hdfs://namenode:8020) and
# hdfs-site.xml before running this script; the directory is put first on
# CLASSPATH, which is where Hadoop's Configuration looks for them. Without it
# fs.defaultFS is Hadoop's built-in default, the local file system (file:///),
# which is what the tests use: no NameNode can be downloaded here. A volume
# root given as a full URI (hdfs://namenode:8020/corral/volumes) needs no
# HADOOP_CONF_DIR at all.
#
# Overrides: JAVA_HOME (default: the machine's OpenJDK 17), CORRAL_PYENV,
# PYSPARK_VERSION (default 4.3.0), CORRAL_HADOOP_JARS (a directory of jars to
# use instead of pyspark's).

# Sourced: run as a child (so `set -e` and `exit` stay out of the caller's
# shell) and evaluate what it prints.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    if __corral_hadoop_env="$(bash "${BASH_SOURCE[0]}" "$@")"; then
        eval "$__corral_hadoop_env"
        unset __corral_hadoop_env
        return 0
    else
        unset __corral_hadoop_env
        return 1
    fi
fi

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYENV="${CORRAL_PYENV:-$REPO/target/pyenv}"
PYSPARK_VERSION="${PYSPARK_VERSION:-4.3.0}"

log() { echo "[hadoop-env] $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- JDK -------------------------------------------------------------------
if [ -z "${JAVA_HOME:-}" ]; then
    for candidate in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 \
        /usr/lib/jvm/java-17-openjdk; do
        if [ -d "$candidate" ]; then JAVA_HOME="$candidate"; break; fi
    done
fi
[ -n "${JAVA_HOME:-}" ] || die "no JDK 17 found: install openjdk-17-jdk-headless or set JAVA_HOME"
[ -f "$JAVA_HOME/include/jni.h" ] || die "$JAVA_HOME has no include/jni.h: JAVA_HOME must be a JDK, not a JRE"
LIBJVM="$(find "$JAVA_HOME/lib" -name libjvm.so -path '*server*' 2>/dev/null | head -n 1)"
[ -n "$LIBJVM" ] || LIBJVM="$(find "$JAVA_HOME" -name libjvm.so 2>/dev/null | head -n 1)"
[ -n "$LIBJVM" ] || die "no libjvm.so under $JAVA_HOME"
JVM_DIR="$(dirname "$LIBJVM")"

# --- Hadoop client jars ----------------------------------------------------
if [ -n "${CORRAL_HADOOP_JARS:-}" ]; then
    JARS="$CORRAL_HADOOP_JARS"
else
    # pyspark in the test venv, installed once by scripts/spark-env.sh.
    SPARK_HOME_DIR="$(CORRAL_PYENV="$PYENV" PYSPARK_VERSION="$PYSPARK_VERSION" JAVA_HOME="$JAVA_HOME" \
        "$REPO/scripts/spark-env.sh" | tail -n 1)"
    JARS="$SPARK_HOME_DIR/jars"
fi
[ -d "$JARS" ] || die "no jars directory at $JARS"

# The smallest set that runs Hadoop's FileSystem client (file:// and the HDFS
# client up to its NameNode RPC): the shaded client API and runtime, the
# logging facade their classes call (slf4j-api; with no binding Hadoop's own
# log lines are dropped, errors still reach us through libhdfs), and
# commons-lang3, which libhdfs 3.3 itself loads (ExceptionUtils) when it
# starts the JVM.
jar() {
    local pattern="$1" found
    found="$(find "$JARS" -maxdepth 1 -name "$pattern" | sort | tail -n 1)"
    [ -n "$found" ] || die "no $pattern in $JARS"
    printf '%s' "$found"
}
CP=""
for pattern in 'hadoop-client-api-*.jar' 'hadoop-client-runtime-*.jar' \
    'slf4j-api-*.jar' 'commons-lang3-*.jar'; do
    CP="${CP:+$CP:}$(jar "$pattern")"
done
if [ -n "${HADOOP_CONF_DIR:-}" ]; then
    [ -d "$HADOOP_CONF_DIR" ] || die "HADOOP_CONF_DIR=$HADOOP_CONF_DIR is not a directory"
    CP="$HADOOP_CONF_DIR:$CP"
fi

LD="$JVM_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# JVM options libhdfs passes on: keep slf4j from warning that it has no
# binding each time a JVM starts.
OPTS="${LIBHDFS_OPTS:--Dslf4j.internal.verbosity=ERROR}"

if [ "${1:-}" = "--check" ]; then
    log "checking: listing file:/// through Hadoop's FileSystem API"
    TMPD="$(mktemp -d)"
    trap 'rm -rf "$TMPD"' EXIT
    cat >"$TMPD/Check.java" <<'EOF'
public class Check {
    public static void main(String[] args) throws Exception {
        org.apache.hadoop.conf.Configuration conf = new org.apache.hadoop.conf.Configuration();
        org.apache.hadoop.fs.FileSystem fs = org.apache.hadoop.fs.FileSystem.get(conf);
        System.err.println("[hadoop-env] fs.defaultFS=" + fs.getUri() + ", "
            + fs.listStatus(new org.apache.hadoop.fs.Path("/")).length + " entries in /");
    }
}
EOF
    "$JAVA_HOME/bin/javac" -cp "$CP" -d "$TMPD" "$TMPD/Check.java" >&2
    # shellcheck disable=SC2086 # LIBHDFS_OPTS is a list of JVM options
    "$JAVA_HOME/bin/java" $OPTS -cp "$CP:$TMPD" Check >&2
fi

printf 'export JAVA_HOME=%q\n' "$JAVA_HOME"
printf 'export LD_LIBRARY_PATH=%q\n' "$LD"
printf 'export CLASSPATH=%q\n' "$CP"
printf 'export LIBHDFS_OPTS=%q\n' "$OPTS"
