"""Build every part from the settings, wire them together and run the server.

This is the only module that imports every part. Start-up order: settings and logs,
the store, the catalog and keys, the publishers, then the HTTP server. Shutdown runs
the other way round and waits (bounded) for in-flight writes and the last publish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import zoneinfo
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from alerts.component import AlertsComponent
from bot.config_check import load_catalog
from bot.keys import keys_from_settings, load_or_generate_key
from bot.loop import loop_name
from bot.metrics import Metrics, counted_retry_handlers, epm_trace_config
from bot.settings import Settings
from canvas.publisher import BoardPublisher, PublishTarget
from canvas.render import render_board
from canvas.targets import FileTarget, SlackCanvasTarget
from handlers.auth import Keyring
from handlers.middleware import build_middleware, parse_networks
from handlers.ratelimit import RateLimiter, parse_rate_limit
from handlers.watch import WatchApi
from handlers.webhook import WebhookApi
from store.board import build_board
from store.catalog import Board, Catalog
from store.lock import DataDirLock
from store.models import Change, Snapshot
from store.store import StatusStore

# slack_sdk, slack_bolt and the EPM client are slow to import, so they are imported
# where a Slack mode or pull mode is built. Local mode without pull mode does not
# load them (tests/test_imports.py checks this).
if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.pull import PullMode

log = logging.getLogger(__name__)

# Allocations before a young collection, then young and middle collections before
# the next older one (Python's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


class Component(Protocol):
    """A part with a lifecycle (Slack app, alerts, EPM poller): started after the
    store and the publishers, stopped before them, in reverse order."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


SHUTDOWN_SECONDS = 10.0
HEALTH_PROBE_SECONDS = 5.0
VERSION = "0.1.0"


def build_slack_client(
    settings: Settings, metrics: Metrics | None = None
) -> AsyncWebClient:
    """Build a Web API client at SLACK_API_URL that retries 429s, 5xx and dropped
    connections with slack_sdk's built-in handlers, counted in the metrics."""
    from bot.slack_client import MeteredWebClient

    assert settings.slack_bot_token is not None
    client = MeteredWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=counted_retry_handlers(metrics),
    )
    client.metrics = metrics
    return client


