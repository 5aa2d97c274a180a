"""Background retention of the history: prune old segments now and then.

Pruning runs on the store's writer thread, after the writes queued before it, so
it never races an append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from store.store import StatusStore

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 6 * 3600.0
RETRY_SECONDS = 600.0


class RetentionTask:
    """Keeps ``keep_days`` days of history (failures twice as long), pruning at
    start and every ``interval`` seconds."""

    def __init__(
        self,
        store: StatusStore,
        keep_days: int,
        *,
        interval: float = PRUNE_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.keep_days = keep_days
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def prune_once(self) -> int:
        """Prune now and return how many segments were removed or shrunk."""
        today = self.clock().astimezone(UTC).date()
        history = self.store.history
        changed: int = await self.store.run_in_writer(
            lambda: history.prune(self.keep_days, today)
        )
        if changed:
            log.info(
                "history retention: %d segment(s) older than %d days pruned",
                changed,
                self.keep_days,
            )
        return changed

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            delay = self.interval
            try:
                await self.prune_once()
            except OSError as exc:
                delay = min(delay, RETRY_SECONDS)
                log.error(
                    "history retention failed, retrying in %.0f s: %s", delay, exc
                )
            await asyncio.sleep(delay)
