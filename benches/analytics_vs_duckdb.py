#!/usr/bin/env python3
"""The dashboard questions, telemetryd against DuckDB on the same events, in one sitting.

Loads an NDJSON file of native events (from ../shared/bench/gen_events.py) into a running
telemetryd (`--load`), waits until the index has caught up, then asks telemetryd each question
that DuckDB's peer script (../shared/bench/duckdb_peer.py) asks, ROUNDS times, over HTTP, and
prints the median milliseconds beside DuckDB's (the peer script run on the same file right
after), whether the numbers agree (DuckDB's own answers computed here), and the funnel and trend
figures the analytics issue sets targets for.

Usage: analytics_vs_duckdb.py --url http://127.0.0.1:8080 --token TOKEN --product bench \
           --events ev.ndjson --peer ../shared/bench/duckdb_peer.py [--load] [--skip-peer]
Needs `pip install duckdb`. The product must accept the events (an open schema), with a
per-install rate limit above the load and `min_group_installs = 0` for exact breakdowns.
"""
import argparse, json, statistics, subprocess, sys, threading, time, urllib.request
import http.client
from urllib.parse import urlparse, quote

DAY = 86_400_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--product", default="bench")
    ap.add_argument("--events", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    api = Api(args.url, args.token)
    if args.load:
        load(args.url, args.product, args.events)
        api.wait_indexed()
    import duckdb
    con = duckdb.connect()
    con.execute("CREATE TABLE ev AS SELECT * FROM read_json_auto(?, format='newline_delimited')", [args.events])
    now = con.execute("SELECT max(timestamp) FROM ev").fetchone()[0]
    rows = con.execute("SELECT count(*) FROM ev").fetchone()[0]
    results = []
    for name, ours, theirs, same in questions(args.product, now):
        answer, ms = api.timed(ours, args.rounds)
        expected = con.execute(theirs.format(now=now)).fetchall()
        ok, why = same(answer, expected)
        results.append((name, ms, ok, why))
    peer = {}
    if not args.skip_peer:
        out = subprocess.run([sys.executable, args.peer, args.events], capture_output=True, text=True, check=True)
        peer = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{args.label} {rows} events; DuckDB {peer.get('peer', '(not run)')}, load {peer.get('load_s', '-')} s")
    print("| question | DuckDB ms | telemetryd ms | same numbers |")
    print("|---|---:|---:|---|")
    for name, ms, ok, why in results:
        print(f"| {name} | {peer.get(name, '-')} | {ms:.2f} | {'yes' if ok else 'NO: ' + why} |")
    for name, spec, target in targets(args.product, now):
        answer, ms = api.timed(spec, args.rounds)
        print(f"| {name} (target ≤ {target} ms) | - | {ms:.2f} | {summary(answer)} |")


def questions(product, now):
    """(name, telemetryd request, DuckDB SQL, comparison) per dashboard question."""
    full = {"from": now - 30 * DAY, "to": now + 1}
    trend = lambda **kw: ("POST", "/api/v1/analytics/query", {"product": product, "kind": "trend", **full, **kw})
    return [
        ("count_by_day_30d", trend(measure="events", bucket="1d"),
         "SELECT (timestamp // 86400000) d, count(*) FROM ev WHERE timestamp > {now} - 2592000000 GROUP BY d",
         lambda a, e: same_map(per_bucket(a, None), {d * DAY: c for d, c in e})),
        ("count_by_day_x_platform", trend(measure="events", bucket="1d", group_by=["platform"], limit=100),
         "SELECT (timestamp // 86400000) d, platform, count(*) FROM ev GROUP BY d, platform",
         lambda a, e: same_map(per_bucket(a, "group"), {(d * DAY, p): c for d, p, c in e})),
        ("distinct_installs_30d", trend(measure="installs", bucket="1d"),
         "SELECT count(DISTINCT install_id) FROM ev",
         lambda a, e: same_map({"installs": a["series"][0]["installs"]}, {"installs": e[0][0]})),
        ("distinct_installs_per_day", trend(measure="installs", bucket="1d"),
         "SELECT (timestamp // 86400000) d, count(DISTINCT install_id) FROM ev GROUP BY d",
         lambda a, e: same_map(per_bucket(a, None), {d * DAY: c for d, c in e})),
        ("top_versions", trend(measure="events", bucket="1d", group_by=["app_version"], limit=10),
         "SELECT app_version, count(*) c FROM ev GROUP BY app_version ORDER BY c DESC LIMIT 10",
         lambda a, e: same_map(totals(a), {v: c for v, c in e})),
        ("error_codes_by_version",
         trend(measure="events", bucket="1d", q="level:error", group_by=["app_version", "error_code"], limit=100),
         "SELECT app_version, error.code, count(*) FROM ev WHERE level='error' GROUP BY ALL",
         lambda a, e: same_map(totals(a), {(v, c): n for v, c, n in e})),
        ("p95_duration_by_platform",
         ("POST", "/api/v1/analytics/query",
          {"product": product, "kind": "distribution", "metric": "duration_ms", "group_by": ["platform"], **full}),
         "SELECT platform, quantile_cont(metrics.duration_ms, 0.95) FROM ev GROUP BY platform",
         lambda a, e: same_map({key(g["group"]): g["summary"]["p95"] for g in a["groups"]}, dict(e), rel=0.01)),
        ("search_text_filter_7d",
         ("GET", f"/api/v1/events?product={product}&q=underrun&platform=ios&from={now - 7 * DAY}&limit=50", None),
         "SELECT id FROM ev WHERE error.message ILIKE '%underrun%' AND platform='ios' AND timestamp > {now} - 604800000 ORDER BY timestamp DESC LIMIT 50",
         lambda a, e: same_map({"ids": sorted(ev["id"] for ev in a["events"])}, {"ids": sorted(str(r[0]) for r in e)})),
    ]


def targets(product, now):
    steps = ["session_started", "dictation_started", "recognition_started", "dictation_completed"]
    return [
        ("funnel, 4 steps", {"product": product, "kind": "funnel", "window": "1d", "from": now - 30 * DAY,
                             "to": now + 1, "steps": [{"name": s} for s in steps]}, 1000),
        ("trend day × platform, 30 days", {"product": product, "kind": "trend", "measure": "events", "bucket": "1d",
                                           "from": now - 30 * DAY, "to": now + 1, "group_by": ["platform"]}, 100),
    ]


def summary(answer):
    if "steps" in answer:
        return "counts " + " → ".join(str(round(s["count"])) for s in answer["steps"])
    return f"{len(answer.get('series', []))} series × {len(answer.get('buckets', []))} buckets"


def key(group):
    if isinstance(group, list):
        return group[0] if len(group) == 1 else tuple(group)
    if isinstance(group, dict):
        values = list(group.values())
        return values[0] if len(values) == 1 else tuple(values)
    return group


def per_bucket(answer, by):
    out = {}
    for series in answer["series"]:
        for start, value in zip(answer["buckets"], series["values"]):
            if value:
                out[start if by is None else (start, key(series["group"]))] = value
    return out


def totals(answer):
    return {key(s["group"]): s["events"] for s in answer["series"] if key(s["group"]) != "other"}


def same_map(ours, theirs, rel=0.0):
    for k in set(ours) | set(theirs):
        a, b = ours.get(k), theirs.get(k)
        if a is None or b is None:
            return False, f"{k!r}: telemetryd {a}, DuckDB {b}"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if abs(a - b) > rel * abs(b) + 1e-9:
                return False, f"{k!r}: telemetryd {a}, DuckDB {b}"
        elif a != b:
            return False, f"{k!r}: telemetryd {str(a)[:80]}, DuckDB {str(b)[:80]}"
    return True, ""


class Api:
    def __init__(self, url, token):
        u = urlparse(url)
        self.host, self.port, self.token = u.hostname, u.port or 80, token

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 200:
            raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
        return json.loads(data) if data.startswith(b"{") else data

    def timed(self, request, rounds):
        if isinstance(request, dict):
            request = ("POST", "/api/v1/analytics/query", request)
        method, path, body = request
        times, answer = [], None
        for _ in range(rounds):
            started = time.perf_counter()
            answer = self.call(method, path, body)
            times.append((time.perf_counter() - started) * 1000)
        return answer, statistics.median(times)

    def wait_indexed(self):
        """Until every stored event is searchable and the index's merges have settled (its
        size unchanged for 5 s, at most 3 minutes): merges after a load take the cores the
        questions would be timed on."""
        def gauge(name):
            text = urllib.request.urlopen(f"http://{self.host}:{self.port}/metrics").read().decode()
            return next((l.split()[1] for l in text.splitlines() if l.startswith(name + " ")), "0")
        while gauge("telemetryd_index_lag_events") != "0":
            time.sleep(0.5)
        size, same, deadline = None, 0, time.time() + 180
        while same < 5 and time.time() < deadline:
            time.sleep(1)
            now = gauge("telemetryd_index_size_bytes")
            same = same + 1 if now == size else 0
            size = now


def load(url, product, path, batch=1000, threads=4):
    u = urlparse(url)
    lines = open(path, "rb").read().splitlines()
    chunks = [lines[i:i + batch] for i in range(0, len(lines), batch)]
    started, lock, failures = time.time(), threading.Lock(), []

    def worker(mine):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        for chunk in mine:
            body = b"[" + b",".join(chunk) + b"]"
            while True:
                conn.request("POST", f"/api/v1/events?product={quote(product)}", body=body,
                             headers={"content-type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 503:
                    time.sleep(0.2)
                    continue
                answer = json.loads(data)
                if resp.status != 200 or answer.get("rejected"):
                    with lock:
                        failures.append((resp.status, str(answer)[:300]))
                break

    workers = [threading.Thread(target=worker, args=(chunks[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.time() - started
    print(f"loaded {len(lines)} events in {took:.1f} s ({len(lines) / took:.0f}/s); "
          f"{len(failures)} batches with rejections {failures[:2]}", flush=True)


if __name__ == "__main__":
    main()
