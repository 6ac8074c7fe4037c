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

# Browser tests of the admin UI (tests/e2e): Debian's chromium driven by playwright-core against
# the debug binary built above, on a store filled by `telemetryd demo`. Screenshots and page
# timings go to target/e2e-screenshots/.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing chromium for the UI tests" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
  echo "test.sh: installing node for the UI tests" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
node tests/e2e/run.mjs

# Packaging: the .deb (contents, install into a Debian root, systemd-analyze verify), the
# Homebrew formula and the Docker image (built with buildah, run until its health check
# passes). Needs root (chroot, debootstrap, buildah); SKIP_PACKAGING=1 leaves it out.
if [ "${SKIP_PACKAGING:-0}" = 1 ]; then
  echo "packaging tests skipped (SKIP_PACKAGING=1)"
elif [ "$(id -u)" != 0 ]; then
  echo "packaging tests skipped: they need root (chroot, debootstrap, buildah)"
else
  ./scripts/packaging-test.sh
fi
