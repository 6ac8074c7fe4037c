"""Sends through the official, unmodified PostHog and Aptabase Python SDKs to telemetryd (driven
by tests/compat_sdks.rs): `compat_send.py URL`. Prints a JSON summary of what was sent and
every HTTP answer the SDKs got (their transports are observed, not changed), and exits non-zero
when an SDK reported an error.

PostHog (posthog-python, host = URL, token phc_compat_python): two clients of app versions
1.0.0 and 1.1.0 (the second gzips its uploads) each capture `app_opened` for their install and
the same ValueError with capture_exception; the first also sends a person update ($set), and
asks for the flags of its install (the collection flag's payload, the policy flags).
Aptabase (aptabase-python, base_url = URL, app key A-SH-COMPATPY01): `app_started` and
`screen_viewed` with props, in one request to /api/v0/events.
"""

import asyncio
import json
import logging
import sys

import httpx
import requests.adapters

from aptabase import Aptabase
from posthog import Posthog

URL = sys.argv[1]
POSTHOG_TOKEN = "phc_compat_python"
APTABASE_KEY = "A-SH-COMPATPY01"

requests_seen = []
errors = []


class Errors(logging.Handler):
    """Records what the SDKs log as warnings or errors (failed uploads, refused requests)."""

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            errors.append(f"{record.name}: {record.getMessage()}")


for name in ["posthog", "aptabase"]:
    logging.getLogger(name).addHandler(Errors())
    logging.getLogger(name).setLevel(logging.INFO)

# Observe every HTTP exchange of both SDKs' transports (requests for PostHog, httpx for Aptabase).
_send = requests.adapters.HTTPAdapter.send


def _observed_send(self, request, *args, **kwargs):
    response = _send(self, request, *args, **kwargs)
    requests_seen.append(
        {
            "url": request.url,
            "content_encoding": request.headers.get("Content-Encoding"),
            "status": response.status_code,
            "body": response.text[:2000],
        }
    )
    return response


requests.adapters.HTTPAdapter.send = _observed_send
_async_send = httpx.AsyncClient.send


async def _observed_async_send(self, request, *args, **kwargs):
    response = await _async_send(self, request, *args, **kwargs)
    await response.aread()
    requests_seen.append(
        {"url": str(request.url), "status": response.status_code, "body": response.text[:2000]}
    )
    return response


httpx.AsyncClient.send = _observed_async_send


def parse(text):
    # The same error in every version: only the app version differs between the two events.
    return int(text)


def failing_call():
    try:
        parse("not a number")
    except ValueError as error:
        return error


def posthog():
    sent = {"installs": {}, "events": []}
    first = None
    for i, version in enumerate(["1.0.0", "1.1.0"]):
        install = f"install-py-{i}"
        client = Posthog(
            POSTHOG_TOKEN,
            host=URL,
            gzip=i == 1,
            super_properties={"$app_version": version},
            on_error=lambda error, batch: errors.append(f"posthog on_error: {error}"),
        )
        client.capture(
            "app_opened",
            distinct_id=install,
            properties={"$session_id": f"session-py-{i}", "plan": "pro", "seats": 3 + i},
        )
        client.capture_exception(failing_call(), distinct_id=install)
        if i == 0:
            client.set(distinct_id=install, properties={"plan": "pro"})
            flags = client.evaluate_flags(install)
            first = {
                "payload": flags.get_flag_payload("telemetryd-collection"),
                "enabled": {key: flags.is_enabled(key, send_feature_flag_events=False) for key in flags.keys},
            }
        client.flush()
        client.shutdown()
        sent["installs"][install] = version
    sent["flags"] = first
    sent["exception"] = {"type": "ValueError", "message": str(failing_call())}
    return sent


async def aptabase():
    async with Aptabase(APTABASE_KEY, base_url=URL, app_version="2.0.0", is_debug=True) as client:
        await client.track("app_started", {"plan": "pro", "tabs": 4})
        await client.track("screen_viewed", {"screen": "home"})
    return {"app_version": "2.0.0", "sdk_version": "aptabase-python@0.1.0"}


summary = {"posthog": posthog(), "aptabase": asyncio.run(aptabase())}
summary["requests"] = requests_seen
summary["errors"] = errors
summary["ok"] = not errors and all(r["status"] < 300 for r in requests_seen)
print(json.dumps(summary, indent=1, default=str))
sys.exit(0 if summary["ok"] else 1)
