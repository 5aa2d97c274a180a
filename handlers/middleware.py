"""Authentication, JSON errors and the access log for the webhook server."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from handlers.access import AccessLines, access_log
from handlers.auth import Keyring
from handlers.ratelimit import RateLimiter, retry_after_header
from handlers.validation import ValidationProblem
from handlers.webhook import KEY_LABEL, error_response

log = logging.getLogger("handlers.auth")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The status that the access log gives a request whose client closed the
# connection first, as nginx logs it. It is never sent.
CLIENT_CLOSED = 499


def parse_networks(values: Iterable[str]) -> list[Network]:
    """Parse ``EPMPULSE_TRUSTED_PROXIES`` entries (addresses or CIDR ranges)."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


def client_address(request: web.Request, trusted: list[Network]) -> str:
    """Return the client address, reading ``X-Forwarded-For`` only from trusted
    proxies: the right-most address that is not itself a trusted proxy."""
    peer = request.remote or "-"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return _clean(hop)
    return _clean(hops[0]) if hops else peer


def _is_trusted(address: str, trusted: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _clean(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "invalid"


CLIENT_ADDRESS = web.RequestKey("client_address", str)


def build_middleware(
    keyring: Keyring,
    trusted_proxies: Callable[[], list[Network]],
    on_request: Callable[[str, str, int, float], None] | None = None,
    limiter_for: Callable[[str], RateLimiter | None] = lambda method: None,
) -> Any:
    """Return the aiohttp middleware. ``on_request(route, method, status, seconds)``
    feeds metrics; ``limiter_for(method)`` gives the per-key rate limit of a method.
    """
    access_lines = AccessLines()
    rejections = RejectionLog()

    # One coroutine for every request: each await between aiohttp and the route
    # handler is a frame that a webhook request passes through twice.
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        client = client_address(request, trusted_proxies())
        request[CLIENT_ADDRESS] = client
        path = request.path
        is_api = path.startswith("/api/")
        status = 500
        label = "-"
        try:
            try:
                if not is_api:
                    response = await handler(request)
                elif (
                    matched := keyring.match(request.headers.get("Authorization"))
                ) is None:
                    response = _reject(request, client)
                else:
                    label = matched
                    request[KEY_LABEL] = matched
                    limiter = limiter_for(request.method)
                    wait = (
                        limiter.acquire(f"{request.method}:{matched}")
                        if limiter
                        else None
                    )
                    if wait is None:
                        response = await handler(request)
                    else:
                        response = _rate_limited(
                            request, client, matched, wait, rejections
                        )
            except ValidationProblem as problem:
                response = error_response(
                    problem.status,
                    problem.code,
                    problem.message,
                    problem.field,
                    problem.value,
                )
            except web.HTTPException as exc:
                status = exc.status
                if not is_api or exc.status < 400:
                    raise
                allow = exc.headers.get("Allow")
                response = error_response(
                    exc.status,
                    "not_found" if exc.status == 404 else "http_error",
                    f"{request.method} {_quote(path)}: {exc.reason}. "
                    "See docs/openapi.yaml for the API.",
                    headers={"Allow": allow} if allow is not None else None,
                )
            except ConnectionResetError:
                transport = request.transport
                if transport is not None and not transport.is_closing():
                    raise
                # The client left before its request was read, so no response
                # reaches it and the access line's 499 is all there is to log.
                response = web.Response(status=CLIENT_CLOSED)
            except Exception:
                log.exception("request failed: %s %s", request.method, _quote(path))
                response = error_response(
                    500,
                    "internal_error",
                    "EPMPulse failed to handle this request; the server log has "
                    "details",
                )
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            if path.startswith(("/api/", "/slack/")) and (
                access_log.isEnabledFor(logging.INFO)
            ):
                access_lines.add(
                    f"access client={client} method={request.method} "
                    f"path={_quote(path)} status={status} "
                    f"ms={elapsed * 1000:.1f} key={label}"
                )
            if on_request is not None:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                on_request(route, request.method, status, elapsed)

    return middleware


class RejectionLog:
    """Choice of which 429s to log: the first of a key and method, then at most one
    a minute with the count since, so that a client in a retry loop cannot flood
    the log."""

    def __init__(
        self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def due(self, key: str) -> int | None:
        """Return how many were left out since the last logged one, or None when
        this one is left out too."""
        now = self.clock()
        logged_at, skipped = self._last.get(key, (-math.inf, 0))
        if now - logged_at < self.interval:
            self._last[key] = (logged_at, skipped + 1)
            return None
        self._last[key] = (now, 0)
        return skipped


def _rate_limited(
    request: web.Request,
    client: str,
    label: str,
    wait: float,
    rejections: RejectionLog,
) -> web.Response:
    skipped = rejections.due(f"{request.method}:{label}")
    if skipped is not None:
        log.warning(
            "rate limited client=%s method=%s path=%s key=%s retry_after=%.1f "
            "(%d more since the last line)",
            client,
            request.method,
            _quote(request.path),
            label,
            wait,
            skipped,
        )
    return error_response(
        429,
        "rate_limited",
        f"too many {request.method} requests for key {label}; retry after "
        f"{retry_after_header(wait)} s, or raise EPMPULSE_RATE_LIMIT_"
        f"{'GET' if request.method == 'GET' else 'POST'}",
        headers={"Retry-After": retry_after_header(wait)},
    )


def _reject(request: web.Request, client: str) -> web.Response:
    reason = "missing_key" if "Authorization" not in request.headers else "invalid_key"
    log.warning(
        "auth rejected client=%s method=%s path=%s reason=%s",
        client,
        request.method,
        _quote(request.path),
        reason,
    )
    return _unauthorized(reason)


def _unauthorized(reason: str) -> web.Response:
    message = (
        "the Authorization header is missing: send 'Authorization: Bearer <key>'"
        if reason == "missing_key"
        else "the API key is not valid: check the key configured in the EPM connection"
    )
    return error_response(
        401,
        "unauthorized",
        message,
        "Authorization",
        headers={"WWW-Authenticate": 'Bearer realm="epmpulse"'},
    )


def _quote(text: str) -> str:
    """Keep a request path on one log line and cut it to a sane length."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text[:200]  # Nothing to escape, as in the API's own paths.
    cleaned = text.encode("unicode_escape").decode("ascii")
    return cleaned[:200]
