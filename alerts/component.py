"""The alerts component: engine, outbox, stuck checker and admin checks, wired to
the store and the board publishers, with one background loop.

The engine's state and the outbox are saved together under one meta key, so a
restart finds the queue, the open alerts and the Slack ``ts`` of their messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from alerts.admin import AdminChecks
from alerts.engine import AlertEngine, AlertSettings
from alerts.outbox import Outbox, Sender
from alerts.senders import AlertLogSender, SlackSender
from alerts.stuck import StuckChecker
from store.board import board_of
from store.catalog import Board, Catalog
from store.maintenance import Maintenance, MaintenanceWindow, parse_maintenance
from store.models import Change, Snapshot, Status, parse_status
from store.store import StatusStore
from store.waiting import wait_event

# slack_sdk is slow to import, and local mode, which logs alerts to a file, does not
# need it.
if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

STATE_KEY = "alerts"
TICK_SECONDS = 1.0
ADMIN_CHECK_SECONDS = 5.0
SAVE_RETRY_SECONDS = 5.0
SAVE_TIMEOUT_SECONDS = 10.0
# A bundle is posted at the latest this long after it opened, even while new
# failures keep joining it.
MAX_BUNDLE_SECONDS = 60.0


class AlertsSettings(Protocol):
    """The settings the alerts read (bot.settings.Settings has them all)."""

    @property
    def mode(self) -> str: ...

    data_dir: Path
    timezone: str
    slack_bot_token: SecretStr | None
    slack_api_url: str
    slack_main_channel_id: str | None
    slack_arcs_channel_id: str | None
    slack_main_canvas_id: str | None
    slack_arcs_canvas_id: str | None
    stuck_after: float
    maintenance: str | None
    alert_on: list[str]
    alert_bundle_seconds: float
    flap_threshold: int


class Publisher(Protocol):
    @property
    def failing_since(self) -> float | None: ...

    @property
    def last_error(self) -> str | None: ...

    def notify(self) -> None: ...


class StateSaver:
    """Saves the alert state under one meta key. The newest state always wins.

    Calls to ``mark_dirty`` while a save runs collapse into one more save. A failed
    save is retried every SAVE_RETRY_SECONDS until ``flush`` at shutdown.
    """

    def __init__(self, store: StatusStore, state: Callable[[], dict[str, Any]]):
        self.store = store
        self.state = state
        self._dirty = False
        self._closing = False
        self._retry_wait: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def mark_dirty(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._dirty:
            if await self._save():
                continue
            if self._closing:
                return
            self._retry_wait = asyncio.Event()
            await wait_event(self._retry_wait, SAVE_RETRY_SECONDS)
            self._retry_wait = None

    async def _save(self) -> bool:
        self._dirty = False
        # A JSON copy, because the writer thread serialises it while the engine
        # goes on changing the live objects.
        data = json.loads(json.dumps(self.state()))
        try:
            await self.store.set_meta(STATE_KEY, data)
        except Exception:
            self._dirty = True
            log.exception(
                "saving the alert state failed; retrying in %.0f s", SAVE_RETRY_SECONDS
            )
            return False
        return True

    async def flush(self, timeout: float) -> bool:
        """Save what is left, trying once more at most, and return False if it
        stays unsaved."""
        self._closing = True
        if self._retry_wait is not None:
            self._retry_wait.set()
        if self._task is None:
            return True
        done, _ = await asyncio.wait([self._task], timeout=timeout)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._dirty:
            log.error("shutting down with the newest alert state unsaved")
            return False
        return True


class BoardRouter:
    """Sends a row's alerts to its board's channel, admin alerts to the main one."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        boards: Sequence[Board],
        channels: Mapping[str, str],
        link: Callable[[str], str | None] = lambda board: None,
    ) -> None:
        self.catalog = catalog
        self.boards = tuple(boards)
        self.channels = channels
        self._link = link

    def channel_of(self, app: str) -> tuple[str, str]:
        board = board_of(self.catalog(), app, self.boards)
        return board, self.channels.get(board) or self.channels["main"]

    def admin_channel(self) -> str:
        return self.channels["main"]

    def link(self, board: str) -> str | None:
        return self._link(board)


