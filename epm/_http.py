"""Small HTTP helpers shared by the EPM client and the OAuth code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

# The longest Retry-After that is honoured; a larger value is treated as this.
MAX_RETRY_AFTER_SECONDS = 3600.0

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


def basic_authorization(user: str, password: str) -> str:
    """Return an HTTP Basic Authorization header value (UTF-8, RFC 7617).

    Raises ValueError when ``user`` contains a colon, which Basic cannot carry.
    """
    if ":" in user:
        raise ValueError("a user name for HTTP Basic must not contain ':'")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the Retry-After delay in seconds (delta-seconds or an HTTP date).

    Returns None when the header is missing or invalid. The result is clamped to
    0..MAX_RETRY_AFTER_SECONDS.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdecimal():
        delay = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS)


def parse_json_object(data: bytes) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None when it is not one."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_json(data: bytes) -> bool:
    """Return True when the body is a JSON object or array."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(value, dict | list)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"))
