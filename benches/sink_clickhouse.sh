#!/usr/bin/env bash
# The ClickHouse sink's benchmark (README, "Scaling out"): native ingest with and without the
# sink into a local clickhouse-server, and the catch-up of a 1M-event backlog.
#
#   benches/sink_clickhouse.sh [BIN]      (default target/release/telemetryd; needs clickhouse-server)
#   env: ROUNDS (3), BATCH (the sink's batch_size, 50000), SECONDS_PER_RUN (20)
#
# Each round runs 20 s of `telemetryd bench --mode ingest` (32 connections, 50 events a request,
# durable acks, a fresh data dir) without the sink, then with it (a fresh ClickHouse). With the
# sink it prints the sink's lag when ingest stopped and how long it took to drain, and the CPU
# seconds telemetryd, its sink thread and ClickHouse used. Then 1M events are stored without the
# sink, the server restarts with it, and the catch-up is timed until the sink reports lag 0.
set -u
BIN=${1:-target/release/telemetryd}
ROOT=$(mktemp -d /tmp/sink-bench.XXXX)
PORT=18098 CH_HTTP=18124 CH_TCP=19124
URL=http://127.0.0.1:$PORT
TOKEN=bench-admin-token-0123456789
HASH=$(echo -n "$TOKEN" | $BIN hash-token | grep -o 'sha256:[0-9a-f]*' | head -1)
CH_PID=

ch_start() {
  rm -rf "$ROOT/ch"; mkdir -p "$ROOT/ch"
  cat > "$ROOT/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>$CH_HTTP</http_port><tcp_port>$CH_TCP</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>$ROOT/ch/data/</path><tmp_path>$ROOT/ch/tmp/</tmp_path>
  <users_config>users.xml</users_config><default_profile>default</default_profile>
  <default_database>default</default_database><mark_cache_size>536870912</mark_cache_size>
</yandex>
XML
  cat > "$ROOT/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
XML
  (cd "$ROOT/ch" && exec clickhouse-server --config-file="$ROOT/ch/config.xml" > server.log 2>&1) &
  CH_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$CH_HTTP/" --data-binary 'SELECT 1' > /dev/null && return; sleep 0.2; done
  echo "clickhouse-server did not start" >&2; exit 1
}
ch_stop() { kill "$CH_PID" 2> /dev/null; wait "$CH_PID" 2> /dev/null; CH_PID=; }
config() { # config WITH_SINK
  sed "s|^tokens = \[\]|tokens = [{ name = \"bench\", hash = \"$HASH\", role = \"admin\" }]|" config/telemetry.toml
  printf '\n[[products]]\nid = "bench"\nrate_limit_per_minute = 100000000\n'
  [ "$1" = 1 ] && printf '\n[[sinks]]\nname = "warehouse"\nkind = "clickhouse"\nurl = "http://127.0.0.1:%s"\ndatabase = "bench"\nbatch_size = %s\ntimeout_ms = 30000\n' "$CH_HTTP" "${BATCH:-50000}"
}
server_start() { # server_start DATA_DIR WITH_SINK
  config "$2" > "$ROOT/telemetry.toml"
  TELEMETRYD_SERVER__DATA_DIR=$1 TELEMETRYD_SERVER__LISTEN=127.0.0.1:$PORT $BIN --config "$ROOT/telemetry.toml" > "$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 150); do curl -sf $URL/readyz > /dev/null && return; sleep 0.2; done
  echo "telemetryd did not start (see $1.log)" >&2; exit 1
}
server_stop() { kill $PID; wait $PID 2> /dev/null; }
sink() { # position lag lag_seconds delivered last_error
  curl -s -H "authorization: Bearer $TOKEN" $URL/api/v1/stats | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]["sinks"][0]; print(s["position"], s["lag_events"], s["lag_seconds"], s["delivered_total"], s["last_error"])'
}
until_caught_up() { while [ "$(sink | cut -d' ' -f2)" != 0 ]; do sleep 0.2; done; }
ticks() { [ -n "$1" ] && awk '{print $14+$15}' /proc/$1/stat || echo 0; }
sink_ticks() { for f in /proc/$1/task/*; do [ "$(cat $f/comm 2> /dev/null)" = sink-warehouse ] && awk '{print $14+$15}' $f/stat && return; done; echo 0; }
ingest() { $BIN bench --target $URL --mode ingest --flat-share 0 --native-product bench --batch-size 50 --connections 32 "$@"; }

for round in $(seq 1 "${ROUNDS:-3}"); do
  for with in 0 1; do
    [ $with = 1 ] && ch_start
    DATA=$(mktemp -d "$ROOT/data.XXXX"); server_start "$DATA" $with
    t0=$(ticks $PID) c0=$(ticks "$CH_PID") s0=$(sink_ticks $PID)
    out=$(ingest --duration "${SECONDS_PER_RUN:-20}" --progress-every 1000 2>&1)
    t1=$(ticks $PID) c1=$(ticks "$CH_PID") s1=$(sink_ticks $PID)
    line="round $round, sink $([ $with = 1 ] && echo on || echo off): $(echo "$out" | grep throughput | tail -1 | sed 's/bench: //'); $(echo "$out" | grep p99 | tail -1 | sed 's/bench: //')"
    if [ $with = 1 ]; then
      at_end=$(sink); started=$(date +%s.%N); until_caught_up; drained=$(echo "$(date +%s.%N) - $started" | bc)
      line="$line; sink at ingest end (position lag lag_s delivered error): $at_end; drained in ${drained} s"
    fi
    echo "$line; CPU s: telemetryd $(echo "($t1 - $t0) / 100" | bc -l | cut -c1-5), its sink thread $(echo "($s1 - $s0) / 100" | bc -l | cut -c1-5), clickhouse $(echo "($c1 - $c0) / 100" | bc -l | cut -c1-5)"
    server_stop; rm -rf "$DATA" "$DATA.log"
    [ $with = 1 ] && ch_stop
  done
done

DATA=$(mktemp -d "$ROOT/data.XXXX"); server_start "$DATA" 0
ingest --events 1000000 --progress-every 100000 > /dev/null 2>&1
server_stop
ch_start; server_start "$DATA" 1
started=$(date +%s.%N); backlog=$(sink); until_caught_up
echo "backlog: $backlog (position lag lag_s delivered error) caught up in $(echo "$(date +%s.%N) - $started" | bc) s; rows in ClickHouse: $(curl -s "http://127.0.0.1:$CH_HTTP/" --data-binary 'SELECT count() FROM bench.events')"
server_stop; ch_stop; rm -rf "$ROOT"