class AlertsComponent:
    """A Service component: ``start`` after the store is open, ``stop`` before it
    closes. ``engine`` and ``outbox`` are None when alerts have no channel."""

    def __init__(
        self,
        store: StatusStore,
        stuck: StuckChecker,
        maintenance: Maintenance,
        *,
        engine: AlertEngine | None = None,
        outbox: Outbox | None = None,
        admin: AdminChecks | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick_seconds: float = TICK_SECONDS,
        admin_check_seconds: float = ADMIN_CHECK_SECONDS,
    ) -> None:
        self.store = store
        self.stuck = stuck
        self.maintenance = maintenance
        self.engine = engine
        self.outbox = outbox
        self.admin = admin
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.admin_check_seconds = admin_check_seconds
        self.saver = StateSaver(store, self._state)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_admin_check = 0.0
        if engine is not None:
            engine.on_change = self.saver.mark_dirty
        if outbox is not None:
            outbox.on_change = self.saver.mark_dirty
            if engine is not None:
                outbox.live_messages = engine.live_message_ids

    def _state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "engine": self.engine.to_json() if self.engine else None,
            "outbox": self.outbox.to_json() if self.outbox else None,
        }

    # --- public API ----------------------------------------------------------

    def raise_admin(self, key: str, text: str) -> None:
        """Alert the main channel about a problem of EPMPulse itself, once until
        ``clear_admin(key)``. ``text`` should state how to fix it."""
        if self.engine is None:
            log.error("admin problem %s (alerts are off): %s", key, text)
            return
        self.engine.raise_admin(key, text)

    def clear_admin(self, key: str) -> None:
        if self.engine is not None:
            self.engine.clear_admin(key)

    def on_epm_problem(self, key: str, text: str | None) -> None:
        """EPM poller callback. ``text`` describes the failure and its fix, or is
        None once the problem has cleared."""
        if text is None:
            self.clear_admin(f"epm:{key}")
        else:
            self.raise_admin(f"epm:{key}", text)

    def maintenance_notice(self, tz: tzinfo, now: datetime | None = None) -> str | None:
        return self.maintenance.notice(tz, now)

    def health(self) -> str:
        if self.outbox is None:
            return "off: no channel for alerts"
        return self.outbox.health()

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.engine is not None and self.outbox is not None:
            self._load(self.engine, self.outbox)
            self.engine.reconcile(self.store.snapshot)
            await self.outbox.start()
        self.store.subscribe(self._on_store_change)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _load(self, engine: AlertEngine, outbox: Outbox) -> None:
        saved = self.store.get_meta(STATE_KEY)
        if not isinstance(saved, dict):
            engine.load(None)
            return
        try:
            outbox.load(saved.get("outbox") or {})
            engine.load(saved.get("engine"))
        except (KeyError, TypeError, ValueError) as exc:
            # Starting without alerts would hide every later failure, so a
            # damaged state costs the saved queue and threads but nothing more.
            log.error(
                "the saved alert state in %s is invalid and is ignored (%s): "
                "queued alerts are lost and open threads start over",
                self.store.db_path,
                exc,
            )
            outbox.load({})
            engine.load(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.outbox is not None:
            await self.outbox.stop()
        await self.saver.flush(SAVE_TIMEOUT_SECONDS)

    def _on_store_change(self, snapshot: Snapshot, changes: Sequence[Change]) -> None:
        # Only a change of the alert state can bring a bundle's time forward; an
        # update that opened no alert leaves the loop asleep.
        if self.engine is not None and self.engine.on_changes(snapshot, changes):
            self._wake.set()

    async def _run(self) -> None:
        # A store change wakes the loop for the engine's bundles. The stuck check
        # reads every row, so it keeps to its own pace of once per tick.
        next_stuck_check = time.monotonic()
        while True:
            self._wake.clear()
            now = time.monotonic()
            check_stuck = now >= next_stuck_check
            if check_stuck:
                next_stuck_check = now + self.tick_seconds
            delay = next_stuck_check - now
            try:
                due = self.tick(check_stuck)
            except Exception:
                log.exception("alerts check failed; trying again in %.0f s", delay)
                due = None
            if due is not None:
                delay = min(delay, max(due, 0.01))
            await wait_event(self._wake, delay)

    def tick(self, check_stuck: bool = True) -> float | None:
        """Run the periodic checks once and return the seconds until a bundle is
        due, or None."""
        if check_stuck:
            self.stuck.check(self.clock())
        due = self.engine.tick() if self.engine is not None else None
        now = time.monotonic()
        if self.admin is not None and (
            now - self._last_admin_check >= self.admin_check_seconds
        ):
            self._last_admin_check = now
            self.admin.check()
        return due


def alert_statuses(names: Sequence[str]) -> frozenset[Status]:
    statuses = {parse_status(name) for name in names}
    return frozenset(s for s in statuses if s is not None and s.is_failure)


def build_alerting(
    settings: AlertsSettings,
    store: StatusStore,
    catalog: Callable[[], Catalog],
    boards: Sequence[Board],
    publishers: Mapping[Board, Publisher],
    slack_identity: Callable[[], Mapping[str, Any]],
    epm_maintenance: Callable[[], bool] = lambda: False,
    slack_client: AsyncWebClient | None = None,
) -> AlertsComponent:
    """Build the alerts component for Slack or, without a bot token, local mode.

    ``epm_maintenance`` returns whether pull mode gets EPM's maintenance page.
    ``slack_client`` must have no retry handlers, because the outbox retries; by
    default one is built from the settings.
    """
    tz = ZoneInfo(settings.timezone)
    maintenance = Maintenance(
        _window(settings.maintenance), epm_maintenance=epm_maintenance
    )

    def notify_board(app: str) -> None:
        publisher = publishers.get(board_of(catalog(), app, boards))
        if publisher is not None:
            publisher.notify()

    def notify_all() -> None:
        for publisher in publishers.values():
            publisher.notify()

    def max_runtime(app: str, domain: str) -> float:
        return catalog().max_runtime(app, domain) or settings.stuck_after

    engine: AlertEngine | None = None
    outbox: Outbox | None = None
    admin: AdminChecks | None = None
    sender, channels = _sender(settings, store, boards, slack_client)
    if sender is not None:
        outbox = Outbox(sender)
        link = _canvas_link(settings, store, slack_identity)
        router = BoardRouter(catalog, boards, channels, link)
        bundle = settings.alert_bundle_seconds
        engine = AlertEngine(
            AlertSettings(
                alert_on=alert_statuses(settings.alert_on),
                tz=tz,
                bundle_seconds=bundle,
                max_bundle_seconds=max(MAX_BUNDLE_SECONDS, 2 * bundle),
                flap_threshold=settings.flap_threshold,
            ),
            router,
            outbox,
        )
        admin = AdminChecks(engine, publishers, outbox.status)

    stuck = StuckChecker(
        lambda: store.snapshot,
        max_runtime,
        maintenance,
        on_stuck=engine.on_stuck if engine is not None else lambda r, s: None,
        on_row_change=notify_board,
        on_maintenance_change=notify_all,
    )
    return AlertsComponent(
        store, stuck, maintenance, engine=engine, outbox=outbox, admin=admin
    )


def _window(text: str | None) -> MaintenanceWindow | None:
    if text is None:
        return None
    try:
        return parse_maintenance(text)
    except ValueError as exc:
        log.error("EPMPULSE_MAINTENANCE ignored: %s", exc)
        return None


def _sender(
    settings: AlertsSettings,
    store: StatusStore,
    boards: Sequence[Board],
    client: AsyncWebClient | None,
) -> tuple[Sender | None, dict[str, str]]:
    if settings.mode == "local":
        path = settings.data_dir / "alerts.log"
        return AlertLogSender(path, store.run_in_writer), {b: b for b in boards}
    if settings.slack_main_channel_id is None or settings.slack_bot_token is None:
        log.warning(
            "alerts are off: set SLACK_MAIN_CHANNEL_ID to the channel that gets them"
        )
        return None, {}
    channels = {"main": settings.slack_main_channel_id}
    if settings.slack_arcs_channel_id:
        channels["arcs"] = settings.slack_arcs_channel_id
    if client is None:
        from slack_sdk.web.async_client import AsyncWebClient

        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=15,
            retry_handlers=[],
        )
    return SlackSender(client), channels


def _canvas_link(
    settings: AlertsSettings,
    store: StatusStore,
    slack_identity: Callable[[], Mapping[str, Any]],
) -> Callable[[str], str | None]:
    configured = {
        "main": settings.slack_main_canvas_id,
        "arcs": settings.slack_arcs_canvas_id,
    }

    def link(board: str) -> str | None:
        # Slack links a canvas as <workspace url>docs/<team id>/<canvas id>.
        canvas_id = configured.get(board) or store.get_meta(f"canvas_id:{board}")
        identity = slack_identity()
        url, team = identity.get("url"), identity.get("team_id")
        if not canvas_id or not url or not team:
            return None
        return f"{str(url).rstrip('/')}/docs/{team}/{canvas_id}"

    return link
