#!/usr/bin/env bash
# Installs what ferry needs, then runs every check: formatting, lints on the whole
# workspace, unit tests, and the end-to-end tests (real runc, CRIU, namespaces). Root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "format"
cargo fmt --all -- --check

step "lint (clippy -D warnings, whole workspace)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit and end-to-end)"
FERRY_E2E=1 cargo test --workspace --locked -- --test-threads="${FERRY_TEST_THREADS:-2}"

step "all checks passed"
