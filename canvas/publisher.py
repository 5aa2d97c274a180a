"""One publisher per board: throttled, one publish in flight, last state wins.

A change is published within one window even while updates keep coming, because
this is a throttle, not a debounce that waits for quiet. At most one publish starts
per window, and after the last change one more publish shows the final state.
Failed publishes are retried with backoff until they succeed, so the board
converges once Slack is back. ``publish_now`` and ``flush`` end a backoff early so
the next attempt starts at once, unless Slack set the delay (Retry-After, or a
locked canvas): an attempt inside that delay would only be rejected again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from store.waiting import wait_event

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


class PublishError(Exception):
    """A publish failed. ``retry_after`` is the delay Slack asked for, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PublishTarget(Protocol):
    @property
    def description(self) -> str: ...

    async def publish(self, markdown: str) -> str:
        """Publish the markdown and return where it went (canvas id or file path)."""
        ...


@dataclass(frozen=True, slots=True)
class PublishResult:
    board: str
    ok: bool
    where: str
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "board": self.board,
            "ok": self.ok,
            "where": self.where,
            "error": self.error,
        }


class BoardPublisher:
    """Publishes ``render()`` to ``target`` whenever ``notify()`` is called."""

    def __init__(
        self,
        board: str,
        render: Callable[[], str],
        target: PublishTarget,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_publish: Callable[[str, bool, float], None] | None = None,
    ) -> None:
        self.board = board
        self.render = render
        self.target = target
        self.window = window
        self.clock = clock
        self.on_publish = on_publish
        self.publish_count = 0
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self.last_published: str | None = None
        self._dirty = False
        self._force = False
        self._last_start: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._requested = 0
        self._completed = 0
        self._progress = asyncio.Condition()
        self._wake = asyncio.Event()
        self._failures = 0
        self._failed_attempts = 0
        # Clock time at which the delay that Slack requested ends, while it runs.
        self._retry_at: float | None = None

    def notify(self) -> None:
        """Mark the board changed; the publish happens on the publisher's schedule."""
        self._dirty = True
        self._requested += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def publish_now(self, timeout: float = 30.0) -> PublishResult:
        """Publish the current state without waiting for the window, and wait for it.

        Ends a backoff after a failure, so the attempt starts at once. A delay that
        Slack requested (Retry-After) still runs: the call waits for its end, or
        returns a failure at once if the delay outlasts ``timeout``. Either way the
        state is published after the delay. Never runs two publishes at once.
        """
        self._force = True
        self._wake.set()
        self.notify()
        wanted = self._requested
        failed_before = self._failed_attempts
        retry_in = 0.0 if self._retry_at is None else self._retry_at - self.clock()
        if retry_in > timeout:
            return PublishResult(
                self.board,
                False,
                self.target.description,
                f"{self.last_error} (retrying in {retry_in:.0f} s, as Slack requested)",
            )
        try:
            async with asyncio.timeout(timeout):
                async with self._progress:
                    await self._progress.wait_for(
                        lambda: (
                            self._completed >= wanted
                            or self._failed_attempts > failed_before
                        )
                    )
        except TimeoutError:
            return PublishResult(
                self.board,
                False,
                self.target.description,
                "timed out waiting for Slack",
            )
        if self._completed >= wanted:
            return PublishResult(self.board, True, self.last_published or "")
        return PublishResult(
            self.board, False, self.target.description, self.last_error
        )

    @property
    def pending(self) -> bool:
        return self._dirty or (self._task is not None and not self._task.done())

    async def flush(self, timeout: float) -> bool:
        """Wait until the latest state is published; False if that took too long.

        Like ``publish_now``, ends a backoff after a failure but not a delay that
        Slack requested.
        """
        if not self.pending:
            return True
        self._force = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while self.pending and self._task is not None:
                    await asyncio.shield(self._task)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while self._dirty:
            await self._wait_for_window()
            self._dirty = False
            self._force = False
            wanted = self._requested
            self._last_start = self.clock()
            started = time.perf_counter()
            try:
                where = await self.target.publish(self.render())
            except PublishError as exc:
                self._record_failure(str(exc), started)
                self._dirty = True
                await self._backoff(exc.retry_after)
                continue
            except Exception as exc:
                log.exception(
                    "publishing board %s to %s failed",
                    self.board,
                    self.target.description,
                )
                self._record_failure(f"{type(exc).__name__}: {exc}", started)
                self._dirty = True
                await self._backoff(None)
                continue
            self._record_success(where, wanted, started)

    async def _wait_for_window(self) -> None:
        if self._last_start is None:
            return
        delay = self._last_start + self.window - self.clock()
        if delay <= 0 or self._force:
            return
        self._wake.clear()
        await wait_event(self._wake, delay)

    async def _backoff(self, retry_after: float | None) -> None:
        jitter = 1 + random.random() * 0.1
        if retry_after is not None:
            delay = retry_after * jitter
            self._retry_at = self.clock() + delay
            try:
                await asyncio.sleep(delay)
            finally:
                self._retry_at = None
            return

        # publish_now() and flush() set _wake to end this wait. One that arrived
        # during the failed attempt set _force, so there is no wait at all.
        if self._force:
            return
        self._wake.clear()
        exponential = min(MAX_BACKOFF_SECONDS, 2.0 ** min(self._failures, 9))
        await wait_event(self._wake, exponential * jitter)

    def _record_failure(self, error: str, started: float) -> None:
        self._failures += 1
        self._failed_attempts += 1
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = self.clock()
        log.warning(
            "board %s: publish to %s failed (attempt %d): %s",
            self.board,
            self.target.description,
            self._failures,
            error,
        )
        if self.on_publish is not None:
            self.on_publish(self.board, False, time.perf_counter() - started)
        asyncio.get_running_loop().create_task(self._signal())

    def _record_success(self, where: str, wanted: int, started: float) -> None:
        if self._failures:
            log.info(
                "board %s: publish to %s succeeded after %d failure(s)",
                self.board,
                where,
                self._failures,
            )
        self._failures = 0
        self.failing_since = None
        self.last_error = None
        self.last_published = where
        self.publish_count += 1
        self._completed = max(self._completed, wanted)
        seconds = time.perf_counter() - started
        log.debug("board %s: published to %s in %.3f s", self.board, where, seconds)
        if self.on_publish is not None:
            self.on_publish(self.board, True, seconds)
        asyncio.get_running_loop().create_task(self._signal())

    async def _signal(self) -> None:
        async with self._progress:
            self._progress.notify_all()
