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

from store.history import HistoryLog
from store.store import StatusStore

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 6 * 3600.0
RETRY_SECONDS = 600.0
# How often the task looks at the per-row counts, and the share of the cap that a
# row may add before its oldest events are dropped early. Each cap run reads the
# whole history, so it runs only after a row has added half the cap.
CAP_CHECK_SECONDS = 60.0
CAP_SLACK = 0.5


class RetentionTask:
    """Keeps ``keep_days`` days of history (failures twice as long), pruning at
    start and every ``interval`` seconds, and at most ``max_per_row`` events per
    row.

    A row may pass ``max_per_row`` by half, plus what it adds in one ``cap_check``
    period, before its oldest events go.
    """

    def __init__(
        self,
        store: StatusStore,
        keep_days: int,
        *,
        max_per_row: int | None = None,
        interval: float = PRUNE_INTERVAL_SECONDS,
        cap_check: float = CAP_CHECK_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.keep_days = keep_days
        self.max_per_row = max_per_row
        self.interval = interval
        self.cap_check = cap_check
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        # A cap starts by removing the copies of earlier caps, so two never overlap.
        self._capping = asyncio.Lock()

    async def cap_rows_once(self) -> int:
        """Drop the oldest events of rows over the cap; return how many went."""
        if self.max_per_row is None:
            return 0
        async with self._capping:
            return await self._cap_rows(self.max_per_row)

    async def _cap_rows(self, limit: int) -> int:
        history = self.store.history
        # Counting and copying read the whole history, so they run beside the
        # writes. Only the swap runs on the writer thread, where writes wait for it.
        plan = await self.store.run_in_reader(lambda: history.plan_cap(limit))
        copies = await self.store.run_in_reader(lambda: history.prepare_cap(plan))

        def cap(history: HistoryLog) -> int:
            # On the writer thread, so no append runs while the counts reset.
            self.store.appended_since_cap.clear()
            return history.apply_cap(copies)

        dropped = await self.store.rewrite_history(cap)
        if dropped:
            log.info(
                "history retention: %d event(s) dropped from rows over %d events",
                dropped,
                limit,
            )
        return dropped

    def _cap_due(self) -> bool:
        if self.max_per_row is None:
            return False
        counts = self.store.appended_since_cap
        trigger = max(1, int(self.max_per_row * CAP_SLACK))
        return max(counts.values(), default=0) >= trigger

    async def prune_once(self) -> int:
        """Prune now and return how many segments were removed or shrunk."""
        today = self.clock().astimezone(UTC).date()
        changed = await self.store.rewrite_history(
            lambda history: history.prune(self.keep_days, today)
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
        loop = asyncio.get_running_loop()
        first_round = True
        while True:
            delay = self.interval
            try:
                await self.prune_once()
                if first_round:
                    first_round = False
                else:
                    # Not at start, where reading the whole history would
                    # slow start-up; the counts trigger it when needed.
                    await self.cap_rows_once()
            except OSError as exc:
                delay = min(delay, RETRY_SECONDS)
                log.error(
                    "history retention failed, retrying in %.0f s: %s", delay, exc
                )
            next_prune = loop.time() + delay
            while loop.time() < next_prune:
                await asyncio.sleep(min(self.cap_check, next_prune - loop.time()))
                if self._cap_due():
                    try:
                        await self.cap_rows_once()
                    except OSError as exc:
                        log.error("history cap failed: %s", exc)
