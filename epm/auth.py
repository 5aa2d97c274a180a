"""Authentication to EPM Cloud pods: Basic, OAuth refresh token, client credentials.

The method is chosen from the settings and the token store:

1. a refresh token (stored by ``epmpulse epm-login``, or ``EPM_REFRESH_TOKEN``):
   the OAuth refresh-token grant, which Oracle documents for unattended clients;
2. else ``EPM_CLIENT_SECRET``: the client-credentials grant (unverified, because
   EPM REST needs a token with a user context);
3. else ``EPM_USERNAME``: HTTP Basic.

Tokens and passwords go only to the token endpoint and the pods; they are never
logged nor put in an exception message.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp

from epm._http import DEFAULT_TIMEOUT, basic_authorization
from epm.config import check_service_url
from epm.errors import EpmAuthError, EpmRetryableError
from epm.oauth import (
    IDENTITY_PROBLEM_KEY,
    DeviceAuthorization,
    TokenEndpoint,
    device_authorization_url,
    run_device_flow,
)
from epm.tokens import StoredToken, TokenStore, fingerprint

__all__ = [
    "AuthMethod",
    "BasicAuth",
    "ClientCredentialsAuth",
    "DeviceAuthorization",
    "EpmAuth",
    "EpmAuthSettings",
    "RefreshTokenAuth",
    "StoredToken",
    "TokenStore",
    "build_auth",
    "choose_auth_method",
    "client_credentials_warning",
    "device_login",
]

logger = logging.getLogger(__name__)

AuthMethod = Literal["refresh_token", "client_credentials", "basic"]

# Oracle suggests refreshing every 6 days, because an unused refresh token
# expires after 7.
REFRESH_AFTER_SECONDS = 6 * 86400.0
# An access token is replaced this long before its expires_in runs out.
ACCESS_TOKEN_MARGIN_SECONDS = 60.0

_LOGIN_FIX = "Run `epmpulse epm-login` on the EPMPulse host to sign in again."


@dataclass(frozen=True)
class EpmAuthSettings:
    """The EPM_* settings that authentication reads."""

    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    device_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EpmAuthSettings:
        """Read EPM_TOKEN_URL, EPM_CLIENT_ID, ... EPM_DEVICE_URL; empty means unset."""
        source = os.environ if env is None else env

        def read(name: str) -> str | None:
            value = source.get(name, "").strip()
            return value or None

        return cls(
            token_url=read("EPM_TOKEN_URL"),
            client_id=read("EPM_CLIENT_ID"),
            client_secret=read("EPM_CLIENT_SECRET"),
            scope=read("EPM_SCOPE"),
            refresh_token=read("EPM_REFRESH_TOKEN"),
            username=read("EPM_USERNAME"),
            password=read("EPM_PASSWORD"),
            device_url=read("EPM_DEVICE_URL"),
        )


def choose_auth_method(
    settings: EpmAuthSettings, stored: StoredToken | None
) -> AuthMethod | None:
    """Pick the method: refresh token, else client secret, else username."""
    if stored is not None or settings.refresh_token:
        return "refresh_token"
    if settings.client_secret:
        return "client_credentials"
    if settings.username:
        return "basic"
    return None


def client_credentials_warning(
    settings: EpmAuthSettings, stored: StoredToken | None = None
) -> str | None:
    """Return the check-config warning when client credentials would be used."""
    if choose_auth_method(settings, stored) != "client_credentials":
        return None
    return (
        "EPM pull mode will use the OAuth client-credentials grant (EPM_CLIENT_ID and "
        "EPM_CLIENT_SECRET without a refresh token). This is unverified: EPM Cloud "
        "REST APIs require an access token with a user context, so pods usually "
        "reject these tokens with HTTP 401. Run `epmpulse epm-login` to store a "
        "refresh token, or set EPM_USERNAME and EPM_PASSWORD for Basic "
        "authentication."
    )


class EpmAuth(abc.ABC):
    """Produces the Authorization header for pod requests."""

    method: AuthMethod

    @abc.abstractmethod
    async def authorization(self, session: aiohttp.ClientSession) -> str:
        """Return the Authorization header value, fetching a token if needed."""

    async def invalidate(self, rejected: str) -> bool:
        """Forget a header the pod rejected; return True when a retry may succeed."""
        return False

    async def keep_alive(self, session: aiohttp.ClientSession) -> None:  # noqa: B027
        """Refresh credentials that would expire if left unused; a no-op by default."""

    @abc.abstractmethod
    def rejected_fix(self, pod_url: str) -> str:
        """Return the admin-facing text for a pod that returns 401."""


class BasicAuth(EpmAuth):
    """HTTP Basic with EPM_USERNAME and EPM_PASSWORD."""

    method: AuthMethod = "basic"

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        if ":" in username:
            raise ValueError(
                f"EPM_USERNAME: {username!r} contains ':', which HTTP Basic cannot "
                "carry; use the EPM user name without it"
            )
        self._header = basic_authorization(username, password)

    async def authorization(self, session: aiohttp.ClientSession) -> str:
        return self._header

    def rejected_fix(self, pod_url: str) -> str:
        return (
            f"The pod {pod_url} rejected the Basic credentials of EPM_USERNAME "
            f"{self._username!r} (HTTP 401). Check EPM_USERNAME and EPM_PASSWORD: on "
            "classic pods the user name has the form identitydomain.username, and "
            "users with multi-factor authentication cannot call the REST API."
        )


class _OAuthAuth(EpmAuth):
    """An access token cached until a minute before it expires."""

    def __init__(self, endpoint: TokenEndpoint, clock: Callable[[], float]) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._access_token: str | None = None
        self._access_expires_at = 0.0
        self._lock = asyncio.Lock()

    def _access_valid(self) -> bool:
        return (
            self._access_token is not None and self._clock() < self._access_expires_at
        )

    def _bearer(self) -> str:
        assert self._access_token is not None
        return f"Bearer {self._access_token}"

    def _cache_access_token(self, body: Mapping[str, Any]) -> None:
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            expires_in = 3600
        lifetime = max(float(expires_in) - ACCESS_TOKEN_MARGIN_SECONDS, 0.0)
        self._access_token = str(body["access_token"])
        self._access_expires_at = self._clock() + lifetime

    async def invalidate(self, rejected: str) -> bool:
        # Another request may already have replaced the rejected token.
        if self._access_token is not None and rejected == self._bearer():
            self._access_token = None
        return True


class RefreshTokenAuth(_OAuthAuth):
    """The OAuth refresh-token grant, with single-use rotating refresh tokens.

    Each new refresh token is written to the TokenStore before its access token is
    used. A refresh token whose last exchange is older than ``refresh_after``
    seconds is exchanged again by keep_alive, so it never reaches its 7-day expiry.
    One refresh runs at a time.
    """

    method: AuthMethod = "refresh_token"

    def __init__(
        self,
        settings: EpmAuthSettings,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
        refresh_after: float = REFRESH_AFTER_SECONDS,
    ) -> None:
        token_url, client_id = _require_oauth_client(settings)
        super().__init__(
            TokenEndpoint(token_url, client_id, settings.client_secret), clock
        )
        self._settings = settings
        self._store = store
        self._refresh_after = refresh_after
        self._current: StoredToken | None = None
        self._loaded = False

    async def authorization(self, session: aiohttp.ClientSession) -> str:
        if self._access_valid() and not self._stale():
            return self._bearer()
        async with self._lock:
            if self._access_valid() and not self._stale():
                return self._bearer()
            try:
                await self._refresh(session)
            except EpmRetryableError as exc:
                # A proactive refresh may fail while the access token still works.
                if not self._access_valid():
                    raise
                logger.warning("EPM refresh-token exchange failed, will retry: %s", exc)
            return self._bearer()

    async def keep_alive(self, session: aiohttp.ClientSession) -> None:
        await self._load()
        if not self._stale():
            return
        async with self._lock:
            if self._stale():
                logger.info(
                    "EPM refresh token is older than %.0f s; exchanging it",
                    self._refresh_after,
                )
                await self._refresh(session)

    def rejected_fix(self, pod_url: str) -> str:
        return (
            f"The pod {pod_url} rejected the OAuth access token (HTTP 401). Check that "
            "the user who ran `epmpulse epm-login` has a role in this pod and that "
            f"{pod_url} is a secondary audience of the integrated application."
        )

    def _stale(self) -> bool:
        current = self._current
        if current is None:
            return False
        return self._clock() - current.refreshed_at > self._refresh_after

    async def _load(self) -> None:
        if self._loaded:
            return
        stored = await asyncio.to_thread(self._store.load)
        self._current = self._pick(stored)
        self._loaded = True

    def _pick(self, stored: StoredToken | None) -> StoredToken | None:
        endpoint = self._endpoint
        setting = self._settings.refresh_token
        if stored is not None and not stored.belongs_to(
            endpoint.token_url, endpoint.client_id
        ):
            logger.warning(
                "Ignoring the stored EPM refresh token in %s: it was issued for "
                "another EPM_TOKEN_URL or EPM_CLIENT_ID",
                self._store.path,
            )
            stored = None
        if stored is not None:
            unchanged = setting is None or stored.seed_fingerprint == fingerprint(
                setting
            )
            if unchanged:
                return stored
            logger.info(
                "EPM_REFRESH_TOKEN changed since %s was written; using the setting",
                self._store.path,
            )
        if setting is None:
            return None
        return StoredToken(
            refresh_token=setting,
            refreshed_at=self._clock(),
            token_url=endpoint.token_url,
            client_id=endpoint.client_id,
            seed_fingerprint=fingerprint(setting),
        )

    async def _refresh(self, session: aiohttp.ClientSession) -> None:
        await self._load()
        current = self._current
        if current is None:
            raise EpmAuthError(
                IDENTITY_PROBLEM_KEY,
                "No EPM refresh token is stored and EPM_REFRESH_TOKEN is not set. "
                + _LOGIN_FIX,
            )
        try:
            body = await self._exchange(session, current)
        except EpmAuthError as exc:
            # An `epmpulse epm-login` run since start-up may have stored a new token.
            newer = await self._newer_stored_token(exc, current)
            if newer is None:
                raise
            logger.info("Using the EPM refresh token stored by a later epm-login")
            current = self._current = newer
            body = await self._exchange(session, current)

        new_token = body.get("refresh_token")
        if not isinstance(new_token, str) or not new_token:
            new_token = current.refresh_token
        updated = replace(current, refresh_token=new_token, refreshed_at=self._clock())

        # Keep the new token in memory first: the old one is consumed from now on.
        self._current = updated
        self._access_token = None
        try:
            await asyncio.to_thread(self._store.save, updated)
        except OSError as exc:
            raise EpmAuthError(
                "epm_auth_store",
                f"The new EPM refresh token could not be saved to {self._store.path} "
                f"({exc.strerror or type(exc).__name__}). EPMPulse keeps it in memory "
                "until a restart. Make the folder writable by the EPMPulse user and "
                "check the free disk space.",
            ) from exc
        self._cache_access_token(body)
        logger.info("EPM access token refreshed; new refresh token stored")

    async def _exchange(
        self, session: aiohttp.ClientSession, token: StoredToken
    ) -> dict[str, Any]:
        # No scope: a refresh request without one keeps the originally granted scope
        # (RFC 6749 section 6), which includes offline_access.
        form = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        return await self._endpoint.grant(session, form, secrets=(token.refresh_token,))

    async def _newer_stored_token(
        self, error: EpmAuthError, used: StoredToken
    ) -> StoredToken | None:
        if error.oauth_error != "invalid_grant":
            return None
        stored = await asyncio.to_thread(self._store.load)
        if stored is None or stored.refresh_token == used.refresh_token:
            return None
        if not stored.belongs_to(self._endpoint.token_url, self._endpoint.client_id):
            return None
        return stored


class ClientCredentialsAuth(_OAuthAuth):
    """The OAuth client-credentials grant (unverified for EPM, see the module)."""

    method: AuthMethod = "client_credentials"

    def __init__(
        self, settings: EpmAuthSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        token_url, client_id = _require_oauth_client(settings)
        super().__init__(
            TokenEndpoint(token_url, client_id, settings.client_secret), clock
        )
        self._scope = settings.scope

    async def authorization(self, session: aiohttp.ClientSession) -> str:
        if self._access_valid():
            return self._bearer()
        async with self._lock:
            if not self._access_valid():
                form = {"grant_type": "client_credentials"}
                if self._scope:
                    form["scope"] = self._scope
                self._cache_access_token(await self._endpoint.grant(session, form))
            return self._bearer()

    def rejected_fix(self, pod_url: str) -> str:
        return (
            f"The pod {pod_url} rejected the client-credentials access token "
            "(HTTP 401). EPM Cloud REST APIs need a token with a user context. "
            "Run `epmpulse epm-login` to store a refresh token, or set EPM_USERNAME "
            "and EPM_PASSWORD for Basic authentication."
        )


def build_auth(
    settings: EpmAuthSettings,
    store: TokenStore,
    *,
    clock: Callable[[], float] = time.time,
) -> EpmAuth:
    """Build the authentication chosen by choose_auth_method.

    Reads the token file, so call it before the event loop runs or through
    asyncio.to_thread. Raises ValueError naming the missing or invalid setting.
    """
    method = choose_auth_method(settings, store.load())
    if method == "refresh_token":
        return RefreshTokenAuth(settings, store, clock=clock)
    if method == "client_credentials":
        return ClientCredentialsAuth(settings, clock=clock)
    if method == "basic":
        if not settings.password:
            raise ValueError(
                "EPM_PASSWORD: missing; set it together with EPM_USERNAME for Basic "
                "authentication"
            )
        assert settings.username is not None
        return BasicAuth(settings.username, settings.password)
    raise ValueError(
        "EPM authentication is not configured: run `epmpulse epm-login` (with "
        "EPM_TOKEN_URL, EPM_CLIENT_ID and EPM_SCOPE set), or set EPM_USERNAME and "
        "EPM_PASSWORD"
    )


async def device_login(
    settings: EpmAuthSettings,
    store: TokenStore,
    show: Callable[[DeviceAuthorization], None],
    *,
    device_url: str | None = None,
    session: aiohttp.ClientSession | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> StoredToken:
    """Sign in with the OAuth device-code flow and store the first refresh token.

    ``show`` receives the verification URL and user code to print. The device
    authorization URL is ``device_url``, else EPM_DEVICE_URL, else derived from
    EPM_TOKEN_URL. Raises ValueError for missing settings, EpmAuthError when the
    sign-in fails, and OSError when the token cannot be stored.
    """
    token_url, client_id = _require_oauth_client(settings)
    if not settings.scope:
        raise ValueError(
            "EPM_SCOPE: missing; set it to the EPM service scope of the integrated "
            "application"
        )
    # Without offline_access the identity domain returns no refresh token.
    scope = settings.scope
    if "offline_access" not in scope.split():
        scope = f"{scope} offline_access"
    url = device_url or settings.device_url or device_authorization_url(token_url)
    url = check_service_url(
        "EPM_DEVICE_URL",
        url,
        "the identity domain's https://<identity domain host>/oauth2/v1/device",
    )

    endpoint = TokenEndpoint(token_url, client_id, settings.client_secret)
    if session is None:
        async with aiohttp.ClientSession(timeout=DEFAULT_TIMEOUT) as own_session:
            body = await run_device_flow(
                endpoint, own_session, url, scope, show, sleep, clock
            )
    else:
        body = await run_device_flow(endpoint, session, url, scope, show, sleep, clock)

    refresh_token = body.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise EpmAuthError(
            IDENTITY_PROBLEM_KEY,
            "The sign-in succeeded but the identity domain returned no refresh "
            "token. Turn on 'Allow token refresh' for the integrated application and "
            "include offline_access in EPM_SCOPE.",
        )
    setting = settings.refresh_token
    token = StoredToken(
        refresh_token=refresh_token,
        refreshed_at=time.time(),
        token_url=token_url,
        client_id=client_id,
        seed_fingerprint=fingerprint(setting) if setting else None,
    )
    await asyncio.to_thread(store.save, token)
    logger.info("EPM device login succeeded; refresh token stored in %s", store.path)
    return token


def _require_oauth_client(settings: EpmAuthSettings) -> tuple[str, str]:
    if not settings.token_url:
        raise ValueError(
            "EPM_TOKEN_URL: missing; set it to the identity domain token endpoint, "
            "https://<identity domain host>/oauth2/v1/token"
        )
    if not settings.client_id:
        raise ValueError(
            "EPM_CLIENT_ID: missing; set it to the client ID of the integrated "
            "application"
        )
    token_url = check_service_url(
        "EPM_TOKEN_URL",
        settings.token_url,
        "the identity domain's https://<identity domain host>/oauth2/v1/token",
    )
    return token_url, settings.client_id
