#!/bin/sh
# Writes the shipped config (config/telemetry.toml, on stdin) for an installed telemetryd: the
# given data dir and listen address instead of ./data and 127.0.0.1:8080. Used by the Debian
# package (scripts/build-deb.sh) and the Docker image, so both ship the one documented config.
# Fails when the shipped config no longer has the lines it rewrites.
#
#   packaging/config.sh DATA_DIR LISTEN < config/telemetry.toml > telemetry.toml
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 DATA_DIR LISTEN < config/telemetry.toml > telemetry.toml" >&2
    exit 2
fi
data_dir=$1
listen=$2
text=$(cat)
for line in 'listen = "127.0.0.1:8080"' 'data_dir = "./data"'; do
    if ! printf '%s\n' "$text" | grep -qxF "$line"; then
        echo "$0: the shipped config has no line '$line'" >&2
        exit 1
    fi
done
printf '%s\n' "$text" | sed \
    -e "s|^listen = \"127.0.0.1:8080\"\$|listen = \"$listen\"|" \
    -e "s|^data_dir = \"./data\"\$|data_dir = \"$data_dir\"|" \
    -e "s|^# Runs as is: .*|# Installed copy of the shipped config: data in $data_dir, listening on $listen.|" \
    -e "s|^# 127.0.0.1:8080. Every key is shown|# Every key is shown|"
