#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit tests, integration tests against real
# FUSE mounts and namespaces, and pjdfstest against strata and kernel overlayfs. Run as root.
# With REQUIRE_PRIVILEGED=1 (CI), a privileged test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== build"
cargo build --release --quiet
cargo build --quiet
echo "== unit and integration tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
if [ -x tests/pjdfstest/run.sh ]; then
    echo "== pjdfstest: strata vs kernel overlayfs"
    STRATA_BIN="$PWD/target/release/strata-overlay" tests/pjdfstest/run.sh
fi
echo "== all tests passed"
