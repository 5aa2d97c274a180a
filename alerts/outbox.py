"""The durable alert outbox: every message waits here until Slack has accepted it.

Each channel has its own lane, sent in order, at most one call per
``min_interval`` seconds (Slack allows about one message per second per channel).
A lane pauses for ``Retry-After`` after a 429 and backs off exponentially after 5xx
responses and connection errors. While a setting is wrong (bad token, bot not in
the channel) it keeps retrying slowly, so neither an outage nor a slow fix loses a
message. Errors that no retry can fix (invalid blocks, a deleted message) drop the
item and are logged.

The queue and the Slack ``ts`` of every message are part of the state that the
alerts component saves in the store, so a restart sends the rest and continues
threads.

NOTE: Slack offers no idempotency key for chat.postMessage. A crash between Slack
accepting a message and the save of its ``ts`` sends that one message again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from alerts.render import AlertMessage
from store.waiting import wait_event

log = logging.getLogger(__name__)

Blocks = list[dict[str, Any]] | None


class SendError(Exception):
    """A send failed, and ``kind`` decides what happens next.

    - ``retry``: again after ``retry_after`` seconds when Slack named a delay,
      else with exponential backoff.
    - ``blocked``: a setting must be fixed, so the item is retried slowly.
    - ``drop``: no retry can succeed, so the item is removed.
    """

    def __init__(
        self,
        kind: Literal["retry", "blocked", "drop"],
        detail: str,
        *,
        retry_after: float | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.fix = fix


class Sender(Protocol):
    """Destination of messages: Slack's Web API, or the alerts log in local mode."""

    @property
    def description(self) -> str: ...

    async def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None
    ) -> str:
        """Post a message and return its ``ts``. Raises SendError."""
        ...

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> None:
        """Replace a message's text and blocks. Raises SendError."""
        ...


@dataclass
class OutboxItem:
    """One queued call. ``message`` is the local id of the message posted or
    edited, and ``thread`` is the local id of the parent of a thread reply."""

    id: int
    op: Literal["post", "update"]
    channel: str
    message: str
    text: str
    blocks: Blocks = None
    thread: str | None = None
    queued_at: str = ""
    attempts: int = 0


