"""Sends through the official, unmodified Sentry Python SDK (sentry-sdk) to telemetryd (driven by
tests/compat_sdks.rs): `sentry_send.py URL`. Prints a JSON summary of what was sent and every
HTTP answer the SDK got (its transport is observed, not changed), and exits non-zero when the
SDK reported an error.

The SDK compresses with brotli when the `brotli` module can be imported, else with gzip. With
SENTRY_SEND_WITHOUT_BROTLI=1 this script makes `import brotli` fail before the SDK is imported,
so one venv runs the SDK both ways.

DSN http://PUBLIC_KEY@HOST/4242 (HOST from URL). Two releases, shop@1.0.0 and shop@1.1.0, each:
the same ValueError (capture_exception) from the same functions, a warning message, and a
transaction `checkout` with two spans. Release health: 1.0.0 has two application-mode sessions
of two installs, one ending normally and one crashed (an unhandled exception); 1.1.0 has two
request-mode sessions (sent as an aggregate), both fine. In 1.0.0 one event is dropped by
before_send, which the SDK reports in a client report.
"""

import json
import logging
import os
import sys
import time
from urllib.parse import urlparse

if os.environ.get("SENTRY_SEND_WITHOUT_BROTLI") == "1":
    sys.modules["brotli"] = None  # `import brotli` now raises ImportError

import urllib3  # noqa: E402

import sentry_sdk  # noqa: E402
from sentry_sdk.utils import event_from_exception  # noqa: E402

URL = sys.argv[1]
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
PROJECT_ID = "4242"
DSN = f"http://{PUBLIC_KEY}@{urlparse(URL).netloc}/{PROJECT_ID}"

requests_seen = []
errors = []


class Errors(logging.Handler):
    """Records what the SDK logs as warnings or errors (failed or refused uploads)."""

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            errors.append(f"{record.name}: {record.getMessage()}")


logging.getLogger("sentry_sdk.errors").addHandler(Errors())
logging.getLogger("sentry_sdk.errors").setLevel(logging.INFO)

# Observe every HTTP exchange of the SDK's transport (urllib3).
_urlopen = urllib3.PoolManager.urlopen


def _observed_urlopen(self, method, url, *args, **kwargs):
    response = _urlopen(self, method, url, *args, **kwargs)
    headers = kwargs.get("headers") or {}
    requests_seen.append(
        {
            "url": url,
            "content_encoding": headers.get("Content-Encoding"),
            "status": response.status,
            "body": response.data.decode("utf-8", "replace")[:2000],
        }
    )
    return response


urllib3.PoolManager.urlopen = _observed_urlopen


def parse(text):
    # The same error in every release: only the release (and the line numbers) may differ.
    return int(text)


def failing_call():
    try:
        parse("not a number")
    except ValueError as error:
        return error


transactions = []


def before_send(event, hint):
    if event.get("tags", {}).get("drop") == "yes":
        return None
    return event


def duration_ms(span):
    start, end = span.get("start_timestamp"), span.get("timestamp")
    if isinstance(start, str):  # already serialized: RFC 3339
        from datetime import datetime

        start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return (end - start).total_seconds() * 1000


def before_send_transaction(event, hint):
    transactions.append(
        {
            "release": event.get("release"),
            "name": event.get("transaction"),
            "spans": [
                {
                    "op": span.get("op"),
                    "description": span.get("description"),
                    "duration_ms": duration_ms(span),
                }
                for span in event.get("spans", [])
            ],
        }
    )
    return event


def session(user, mode, crash=False):
    scope = sentry_sdk.get_isolation_scope()
    sentry_sdk.set_user({"id": user})
    scope.start_session(session_mode=mode)
    if crash:
        try:
            parse("crash")
        except ValueError as error:
            event, hint = event_from_exception(
                error, mechanism={"type": "test", "handled": False}
            )
            sentry_sdk.capture_event(event, hint=hint)
    scope.end_session()


def release(version):
    sentry_sdk.init(
        dsn=DSN,
        release=f"shop@{version}",
        environment="production",
        traces_sample_rate=1.0,
        before_send=before_send,
        before_send_transaction=before_send_transaction,
        auto_session_tracking=False,
        default_integrations=False,
    )
    sentry_sdk.set_user({"id": f"install-{version}"})
    sentry_sdk.set_tag("plan", "pro")
    ids = {"exception": sentry_sdk.capture_exception(failing_call())}
    ids["message"] = sentry_sdk.capture_message("disk almost full", level="warning")
    with sentry_sdk.start_transaction(op="task", name="checkout"):
        with sentry_sdk.start_span(op="db.query", name="load cart"):
            time.sleep(0.02)
        with sentry_sdk.start_span(op="http.client", name="charge card"):
            time.sleep(0.01)
    if version == "1.0.0":
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("drop", "yes")
            sentry_sdk.capture_message("dropped by before_send")
        session("install-a", "application")
        session("install-b", "application", crash=True)
    else:
        session("install-c", "request")
        session("install-d", "request")
    sentry_sdk.flush(timeout=10)
    sentry_sdk.get_client().close(timeout=10)
    return ids


summary = {
    "dsn": DSN,
    "brotli": sys.modules.get("brotli") is not None,
    "ids": {version: release(version) for version in ["1.0.0", "1.1.0"]},
    "exception": {"type": "ValueError", "message": str(failing_call())},
    "transactions": transactions,
}
summary["requests"] = requests_seen
summary["errors"] = errors
summary["ok"] = not errors and bool(requests_seen) and all(
    r["status"] < 300 for r in requests_seen
)
print(json.dumps(summary, indent=1, default=str))
sys.exit(0 if summary["ok"] else 1)
