#!/usr/bin/env bash
# Corral's one test command: installs what the tests need (idempotently),
# then checks formatting and lints and runs every test of the workspace,
# including the end-to-end suite with real master/agent processes and the
# unmodified pymesos 0.3.15 client. Used verbatim by .ci/run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { echo; echo "==> $*"; }

step "installing test dependencies (pymesos venv)"
CORRAL_PYTHON="$(scripts/test-deps.sh | tail -n 1)"
export CORRAL_PYTHON

step "installing ZooKeeper 3.8 (Debian package; tests start and stop their own servers)"
scripts/zookeeper.sh install

step "building the local Docker test image (idempotent)"
CORRAL_TEST_IMAGE="$(scripts/docker-test-image.sh | tail -n 1)"
export CORRAL_TEST_IMAGE

step "checking formatting"
cargo fmt --all -- --check

step "building (debug, all targets)"
cargo build --workspace --all-targets --locked

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "running every test"
export CORRAL_BIN="$REPO/target/debug/corral"
cargo test --workspace --locked -- --test-threads="${CORRAL_TEST_THREADS:-2}"

step "all tests passed"
