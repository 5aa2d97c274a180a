"""Requests to the identity domain (IDCS or OCI IAM): token grants and device login.

The endpoint returns OAuth errors as JSON ``{"error": ..., "error_description": ...}``;
they become an EpmAuthError whose text states what the admin has to change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from epm._http import basic_authorization, parse_json_object, retry_after_of
from epm.errors import (
    EpmAuthError,
    EpmConnectionError,
    EpmError,
    EpmResponseError,
    EpmRetryableError,
)

logger = logging.getLogger(__name__)

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Key of problems with the identity domain, shared by every pod.
IDENTITY_PROBLEM_KEY = "epm_auth"

_LOGIN_FIX = "Run `epmpulse epm-login` on the EPMPulse host to sign in again."


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The HTTP status, JSON object (None when the body is not one) and Retry-After."""

    status: int
    body: dict[str, Any] | None
    retry_after: float | None


class TokenEndpoint:
    """One OAuth client of the identity domain.

    A confidential client (with a secret) authenticates with HTTP Basic
    (client_secret_basic); a public client sends only ``client_id`` in the form.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str | None
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret

    async def post(
        self, session: aiohttp.ClientSession, url: str, form: dict[str, str]
    ) -> TokenResponse:
        """POST a form to ``url`` with the client's authentication."""
        data = dict(form)
        headers = {"Accept": "application/json"}
        if self._client_secret:
            headers["Authorization"] = basic_authorization(
                self.client_id, self._client_secret
            )
        else:
            data["client_id"] = self.client_id
        try:
            async with session.post(
                url, data=data, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                return TokenResponse(
                    response.status,
                    parse_json_object(raw),
                    retry_after_of(response.headers),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EpmConnectionError(
                f"identity domain {url}: request failed ({type(exc).__name__})"
            ) from exc

    async def grant(
        self,
        session: aiohttp.ClientSession,
        form: dict[str, str],
        secrets: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Request a token; return the token body or raise the mapped error.

        ``secrets`` are removed from any error text taken from the response.
        """
        response = await self.post(session, self.token_url, form)
        body = response.body
        if 200 <= response.status < 300 and body is not None:
            if isinstance(body.get("access_token"), str) and body["access_token"]:
                return body
        raise self.error_for(response, secrets)

    def error_for(
        self, response: TokenResponse, secrets: Iterable[str] = ()
    ) -> EpmError:
        """Map a failed token response to an EpmError."""
        status = response.status
        if status == 429 or status >= 500:
            return EpmRetryableError(
                f"identity domain {self.token_url}: HTTP {status}", response.retry_after
            )
        body = response.body or {}
        error = str(body.get("error") or "")
        description = _redact(str(body.get("error_description") or ""), secrets)
        if 200 <= status < 300:
            return EpmResponseError(
                f"identity domain {self.token_url}: HTTP {status} without a token",
                status,
            )
        reason = f"{error}: {description}" if description else error or f"HTTP {status}"
        fix = self._fix_text(error, reason, status)
        return EpmAuthError(IDENTITY_PROBLEM_KEY, fix, oauth_error=error or None)

    def _fix_text(self, error: str, reason: str, status: int) -> str:
        if error == "invalid_grant":
            return (
                f"The identity domain rejected the EPM refresh token ({reason}). "
                "Refresh tokens are single-use and expire after 7 days without use. "
                + _LOGIN_FIX
            )
        if error == "invalid_client":
            return (
                f"The identity domain rejected the OAuth client ({reason}). Check "
                "EPM_CLIENT_ID, and set EPM_CLIENT_SECRET if the integrated "
                "application is confidential."
            )
        if error == "unauthorized_client":
            return (
                f"The OAuth client may not use this grant ({reason}). In the identity "
                "domain, allow the Refresh Token and Device Code grants and turn on "
                "'Allow token refresh' for the integrated application."
            )
        if error == "invalid_scope":
            return (
                f"The identity domain rejected the scope ({reason}). Set EPM_SCOPE to "
                "the EPM service scope of the integrated application."
            )
        return (
            f"The token endpoint {self.token_url} returned HTTP {status} ({reason}). "
            "Check EPM_TOKEN_URL and the integrated application."
        )


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:300]


def device_authorization_url(token_url: str) -> str:
    """Derive ``.../oauth2/v1/device`` from ``.../oauth2/v1/token``."""
    base = token_url.rstrip("/")
    if not base.endswith("/token"):
        raise ValueError(
            f"EPM_TOKEN_URL: {token_url!r} does not end in /token, so the device "
            "authorization URL cannot be derived; pass it explicitly"
        )
    return base[: -len("token")] + "device"


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """The verification URL, user code and timing of one device login."""

    verification_uri: str
    user_code: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


async def run_device_flow(
    endpoint: TokenEndpoint,
    session: aiohttp.ClientSession,
    device_url: str,
    scope: str,
    show: Callable[[DeviceAuthorization], None],
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
) -> dict[str, Any]:
    """Run the OAuth device authorization grant (RFC 8628); return the token body.

    Polls the token endpoint every ``interval`` seconds, adds 5 seconds on
    ``slow_down``, and raises EpmAuthError when the user denies the request or the
    code expires.
    """
    authorization, device_code = await _request_device_code(
        endpoint, session, device_url, scope
    )
    show(authorization)
    interval = authorization.interval
    deadline = clock() + authorization.expires_in
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code}
    while True:
        await sleep(interval)
        if clock() >= deadline:
            raise EpmAuthError(
                IDENTITY_PROBLEM_KEY,
                "The device code expired before the sign-in was approved. "
                "Run `epmpulse epm-login` again and approve it in time.",
            )
        try:
            response = await endpoint.post(session, endpoint.token_url, form)
        except EpmConnectionError as exc:
            logger.warning("EPM device login: %s; retrying", exc)
            continue
        body = response.body or {}
        if 200 <= response.status < 300 and body.get("access_token"):
            return body
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        if error == "access_denied":
            raise EpmAuthError(
                IDENTITY_PROBLEM_KEY,
                "The sign-in request was denied. Run `epmpulse epm-login` again "
                "and approve it as a user with access to the EPM pods.",
            )
        if error == "expired_token":
            raise EpmAuthError(
                IDENTITY_PROBLEM_KEY,
                "The device code expired before the sign-in was approved. "
                "Run `epmpulse epm-login` again and approve it in time.",
            )
        mapped = endpoint.error_for(response, (device_code,))
        if isinstance(mapped, EpmRetryableError):
            logger.warning("EPM device login: %s; retrying", mapped)
            interval = max(interval, mapped.retry_after or 0.0)
            continue
        raise mapped


async def _request_device_code(
    endpoint: TokenEndpoint, session: aiohttp.ClientSession, device_url: str, scope: str
) -> tuple[DeviceAuthorization, str]:
    form = {"response_type": "device_code", "scope": scope}
    response = await endpoint.post(session, device_url, form)
    body = response.body
    if not (200 <= response.status < 300) or body is None:
        raise endpoint.error_for(response)

    device_code = body.get("device_code")
    user_code = body.get("user_code")
    # RFC 8628 names it verification_uri; some servers send verification_url.
    uri = body.get("verification_uri") or body.get("verification_url")
    if not (isinstance(device_code, str) and isinstance(user_code, str)):
        raise EpmResponseError(
            f"device authorization {device_url}: response has no device_code or "
            "user_code",
            response.status,
        )
    if not isinstance(uri, str):
        raise EpmResponseError(
            f"device authorization {device_url}: response has no verification_uri",
            response.status,
        )
    complete = body.get("verification_uri_complete")
    authorization = DeviceAuthorization(
        verification_uri=uri,
        user_code=user_code,
        verification_uri_complete=complete if isinstance(complete, str) else None,
        expires_in=_positive_number(body.get("expires_in"), 600.0),
        interval=_positive_number(body.get("interval"), 5.0),
    )
    return authorization, device_code


def _positive_number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return default
        return number if number > 0 else default
    return default
