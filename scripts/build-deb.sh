#!/usr/bin/env bash
# Builds the Debian package with `cargo deb` (metadata in Cargo.toml): compiles telemetryd with
# the packaging profile, writes the generated assets into target/assets/ (the installed config,
# bash/zsh/fish completions and the man page, all made by the binary itself), then packages.
# Installs cargo-deb when it is missing. The last line printed is the path of the .deb.
#
#   scripts/build-deb.sh                 # profile `dist` (fat LTO)
#   PROFILE=release scripts/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dist}"

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb" >&2
  cargo install cargo-deb --locked >&2
fi

cargo build --locked --profile "$profile" >&2
bin="${CARGO_TARGET_DIR:-target}/$profile/telemetryd"

# Always under the crate's own target/ (Cargo.toml names them there), whatever CARGO_TARGET_DIR is.
assets=target/assets
mkdir -p "$assets"
sh packaging/config.sh /var/lib/telemetryd 127.0.0.1:8080 <config/telemetry.toml >"$assets/telemetry.toml"
"$bin" check-config "$assets/telemetry.toml" >/dev/null
"$bin" completions bash >"$assets/telemetryd.bash"
"$bin" completions zsh >"$assets/_telemetryd"
"$bin" completions fish >"$assets/telemetryd.fish"
"$bin" man | gzip -9n >"$assets/telemetryd.1.gz"

mkdir -p target/debian
cargo deb --no-build --locked --profile "$profile" --output target/debian/ >&2
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
deb="target/debian/telemetryd_${version}-1_${arch}.deb"
test -f "$deb"
echo "$deb"
