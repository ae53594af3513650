#!/usr/bin/env bash
# Corral's one test command: installs what the tests need (idempotently),
# then checks formatting and lints and runs every test of the workspace,
# including the end-to-end suite with real master/agent processes and the
# unmodified pymesos 0.3.15 client, and then the HDFS volume backend through
# Hadoop's own client (scripts/hadoop-env.sh). Used verbatim by .ci/run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { echo; echo "==> $*"; }

# No incremental compilation artefacts: CI builds once from a clean clone,
# and they would take gigabytes of the machine's disk.
export CARGO_INCREMENTAL=0
step "disk free where the build goes: $(df -h --output=avail "$REPO" | tail -n 1 | tr -d ' ')"

# The durable tansu (a Kafka-protocol broker) takes about 15 minutes to build
# once on 2 cores; it is built in the background while the other parts are
# installed, and waited for before the tests.
mkdir -p "$REPO/target"
scripts/tansu.sh > "$REPO/target/tansu-build.log" 2>&1 &
TANSU_PID=$!

step "installing test dependencies (pymesos venv)"
CORRAL_PYTHON="$(scripts/test-deps.sh | tail -n 1)"
export CORRAL_PYTHON

step "installing ZooKeeper 3.8 (Debian package; tests start and stop their own servers)"
scripts/zookeeper.sh install

step "installing HAProxy 2.6 and curl (Debian packages; the workloads framework runs HAProxy itself in its tests)"
scripts/haproxy.sh install

step "installing Spark 4.3 (the distribution inside pyspark, into the test venv) for the Spark dispatcher's tests (real Spark jobs, the real spark-submit)"
CORRAL_SPARK_HOME="$(scripts/spark-env.sh | tail -n 1)"
export CORRAL_SPARK_HOME

step "installing RabbitMQ 3.10 (Debian package; the eventing tests start and stop their own brokers)"
scripts/rabbitmq.sh install

step "installing Chromium and chromedriver (Debian packages; the web UI tests drive a real headless browser)"
CORRAL_CHROMEDRIVER="$(scripts/chromium.sh install | tail -n 1)"
export CORRAL_CHROMEDRIVER

step "building the local Docker test image (idempotent)"
CORRAL_TEST_IMAGE="$(scripts/docker-test-image.sh | tail -n 1)"
export CORRAL_TEST_IMAGE

step "building the local Spark Docker image (JDK 17 and pyspark's Spark, docker import; idempotent)"
scripts/spark-docker-image.sh

step "the YARN stand-ins' own check (test doubles of a ResourceManager, NodeManager and rmadmin; tests/yarn/README.md)"
tests/yarn/selftest.sh

step "checking formatting"
cargo fmt --all -- --check

step "building (debug, all targets)"
cargo build --workspace --all-targets --locked

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the eventing service's client alone (corral-eventing without its server feature: no librdkafka, lapin, axum or tonic)"
cargo check -p corral-eventing --no-default-features --lib --locked

step "waiting for the durable tansu build (scripts/tansu.sh; log in target/tansu-build.log)"
if ! wait "$TANSU_PID"; then
    cat "$REPO/target/tansu-build.log"
    echo "error: scripts/tansu.sh failed (log above)" >&2
    exit 1
fi
CORRAL_TANSU="$(tail -n 1 "$REPO/target/tansu-build.log")"
export CORRAL_TANSU

step "running every test"
export CORRAL_BIN="$REPO/target/debug/corral"
cargo test --workspace --locked -- --test-threads="${CORRAL_TEST_THREADS:-2}"

step "HDFS volume backend (corral-storage, feature hdfs): Hadoop's own client (libhdfs + JNI, jars from pyspark) against a local fs.defaultFS"
# No NameNode can be downloaded here: the suite runs the real Hadoop client
# on file:///. CORRAL_TEST_HDFS_URI=hdfs://namenode:8020/dir points it at a
# real cluster instead.
HADOOP_ENV="$(scripts/hadoop-env.sh)"
eval "$HADOOP_ENV"
cargo clippy -p corral-storage --features hdfs --all-targets --locked -- -D warnings
cargo test -p corral-storage --features hdfs --locked

step "HDFS in the agent (feature hdfs): unit tests, then volumes and the fetcher end to end with a corral built --features hdfs"
cargo clippy -p corral-agent -p corral-tests --features corral-agent/hdfs,corral-tests/hdfs --all-targets --locked -- -D warnings
cargo test -p corral-agent --features hdfs --locked
cargo build -p corral-cli --features hdfs --locked
cp "$REPO/target/debug/corral" "$REPO/target/debug/corral-hdfs"
CORRAL_BIN="$REPO/target/debug/corral-hdfs" \
    cargo test -p corral-tests --features hdfs --test hdfs_volumes --test hdfs_fetch --locked
# Leave the default binary in place for later runs.
cargo build -p corral-cli --locked

step "all tests passed"