@dataclass
class _Lane:
    channel: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    not_before: float = 0.0
    sending: int | None = None
    failures: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    last_fix: str | None = None
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Queue state for /health and the stuck-queue check.

    ``failing_since`` is on the outbox's monotonic clock.
    """

    pending: int
    oldest_queued_at: str | None
    failing_since: float | None
    last_error: str | None
    fix: str | None


class Outbox:
    """Usage::

    outbox = Outbox(sender, on_change=saver.mark_dirty)
    outbox.load(saved)                      # after a restart
    outbox.post("C123", "m1", message)      # a parent message
    outbox.reply("m1", "m2", reply)         # in m1's thread, once m1 is sent
    outbox.update("m1", edited)             # coalesced with a queued edit
    await outbox.start()
    """

    def __init__(
        self,
        sender: Sender,
        *,
        on_change: Callable[[], None] = lambda: None,
        live_messages: Callable[[], set[str]] = set,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_interval: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.sender = sender
        self.on_change = on_change
        self.live_messages = live_messages
        self.clock = clock
        self.wall_clock = wall_clock
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self.items: list[OutboxItem] = []
        # Local message id -> channel, and -> Slack ts once posted.
        self.channels: dict[str, str] = {}
        self.sent: dict[str, str] = {}
        self._next_id = 1
        self._lanes: dict[str, _Lane] = {}
        self._running = False
        self._stopping = asyncio.Event()

    # --- state -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "next_id": self._next_id,
            "items": [asdict(item) for item in self.items],
            "channels": dict(self.channels),
            "sent": dict(self.sent),
        }

    def load(self, data: dict[str, Any]) -> None:
        self._next_id = int(data.get("next_id", 1))
        self.items = [OutboxItem(**item) for item in data.get("items", [])]
        self.channels = {str(k): str(v) for k, v in data.get("channels", {}).items()}
        self.sent = {str(k): str(v) for k, v in data.get("sent", {}).items()}
        if self.items:
            log.info("alert outbox: %d queued message(s) to send", len(self.items))

    # --- queueing ----------------------------------------------------------

    def post(self, channel: str, message_id: str, message: AlertMessage) -> None:
        """Queue a new top-level message in ``channel``."""
        self.channels[message_id] = channel
        self._append("post", channel, message_id, message, None)

    def reply(self, parent_id: str, message_id: str, message: AlertMessage) -> None:
        """Queue a reply in the thread of the message ``parent_id``."""
        channel = self.channels.get(parent_id)
        if channel is None:
            log.error(
                "alert reply %s not queued: parent message %s not found",
                message_id,
                parent_id,
            )
            return
        self.channels[message_id] = channel
        self._append("post", channel, message_id, message, parent_id)

    def update(self, message_id: str, message: AlertMessage) -> None:
        """Queue an edit. A queued post or edit of the same message that has not
        started is rewritten instead, so Slack gets only the newest version."""
        channel = self.channels.get(message_id)
        if channel is None:
            log.error("alert edit not queued: message %s not found", message_id)
            return
        lane = self._lanes.get(channel)
        for item in self.items:
            if item.message != message_id or (lane and lane.sending == item.id):
                continue
            item.text = message.text
            item.blocks = message.blocks
            self.on_change()
            return
        self._append("update", channel, message_id, message, None)

    def _append(
        self,
        op: Literal["post", "update"],
        channel: str,
        message_id: str,
        message: AlertMessage,
        thread: str | None,
    ) -> None:
        item = OutboxItem(
            id=self._next_id,
            op=op,
            channel=channel,
            message=message_id,
            text=message.text,
            blocks=message.blocks,
            thread=thread,
            queued_at=self.wall_clock().isoformat(),
        )
        self._next_id += 1
        self.items.append(item)
        self.on_change()
        if self._running:
            self._lane(channel).wake.set()

    # --- status ------------------------------------------------------------

    def status(self) -> OutboxStatus:
        failing = [lane for lane in self._lanes.values() if lane.failing_since]
        first = min(failing, key=lambda lane: lane.failing_since or 0.0, default=None)
        return OutboxStatus(
            pending=len(self.items),
            oldest_queued_at=self.items[0].queued_at if self.items else None,
            failing_since=first.failing_since if first else None,
            last_error=first.last_error if first else None,
            fix=first.last_fix if first else None,
        )

    def health(self) -> str:
        status = self.status()
        if status.failing_since is None:
            return "ok" if not status.pending else f"ok, {status.pending} sending"
        return (
            f"failing: {status.pending} message(s) queued since "
            f"{status.oldest_queued_at}, last error: {status.last_error}"
        )

    # --- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        self._stopping.clear()
        for channel in {item.channel for item in self.items}:
            self._lane(channel).wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the lanes, letting a call in flight finish for up to ``timeout``."""
        self._running = False
        self._stopping.set()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for lane in self._lanes.values():
            lane.wake.set()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty; False if that took longer than timeout."""
        deadline = self.clock() + timeout
        while self.items:
            if self.clock() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _lane(self, channel: str) -> _Lane:
        lane = self._lanes.get(channel)
        if lane is None:
            lane = self._lanes[channel] = _Lane(channel)
        if self._running and (lane.task is None or lane.task.done()):
            lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane))
        return lane

    # --- sending -----------------------------------------------------------

    def _head(self, channel: str) -> OutboxItem | None:
        for item in self.items:
            if item.channel == channel:
                return item
        return None

    async def _run_lane(self, lane: _Lane) -> None:
        while not self._stopping.is_set():
            item = self._head(lane.channel)
            if item is None:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            delay = lane.not_before - self.clock()
            if delay > 0:
                await wait_event(self._stopping, delay)
                continue
            await self._deliver(lane, item)

    async def _deliver(self, lane: _Lane, item: OutboxItem) -> None:
        lane.sending = item.id
        item.attempts += 1
        try:
            await self._send(item)
        except SendError as exc:
            self._failed(lane, item, exc)
        except Exception as exc:
            log.exception(
                "alert message %s to channel %s failed unexpectedly",
                item.message,
                item.channel,
            )
            self._failed(lane, item, SendError("retry", f"{type(exc).__name__}: {exc}"))
        else:
            self._succeeded(lane, item)
        finally:
            lane.sending = None

    async def _send(self, item: OutboxItem) -> None:
        if item.op == "update":
            ts = self._ts_of(item.message, "edited")
            await self.sender.update(item.channel, ts, item.text, item.blocks)
            return
        thread_ts = self._ts_of(item.thread, "replied to") if item.thread else None
        ts = await self.sender.post(item.channel, item.text, item.blocks, thread_ts)
        self.sent[item.message] = ts

    def _ts_of(self, message_id: str, action: str) -> str:
        ts = self.sent.get(message_id)
        if ts is None:
            # Lanes send in order, so a parent is sent before its edits and
            # replies. Its ts is missing only when the parent was dropped.
            raise SendError("drop", f"message {message_id} to be {action} was not sent")
        return ts

    def _succeeded(self, lane: _Lane, item: OutboxItem) -> None:
        if lane.failures:
            log.info(
                "alert messages to channel %s are sent again after %d failure(s)",
                lane.channel,
                lane.failures,
            )
        lane.failures = 0
        lane.failing_since = None
        lane.last_error = None
        lane.last_fix = None
        lane.not_before = self.clock() + self.min_interval
        self._remove(item)

    def _failed(self, lane: _Lane, item: OutboxItem, exc: SendError) -> None:
        if exc.kind == "drop":
            log.error(
                "alert message %s to %s dropped after %d attempt(s): %s",
                item.message,
                item.channel,
                item.attempts,
                exc.detail,
            )
            lane.not_before = self.clock() + self.min_interval
            self._remove(item)
            return

        lane.failures += 1
        lane.last_error = exc.detail
        lane.last_fix = exc.fix
        if lane.failing_since is None:
            lane.failing_since = self.clock()
        if exc.retry_after is not None:
            delay = exc.retry_after
        elif exc.kind == "blocked":
            delay = self.max_backoff
        else:
            delay = min(self.max_backoff, 2.0 ** min(lane.failures - 1, 10))
            delay *= 1 + random.random() * 0.1
        lane.not_before = self.clock() + delay
        log.warning(
            "alert message %s to %s failed (attempt %d), retrying in %.1f s: %s%s",
            item.message,
            item.channel,
            item.attempts,
            delay,
            exc.detail,
            f" ({exc.fix})" if exc.fix else "",
        )
        self.on_change()

    def _remove(self, item: OutboxItem) -> None:
        self.items = [queued for queued in self.items if queued.id != item.id]
        self._forget_unused()
        self.on_change()

    def _forget_unused(self) -> None:
        keep = self.live_messages()
        for queued in self.items:
            keep.add(queued.message)
            if queued.thread:
                keep.add(queued.thread)
        self.channels = {m: c for m, c in self.channels.items() if m in keep}
        self.sent = {m: ts for m, ts in self.sent.items() if m in keep}
