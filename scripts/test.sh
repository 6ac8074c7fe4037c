#!/usr/bin/env bash
# Runs every test of telemetryd: unit tests, integration tests against real servers, and the
# end-to-end checks. Installs what the tests need when it is missing (fresh machines, CI).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from https://rustup.rs" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The SDK compatibility tests run official Python and JS SDKs, unmodified: the OpenTelemetry
# exporters (tests/otel_sdks.rs), PostHog's, Aptabase's and Sentry's clients (tests/compat_sdks.rs). The
# Python SDKs go into a venv at tests/otel/.venv (the tests run its python), the JS SDKs into
# tests/otel/node_modules. Node also serves the UI tests below.
if ! command -v node >/dev/null 2>&1; then
  echo "test.sh: installing node for the OpenTelemetry SDK and UI tests" >&2
  apt_install nodejs npm
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "test.sh: installing python3 for the OpenTelemetry SDK tests" >&2
  apt_install python3 python3-venv
fi
if ! tests/otel/.venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf tests/otel/.venv
  if ! python3 -m venv tests/otel/.venv >/dev/null 2>&1; then
    echo "test.sh: installing python3-venv for the OpenTelemetry SDK tests" >&2
    rm -rf tests/otel/.venv
    apt_install python3-venv
    python3 -m venv tests/otel/.venv
  fi
fi
tests/otel/.venv/bin/pip install -q --disable-pip-version-check -r tests/otel/requirements.txt
(cd tests/otel && npm ci --no-audit --no-fund --loglevel=error)

# The ClickHouse sink tests (tests/clickhouse.rs) start throwaway servers of Debian's
# clickhouse-server, each on its own port and data dir.
if [ ! -x /usr/sbin/clickhouse-server ] && ! command -v clickhouse-server >/dev/null 2>&1; then
  echo "test.sh: installing clickhouse-server for the ClickHouse sink tests" >&2
  apt_install clickhouse-server
fi

cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-2}"

# Browser tests of the admin UI (tests/e2e): Debian's chromium driven by playwright-core against
# the debug binary built above, on a store filled by `telemetryd demo`. Screenshots and page
# timings go to target/e2e-screenshots/.
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing chromium for the UI tests" >&2
  apt_install chromium
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
