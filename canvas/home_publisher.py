"""Publish Home tabs: at once for a visit or a click, and again after board changes.

Slack shows a Home tab as it was last published, so a tab left open goes stale
unless the app publishes it again. After the board changes, the tabs of users who
opened theirs in the last ``recent_seconds`` are republished: at most one round per
window (changes in between collapse into it), newest visitors first, and each
round renders the newest state. ``views.publish`` is Tier 4 (100+ calls a minute
per workspace); background rounds stay under ``per_minute`` so that visits and
clicks, which never wait, keep headroom.

A round that fails pauses for the Retry-After that Slack sends. Without one (a 5xx
or a network error) it pauses ``RETRY_SECONDS``, or until a visit or click
publishes successfully, which shows that Slack is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError

from store.waiting import wait_event

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

View = dict[str, Any]
RenderHome = Callable[[str | None], View]

RECENT_SECONDS = 8 * 3600.0
MAX_RECENT_USERS = 100
PUBLISHES_PER_MINUTE = 60
BURST = 10
NOTICE_SECONDS = 600.0
RETRY_SECONDS = 30.0


class HomePublishError(Exception):
    """views.publish failed; the message names the user and Slack's error."""


class RateLimiter:
    """A token bucket: ``per_minute`` tokens a minute, at most ``burst`` saved up."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def consume(self) -> None:
        """Take a token without waiting; the balance may go below zero."""
        self._refill()
        self.tokens -= 1

    async def acquire(self) -> None:
        """Wait until a token is available, then take it."""
        while True:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class _Retry(Exception):
    def __init__(self, delay: float, *, requested: bool = False) -> None:
        super().__init__(delay)
        self.delay = delay
        # True when the delay is Slack's Retry-After, which the round waits out.
        self.requested = requested


class HomePublisher:
    """Usage::

    home = HomePublisher(client, lambda notice: render_home(...), window=2.0)
    home.opened("U123")          # a user opened the Home tab
    await home.publish("U123")   # publish it now
    home.notify()                # the board changed: republish recent visitors
    """

    def __init__(
        self,
        client: AsyncWebClient,
        render: RenderHome,
        window: float,
        *,
        recent_seconds: float = RECENT_SECONDS,
        max_users: int = MAX_RECENT_USERS,
        per_minute: float = PUBLISHES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.render = render
        self.window = window
        self.recent_seconds = recent_seconds
        self.max_users = max_users
        self.clock = clock
        self.limiter = RateLimiter(per_minute, BURST, clock)
        self.last_error: str | None = None
        self.publish_count = 0
        self._visits: dict[str, float] = {}
        self._published: dict[str, int] = {}
        self._notices: dict[str, tuple[str, float]] = {}
        self._version = 0
        self._task: asyncio.Task[None] | None = None
        self._resume = asyncio.Event()

    # --- visits and changes ---------------------------------------------------

    def opened(self, user_id: str) -> None:
        """Remember that ``user_id`` opened the Home tab now."""
        self._visits.pop(user_id, None)
        self._visits[user_id] = self.clock()
        self._forget_old_visits()

    def notify(self) -> None:
        """Schedule a republish of recent visitors' tabs, after a board change."""
        self._version += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def recent_users(self) -> list[str]:
        """Users whose tabs are kept current, the latest visitor first."""
        self._forget_old_visits()
        return list(reversed(self._visits))

    def _forget_old_visits(self) -> None:
        cutoff = self.clock() - self.recent_seconds
        for user_id, seen in list(self._visits.items()):
            if seen < cutoff or len(self._visits) > self.max_users:
                self._forget(user_id)

    def _forget(self, user_id: str) -> None:
        self._visits.pop(user_id, None)
        self._published.pop(user_id, None)
        self._notices.pop(user_id, None)

    # --- publishing -----------------------------------------------------------

    async def publish(self, user_id: str, notice: str | None = None) -> None:
        """Publish the Home tab of ``user_id`` now, with ``notice`` (escaped
        mrkdwn) under the summary for the next ``NOTICE_SECONDS``.

        Does not wait for the rate limiter. Raises HomePublishError when Slack
        rejects the view or cannot be reached.
        """
        if notice is not None:
            self._notices[user_id] = (notice, self.clock() + NOTICE_SECONDS)
        version = self._version
        self.limiter.consume()
        try:
            await self._send(user_id, self._view_for(user_id))
        except _Retry as exc:
            raise HomePublishError(
                f"views.publish for user {user_id} failed: {self.last_error}"
            ) from exc.__cause__
        self._published[user_id] = version
        self._resume.set()

    def _view_for(self, user_id: str, shared: View | None = None) -> View:
        notice = self._notices.get(user_id)
        if notice is not None and notice[1] < self.clock():
            del self._notices[user_id]
            notice = None
        if notice is None and shared is not None:
            return shared
        return self.render(notice[0] if notice else None)

    async def _send(self, user_id: str, view: View) -> None:
        """Publish one view. Raises _Retry for errors worth a later retry and
        HomePublishError for the rest."""
        try:
            await self.client.views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            code = _error_code(exc)
            self.last_error = f"views.publish: {code}"
            status = exc.response.status_code if exc.response is not None else 0
            if code == "ratelimited" or status == 429 or status >= 500:
                requested = _retry_after(exc)
                if requested is None:
                    raise _Retry(RETRY_SECONDS) from exc
                raise _Retry(requested, requested=True) from exc
            details = _messages(exc)
            raise HomePublishError(
                f"views.publish for user {user_id} failed: {code}{details}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.last_error = f"views.publish: {type(exc).__name__}"
            raise _Retry(RETRY_SECONDS) from exc
        self.last_error = None
        self.publish_count += 1

    async def _run(self) -> None:
        while self._stale_users():
            await asyncio.sleep(self.window)
            try:
                await self._round()
            except _Retry as exc:
                log.warning(
                    "Home tab republish paused for %.0f s: %s",
                    exc.delay,
                    self.last_error,
                )
                await self._pause(exc)
            except Exception:
                log.exception("Home tab republish failed")
                return

    async def _pause(self, retry: _Retry) -> None:
        if retry.requested:
            await asyncio.sleep(retry.delay)
            return
        self._resume.clear()
        await wait_event(self._resume, retry.delay)

    def _stale_users(self) -> list[str]:
        return [
            user_id
            for user_id in self.recent_users
            if self._published.get(user_id, -1) < self._version
        ]

    async def _round(self) -> None:
        version = self._version
        shared = self.render(None)
        for user_id in self._stale_users():
            await self.limiter.acquire()
            if user_id not in self._visits or self._published.get(user_id, -1) >= (
                self._version
            ):
                continue  # forgotten, or published by a click meanwhile
            if self._version != version:
                version = self._version
                shared = self.render(None)
            try:
                await self._send(user_id, self._view_for(user_id, shared))
            except HomePublishError as exc:
                self._on_rejected(user_id, exc)
                continue
            self._published[user_id] = version

    def _on_rejected(self, user_id: str, exc: HomePublishError) -> None:
        code = _error_code(exc.__cause__) if exc.__cause__ else ""
        if code == "not_enabled":
            log.error(
                "Slack rejected the Home tab because it is turned off: enable App "
                "Home > Home Tab in the app settings (the manifest sets "
                "home_tab_enabled); Home tabs are not republished until a user "
                "opens one again"
            )
            for user in list(self._visits):
                self._forget(user)
            return
        # A user who left the workspace, or a view Slack rejects: retrying the
        # same call cannot succeed, so the user waits for their next visit.
        log.warning("%s; not republishing this user's Home tab", exc)
        self._forget(user_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def _error_code(exc: BaseException | None) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown_error")
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status else "unknown_error"


def _messages(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if not isinstance(data, dict):
        return ""
    messages = (data.get("response_metadata") or {}).get("messages") or []
    return f" ({'; '.join(str(m) for m in messages[:5])})" if messages else ""


def _retry_after(exc: SlackApiError) -> float | None:
    """Return the delay of the Retry-After header, or None without a valid one."""
    headers = exc.response.headers if exc.response is not None else {}
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(1.0, float(value))
            except (TypeError, ValueError):
                break
    return None