class Service:
    """Everything a running EPMPulse holds. ``start`` and ``stop`` are idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tz = zoneinfo.ZoneInfo(settings.timezone)
        self.store = StatusStore(settings.data_dir, max_rows=settings.max_rows)
        self.data_lock = DataDirLock(settings.data_dir)
        self.catalog: Catalog = load_catalog(settings)
        self.keyring = Keyring()
        self.metrics = Metrics()
        self.store.write_observer = self.metrics.store_write_seconds.observe
        self.limiters = {
            "GET": RateLimiter(parse_rate_limit(settings.rate_limit_get)),
            "POST": RateLimiter(parse_rate_limit(settings.rate_limit_post)),
        }
        self.slack: AsyncWebClient | None = None
        self.publishers: dict[Board, BoardPublisher] = {}
        self.web_app = web.Application(client_max_size=1024 * 1024)
        self.runner: web.AppRunner | None = None
        self.started_at = datetime.now(UTC)
        self.slack_identity: dict[str, Any] = {}
        self.components: list[Component] = []
        self.pull: PullMode | None = None
        self.alerting: AlertsComponent | None = None
        # republish_all() runs these. The Slack app adds its Home tab republish.
        self.republish_listeners: list[Callable[[], None]] = []
        self._probe_at = float("-inf")
        self._probe_error: str | None = None
        self._stopping = asyncio.Event()

    # --- wiring ------------------------------------------------------------

    @property
    def active_boards(self) -> tuple[Board, ...]:
        if self.settings.mode == "local":
            return ("main", "arcs")
        arcs = self.settings.slack_arcs_channel_id or self.settings.slack_arcs_canvas_id
        return ("main", "arcs") if arcs else ("main",)

    def render(self, board: Board) -> str:
        now = datetime.now(UTC)
        view = build_board(
            self.store.snapshot,
            self.catalog,
            board,
            now=now,
            stuck_after=self.settings.stuck_after,
            boards=self.active_boards,
        )
        return render_board(view, tz=self.tz, now=now, notice=self.maintenance_notice())

    def maintenance_notice(self) -> str | None:
        """Return the line every surface shows while EPM is in maintenance."""
        alerting = self.alerting
        notice = alerting.maintenance_notice(self.tz) if alerting else None
        if notice is not None:
            return str(notice)
        if self.pull is not None and self.pull.maintenance:
            return (
                ":construction: EPM maintenance: the pods answer 503, job polling "
                "resumes when the daily maintenance ends"
            )
        return None

    def _target(self, board: Board) -> PublishTarget:
        if self.slack is None:
            path = self.settings.data_dir / "canvas" / f"{board}.md"
            return FileTarget(path, self.store.run_in_writer)
        settings = self.settings
        channel = (
            settings.slack_main_channel_id
            if board == "main"
            else settings.slack_arcs_channel_id
        )
        canvas = (
            settings.slack_main_canvas_id
            if board == "main"
            else settings.slack_arcs_canvas_id
        )
        title = "EPM status" if board == "main" else "ARCS status"
        return SlackCanvasTarget(
            self.slack,
            board,
            self.store,
            channel_id=channel,
            canvas_id=canvas,
            title=title,
        )

    def _build_publishers(self) -> None:
        for board in self.active_boards:
            self.publishers[board] = BoardPublisher(
                board,
                lambda board=board: self.render(board),  # type: ignore[misc]
                self._target(board),
                self.settings.canvas_debounce_seconds,
                on_publish=self.metrics.observe_publish,
            )

    def _on_store_change(self, snapshot: Snapshot, changes: Sequence[Change]) -> None:
        for change in changes:
            self.metrics.count_update(change.update.status.value, change.changed)
        boards = {
            self._board_of(change.update.app) for change in changes if change.changed
        }
        for board in boards:
            publisher = self.publishers.get(board)
            if publisher is not None:
                publisher.notify()

    def republish_all(self) -> None:
        """Republish every canvas and, through ``republish_listeners``, the open
        Home tabs, after a change that the store does not announce (a reload, the
        start or end of maintenance)."""
        for publisher in self.publishers.values():
            publisher.notify()
        for listener in self.republish_listeners:
            listener()

    def _board_of(self, app: str) -> Board:
        board = self.catalog.board_of(app)
        return board if board in self.active_boards else "main"

    async def sync_canvases(self) -> list[dict[str, Any]]:
        results = await asyncio.gather(
            *(publisher.publish_now() for publisher in self.publishers.values())
        )
        return [result.to_json() for result in results]

    def _build_components(self) -> None:
        """Create the optional parts; each adds its routes before the server starts."""
        self._build_pull_mode()
        from alerts.component import build_alerting
        from store.retention import RetentionTask

        pull = self.pull
        self.alerting = build_alerting(
            self.settings,
            self.store,
            lambda: self.catalog,
            self.active_boards,
            self.publishers,
            lambda: self.slack_identity,
            epm_maintenance=lambda: pull is not None and pull.maintenance,
        )
        if pull is not None:
            pull.on_admin_problem = self.alerting.on_epm_problem
        # The stuck checker detects the start and end of the daily window. The
        # callback from build_alerting notifies only the canvases, so it is replaced
        # by one that also republishes the Home tabs, which show the same line.
        self.alerting.stuck.on_maintenance_change = self.republish_all
        outbox = self.alerting.outbox
        if outbox is not None:
            self.metrics.track_queue_depth(lambda: len(outbox.items))
        self.components.append(self.alerting)
        self.components.append(
            RetentionTask(
                self.store,
                self.settings.history_days,
                max_per_row=self.settings.max_history_per_row,
            )
        )
        if self.settings.mode in ("socket", "http"):
            from bot.slack_app import build_slack_app

            self.components.append(build_slack_app(self))

    def _build_pull_mode(self) -> None:
        """Pull mode runs when an app has an ``epm`` block and EPM sign-in is set."""
        if any(app.epm for app in self.catalog.apps):
            self._build_epm_poller()
        WatchApi(self.pull.watch if self.pull else None).add_routes(self.web_app)

    def _build_epm_poller(self) -> None:
        from bot.pull import PullMode, auth_method_summary

        if auth_method_summary(self.settings) is None:
            log.info(
                "apps.json has epm blocks but no EPM sign-in is configured: "
                "pull mode is off"
            )
            return
        self.pull = PullMode(
            self.settings,
            self.store,
            lambda: self.catalog,
            on_maintenance=self._on_epm_maintenance,
            trace_configs=[epm_trace_config(self.metrics)],
        )
        self.store.subscribe(self.pull.on_store_change)
        self.components.append(self.pull)

    def _on_epm_maintenance(self, active: bool) -> None:
        self.republish_all()

    def _load_keys(self) -> None:
        keys = keys_from_settings(self.settings)
        if not keys and self.settings.mode == "local":
            keys = [load_or_generate_key(self.settings)]
            log.info(
                "no EPMPULSE_API_KEY set: using the generated key stored in %s",
                self.settings.secrets_dir,
            )
        self.keyring.replace(keys)

    # --- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        # The lock stops a second server on this data dir, and restore under us.
        self.data_lock.acquire()
        try:
            await self.store.open()
        except BaseException:
            self.data_lock.release()
            raise
        self._load_keys()
        if settings.mode != "local":
            self.slack = build_slack_client(settings, self.metrics)
            await self._identify()
        self._build_publishers()
        self.store.subscribe(self._on_store_change)
        self._build_components()

        api = WebhookApi(
            self.store, self.keyring, lambda: self.catalog, self.sync_canvases
        )
        trusted = parse_networks(settings.trusted_proxies)
        self.web_app.middlewares.append(
            build_middleware(
                self.keyring,
                lambda: trusted,
                on_request=self.metrics.observe_request,
                limiter_for=lambda method: self.limiters.get(
                    "GET" if method in ("GET", "HEAD") else "POST"
                ),
            )
        )
        api.add_routes(self.web_app)
        self.web_app.router.add_get("/health", self.health)
        self.web_app.router.add_get("/metrics", self.metrics.handle)

        self.runner = web.AppRunner(self.web_app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.host, settings.port)
        await site.start()
        for component in self.components:
            await component.start()
        log.info(
            "EPMPulse %s listening on %s (env=%s, debug=%s, mode=%s, loop=%s, "
            "data dir %s)",
            VERSION,
            self.url,
            settings.env,
            settings.debug,
            settings.mode,
            loop_name(asyncio.get_running_loop()),
            settings.data_dir,
        )
        for publisher in self.publishers.values():
            publisher.notify()

    @property
    def url(self) -> str:
        assert self.runner is not None
        for address in self.runner.addresses:
            host, port = address[0], address[1]
            return f"http://{host}:{port}"
        return f"http://{self.settings.host}:{self.settings.port}"

    async def _identify(self) -> None:
        assert self.slack is not None
        mode = self.settings.mode
        if mode == "socket" and self.settings.slack_signing_secret is not None:
            log.info(
                "SLACK_APP_TOKEN and SLACK_SIGNING_SECRET are both set: using "
                "Socket Mode; the signing secret is not used"
            )
        if mode == "publish-only":
            log.info(
                "no SLACK_APP_TOKEN or SLACK_SIGNING_SECRET: canvases are "
                "published, the slash command and App Home are off"
            )
        try:
            identity = await self.slack.auth_test()
        except Exception as exc:  # Slack down must not stop the webhook.
            log.warning(
                "mode %s: auth.test failed, will retry on publish: %s", mode, exc
            )
            return
        self.slack_identity = (
            dict(identity.data) if isinstance(identity.data, dict) else {}
        )
        log.info(
            "mode %s: connected to Slack team %s as %s",
            mode,
            self.slack_identity.get("team"),
            self.slack_identity.get("user"),
        )

    async def stop(self) -> None:
        log.info("shutting down: finishing writes and the last canvas publish")
        if self.runner is not None:
            # Stop listening and finish the requests in flight first: an update
            # acknowledged after the last publish would be missing from the canvas.
            await self.runner.cleanup()
            self.runner = None
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %r failed", component)
        await self.store.drain()
        for board, publisher in self.publishers.items():
            if not await publisher.flush(SHUTDOWN_SECONDS):
                log.warning(
                    "board %s: last publish did not finish in %.0f s",
                    board,
                    SHUTDOWN_SECONDS,
                )
            await publisher.close()
        await self.store.close()
        self.data_lock.release()
        log.info("stopped")

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop cleanly."""
        await self.start()
        # What start-up built lives as long as the process, so the cyclic garbage
        # collector stops scanning it, and collects young objects less often: a
        # webhook request allocates hundreds, and the default threshold of 700
        # started a collection every few requests.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        """Re-read the API keys file and apps.json (SIGHUP). A bad file keeps the
        old configuration and logs why."""
        try:
            catalog = load_catalog(self.settings)
            keys = keys_from_settings(self.settings)
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        unusable = catalog.unusable_entries()
        if unusable:
            log.error(
                "reload failed, keeping the running configuration: %s",
                "; ".join(unusable),
            )
            return
        if keys:
            self.keyring.replace(keys)
        self.catalog = catalog
        apps = (
            "no apps.json, so every app and domain is accepted"
            if catalog.is_open
            else f"{len(catalog.apps)} app(s) in {catalog.path}"
        )
        log.info(
            "reloaded: %d API key(s) (%s), %s",
            len(self.keyring),
            ", ".join(self.keyring.labels),
            apps,
        )
        self.republish_all()

    # --- health ------------------------------------------------------------

    async def _store_problem(self) -> str | None:
        """Return the last write error, else the result of a probe write (at most
        one every few seconds, so monitors polling /health cost little)."""
        if self.store.last_write_error is not None:
            return self.store.last_write_error
        now = asyncio.get_running_loop().time()
        if now - self._probe_at >= HEALTH_PROBE_SECONDS:
            self._probe_at = now
            self._probe_error = await self.store.probe_writable()
        return self._probe_error

    async def health(self, request: web.Request) -> web.Response:
        store_problem = await self._store_problem()
        checks: dict[str, Any] = {
            "store": "ok" if store_problem is None else f"failing: {store_problem}",
        }
        for board, publisher in self.publishers.items():
            checks[f"publish_{board}"] = publisher.last_error or "ok"
        if self.alerting is not None:
            checks["alerts"] = self.alerting.health()
        healthy = store_problem is None
        # Only the socket and http modes build a Slack app, and importing
        # bot.slack_app loads slack_bolt, so the other modes skip this check.
        if self.settings.mode in ("socket", "http"):
            from bot.slack_app import SlackApp

            for component in self.components:
                if isinstance(component, SlackApp):
                    checks.update(component.health_checks())
                    healthy = healthy and component.healthy
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "version": VERSION,
            "env": self.settings.env,
            "debug": self.settings.debug,
            "mode": self.settings.mode,
            "rows": len(self.store.snapshot.rows),
            "checks": checks,
        }
        return web.json_response(body, status=200 if healthy else 503)
