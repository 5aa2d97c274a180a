"""``epmpulse smoke-test``: check a deployed server from the outside.

It checks that ``/health`` returns 200, that a wrong API key gets 401, that the
configured key is accepted, and that an update posted to the smoke-test row
(``EPMPulse/SmokeTest``, see store.smoke) is stored and read back. That row is not
shown on any board.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from store.smoke import SMOKE_TEST_APP, SMOKE_TEST_DOMAIN

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


class _Failed(Exception):
    """Ends one check with its reason."""


def run_smoke_test(
    url: str,
    key: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    report: Callable[[Check], None] = lambda check: print(check.line(), flush=True),
) -> list[Check]:
    """Run every check against ``url``, call ``report`` after each, return them.

    The key is sent only in the Authorization header and never reported.
    """
    base = url.rstrip("/")
    session = requests.Session()
    steps: list[tuple[str, Callable[[], str]]] = [
        ("health", lambda: _check_health(session, base, timeout)),
        ("wrong key", lambda: _check_wrong_key(session, base, timeout)),
        ("api key", lambda: _check_key(session, base, key, timeout)),
        ("round trip", lambda: _check_round_trip(session, base, key, timeout)),
    ]
    checks: list[Check] = []
    with session:
        for name, step in steps:
            try:
                check = Check(name, True, step())
            except _Failed as exc:
                check = Check(name, False, str(exc))
            except requests.RequestException as exc:
                check = Check(name, False, f"cannot reach {base}: {exc}")
            checks.append(check)
            report(check)
    return checks


def _check_health(session: requests.Session, base: str, timeout: float) -> str:
    response = session.get(f"{base}/health", timeout=timeout)
    body = _json(response)
    if response.status_code != 200:
        failing = {
            name: value
            for name, value in (body.get("checks") or {}).items()
            if value != "ok"
        }
        raise _Failed(
            f"GET /health returned {response.status_code}"
            + (f", failing checks: {failing}" if failing else "")
        )
    return (
        f"GET /health returned 200 (status {body.get('status')}, version "
        f"{body.get('version')}, mode {body.get('mode')})"
    )


def _check_wrong_key(session: requests.Session, base: str, timeout: float) -> str:
    wrong = secrets.token_hex(32)
    response = session.get(
        f"{base}/api/v1/status", headers=_auth(wrong), timeout=timeout
    )
    if response.status_code != 401:
        raise _Failed(
            f"a random key got {response.status_code} instead of 401: the API is "
            "not protected"
        )
    return "a random key was rejected with 401"


def _check_key(session: requests.Session, base: str, key: str, timeout: float) -> str:
    response = session.get(f"{base}/api/v1/status", headers=_auth(key), timeout=timeout)
    if response.status_code != 200:
        raise _Failed(
            f"GET /api/v1/status returned {response.status_code}"
            f"{_error_of(response)}; check --key or EPMPULSE_API_KEY"
        )
    return "GET /api/v1/status accepted the key (200)"


def _check_round_trip(
    session: requests.Session, base: str, key: str, timeout: float
) -> str:
    now = datetime.now(UTC)
    job_id = f"smoke-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    update = {
        "app": SMOKE_TEST_APP,
        "domain": SMOKE_TEST_DOMAIN,
        "status": "OK",
        "job_id": job_id,
        "message": f"epmpulse smoke-test at {now.isoformat(timespec='seconds')}",
        "source": "smoke-test",
    }
    posted = session.post(
        f"{base}/api/v1/status", json=update, headers=_auth(key), timeout=timeout
    )
    if posted.status_code != 200:
        raise _Failed(
            f"POST /api/v1/status returned {posted.status_code}{_error_of(posted)}"
        )
    read = session.get(
        f"{base}/api/v1/status/{SMOKE_TEST_APP}", headers=_auth(key), timeout=timeout
    )
    stored = (_json(read).get("domains") or {}).get(SMOKE_TEST_DOMAIN) or {}
    if read.status_code != 200 or stored.get("job_id") != job_id:
        raise _Failed(
            f"posted job {job_id} but GET /api/v1/status/{SMOKE_TEST_APP} returned "
            f"{read.status_code} with job {stored.get('job_id')!r}"
        )
    return (
        f"job {job_id} was stored in {SMOKE_TEST_APP}/{SMOKE_TEST_DOMAIN} and read back"
    )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_of(response: requests.Response) -> str:
    error = _json(response).get("error")
    if isinstance(error, dict) and error.get("message"):
        return f" ({error['message']})"
    return ""
