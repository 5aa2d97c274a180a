"""The Slack Bolt app: ``/epmpulse``, the App Home tab and its buttons.

Socket Mode runs Bolt's aiohttp ``AsyncSocketModeHandler`` inside the service's
event loop; HTTP mode serves ``POST /slack/events`` on the service's aiohttp
server. Either way there is one HTTP server, the one with the webhook API.

Bolt authorises each request with the ``auth.test`` result that the service
fetched at start, so an acknowledgement does not wait for a Slack call. Bolt's
default would call ``auth.test`` during the first request. The exception is a start
at which ``auth.test`` failed: then the first Slack request still waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from canvas.command_view import help_message, problem_message, watch_message
from canvas.home import CanvasLink, canvas_url, render_home
from canvas.home_publisher import HomePublisher
from handlers.middleware import CLIENT_ADDRESS
from handlers.slack import actions, commands, home
from handlers.slack.deps import ExtraSubcommand, Message, SlackDeps
from handlers.watch import WatchRejected
from store.board import BoardView, build_board
from store.models import Change, Snapshot

if TYPE_CHECKING:
    from bot.service import Service

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slack signs each request together with its send time, so an older one is a replay.
MAX_REQUEST_AGE_SECONDS = 300
REJECTION_LOG_SECONDS = 10.0
# /health turns 503 once Socket Mode has been down this long.
SOCKET_UNHEALTHY_AFTER_SECONDS = 60.0
SOCKET_CHECK_SECONDS = 1.0
# Interval of slack_sdk's pings to Slack and of its reconnect attempts. Bolt's
# Socket Mode handler uses 10 s by default.
SOCKET_PING_SECONDS = 10.0


class _TokenWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        dropped = "will be unused" in message or "will be ignored" in message
        return not ("`token`" in message and dropped)


class SlackApp:
    """The Bolt app as a service component (``start``/``stop``, health checks)."""

    def __init__(
        self,
        settings: Settings,
        client: AsyncWebClient,
        deps: SlackDeps,
        home_publisher: HomePublisher,
        identity: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert settings.mode in ("socket", "http")
        assert settings.slack_bot_token is not None
        self.mode = settings.mode
        self.client = client
        self.home = home_publisher
        self.identity: dict[str, Any] = dict(identity)
        self.clock = clock
        self._bot_token = settings.slack_bot_token.get_secret_value()
        self._app_token = (
            settings.slack_app_token.get_secret_value()
            if settings.slack_app_token is not None
            else None
        )
        secret = settings.slack_signing_secret
        self._signing_secret = (
            secret.get_secret_value()
            if secret is not None and self.mode == "http"
            else None
        )
        self._verifier = (
            SignatureVerifier(self._signing_secret) if self._signing_secret else None
        )
        self._identity_lock = asyncio.Lock()
        self._handler: AsyncSocketModeHandler | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._connections = 0
        self._connected_since: float | None = None
        self._disconnected_at: float | None = None
        self._alarm_logged = False
        self._rejections: dict[str, tuple[float, int]] = {}

        self.app = self._build_app(deps)

    def _build_app(self, deps: SlackDeps) -> AsyncApp:
        async def authorize(
            enterprise_id: str | None, team_id: str | None, user_id: str | None
        ) -> AuthorizeResult:
            identity = await self._current_identity()
            return AuthorizeResult(
                enterprise_id=identity.get("enterprise_id"),
                team_id=identity.get("team_id"),
                team=identity.get("team"),
                url=identity.get("url"),
                bot_user_id=identity.get("user_id"),
                bot_id=identity.get("bot_id"),
                bot_token=self._bot_token,
                user_id=user_id,
            )

        # Bolt copies this client's settings (base URL, timeout, retry handlers)
        # into a client per request and gives it the token from authorize().
        template = AsyncWebClient(
            base_url=self.client.base_url,
            timeout=self.client.timeout,
            retry_handlers=list(self.client.retry_handlers or []),
        )
        # Bolt also reads SLACK_BOT_TOKEN from the environment and warns that it is
        # unused. authorize() hands Bolt that same token, so the warning is dropped.
        bolt_log = logging.getLogger("slack_bolt.AsyncApp")
        token_warning = _TokenWarningFilter()
        bolt_log.addFilter(token_warning)
        try:
            app = AsyncApp(
                name="epmpulse",
                client=template,
                authorize=authorize,
                signing_secret=self._signing_secret or "",
                request_verification_enabled=self._signing_secret is not None,
            )
        finally:
            bolt_log.removeFilter(token_warning)
        # handle_http() rejects bad signatures before Bolt receives them, and logs
        # them without the body. Bolt's own check stays on as a second line, but
        # its logger writes the request body at INFO, so only its warnings pass.
        logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
        commands.register(app, deps)
        home.register(app, deps)
        actions.register(app, deps)
        return app

    async def _current_identity(self) -> dict[str, Any]:
        """Return the ``auth.test`` result, calling it again if it failed at start.

        NOTE: only in that case does a request wait for Slack before its ack.
        """
        if self.identity:
            return self.identity
        async with self._identity_lock:
            if not self.identity:
                response = await self.client.auth_test()
                if isinstance(response.data, dict):
                    self.identity = dict(response.data)
        return self.identity

    # --- HTTP mode ------------------------------------------------------------

    def add_routes(self, web_app: web.Application) -> None:
        if self.mode == "http":
            web_app.router.add_post(EVENTS_PATH, self.handle_http)

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rejection = self._check_signature(request, body)
        if rejection is not None:
            client = request.get(CLIENT_ADDRESS, request.remote)
            self._log_rejection(client, *rejection)
            return web.json_response({"error": "invalid request"}, status=401)
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    def _log_rejection(self, client: str | None, kind: str, problem: str) -> None:
        # A flood of forged requests must not flood the log: per kind of problem,
        # one line per REJECTION_LOG_SECONDS, counting the ones in between.
        now = self.clock()
        last, unlogged = self._rejections.get(kind, (float("-inf"), 0))
        if now - last < REJECTION_LOG_SECONDS:
            self._rejections[kind] = (last, unlogged + 1)
            return
        more = f" ({unlogged} more since the last such line)" if unlogged else ""
        log.warning(
            "rejected a request to %s from %s: %s%s", EVENTS_PATH, client, problem, more
        )
        self._rejections[kind] = (now, 0)

    def _check_signature(
        self, request: web.Request, body: bytes
    ) -> tuple[str, str] | None:
        """Return (kind, problem) for a request Slack did not sign, else None."""
        assert self._verifier is not None
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        if not timestamp or not signature:
            return "headers", (
                "the X-Slack-Request-Timestamp or X-Slack-Signature header is missing"
            )
        # Only plain digits: int() also takes "1_700", other scripts' digits and
        # numbers too large to subtract from a float, which raised an error (500).
        # The kind is its own, so missing headers (common from scanners) logged
        # just before do not hide it behind the rate limit of the log lines.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "timestamp_format", (
                "the X-Slack-Request-Timestamp header is not a Unix time"
            )
        age = time.time() - int(timestamp)
        if abs(age) > MAX_REQUEST_AGE_SECONDS:
            return "timestamp", (
                f"the request timestamp is {abs(age):.0f} s off, more than "
                f"{MAX_REQUEST_AGE_SECONDS} s (a replay, or a wrong server clock)"
            )
        if not self._verifier.is_valid(body, timestamp, signature):
            return "signature", "invalid signature (check SLACK_SIGNING_SECRET)"
        return None

    # --- Socket Mode ----------------------------------------------------------

    async def start(self) -> None:
        if self.mode != "socket":
            log.info("Slack events are served at POST %s", EVENTS_PATH)
            return
        assert self._app_token is not None
        # slack_sdk logs each session it opens and closes at INFO. The lines of
        # _on_socket_message() and _watch_connection() report the same, shorter.
        sdk_log = logging.getLogger("slack_sdk.socket_mode.aiohttp")
        if sdk_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            sdk_log.setLevel(logging.WARNING)
        # The aiohttp Socket Mode client must be created inside the running loop.
        self._handler = AsyncSocketModeHandler(
            self.app,
            self._app_token,
            logger=sdk_log,
            web_client=self.client,
            ping_interval=SOCKET_PING_SECONDS,
        )
        self._handler.client.message_listeners.append(self._on_socket_message)
        self._disconnected_at = self.clock()
        loop = asyncio.get_running_loop()
        # connect_async() retries until it succeeds, so it must not hold up start.
        self._tasks = [
            loop.create_task(self._handler.connect_async()),  # type: ignore[no-untyped-call]
            loop.create_task(self._watch_connection()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("Socket Mode task failed")
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]
        await self.home.close()

    async def _on_socket_message(
        self, client: Any, message: dict[str, Any], raw: str | None
    ) -> None:
        # Slack starts every connection with "hello", so it marks a (re)connect,
        # including one that slack_sdk made after a "disconnect" request.
        if message.get("type") != "hello":
            return
        self._connections += 1
        now = self.clock()
        if self._connections == 1:
            log.info("Socket Mode connected")
        else:
            down = now - self._disconnected_at if self._disconnected_at else 0.0
            log.info(
                "Socket Mode reconnected (connection %d, down for %.0f s)",
                self._connections,
                down,
            )
        self._connected_since = now
        self._disconnected_at = None
        self._alarm_logged = False

    async def _watch_connection(self) -> None:
        assert self._handler is not None
        client = self._handler.client
        while True:
            connected = await client.is_connected()
            now = self.clock()
            if not connected and self._connected_since is not None:
                log.warning("Socket Mode connection lost; reconnecting")
                self._connected_since = None
                self._disconnected_at = now
            elif not connected and not self._alarm_logged and self._down_too_long(now):
                self._alarm_logged = True
                log.error(
                    "Socket Mode has been disconnected for more than %.0f s: "
                    "/epmpulse and the Home tab do not answer until it reconnects",
                    SOCKET_UNHEALTHY_AFTER_SECONDS,
                )
            await asyncio.sleep(SOCKET_CHECK_SECONDS)

    def _down_too_long(self, now: float) -> bool:
        return (
            self._disconnected_at is not None
            and now - self._disconnected_at > SOCKET_UNHEALTHY_AFTER_SECONDS
        )

    # --- health ---------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False once Socket Mode has been down longer than a minute. Web API
        errors show in the checks but do not make the service unhealthy."""
        return self.mode != "socket" or not self._down_too_long(self.clock())

    def health_checks(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self.mode == "socket":
            checks["slack_socket"] = self._socket_state()
        else:
            checks["slack_events"] = f"POST {EVENTS_PATH}"
        checks["slack_home"] = self.home.last_error or "ok"
        return checks

    def _socket_state(self) -> str:
        if self._connected_since is not None:
            return "connected"
        down = self.clock() - (self._disconnected_at or self.clock())
        state = "disconnected" if self._connections else "connecting"
        return f"{state} for {down:.0f} s"


def build_slack_app(service: Service) -> SlackApp:
    """Wire the Slack app to the service's store, boards and canvas publishers."""
    settings = service.settings
    assert service.slack is not None
    slack_app: SlackApp | None = None

    def boards(now: datetime) -> list[BoardView]:
        return [
            build_board(
                service.store.snapshot,
                service.catalog,
                board,
                now=now,
                stuck_after=settings.stuck_after,
                boards=service.active_boards,
            )
            for board in service.active_boards
        ]

    def links() -> list[CanvasLink]:
        identity = slack_app.identity if slack_app is not None else {}
        url, team_id = identity.get("url"), identity.get("team_id")
        if not url or not team_id:
            return []
        found = []
        for board, publisher in service.publishers.items():
            canvas_id = getattr(publisher.target, "canvas_id", None)
            if canvas_id:
                title = getattr(publisher.target, "title", f"{board} status")
                found.append(
                    CanvasLink(board, title, canvas_url(url, team_id, canvas_id))
                )
        return found

    def render(notice: str | None) -> dict[str, Any]:
        now = datetime.now(UTC)
        return render_home(
            boards(now),
            tz=service.tz,
            now=now,
            links=links(),
            notice=notice,
            banner=service.maintenance_notice(),
        )

    home_publisher = HomePublisher(
        service.slack, render, settings.canvas_debounce_seconds
    )

    def on_change(snapshot: Snapshot, changes: Sequence[Change]) -> None:
        if any(change.changed for change in changes):
            home_publisher.notify()

    service.store.subscribe(on_change)
    service.republish_listeners.append(home_publisher.notify)
    deps = SlackDeps(
        boards=boards,
        read_history=service.store.read_history,
        sync_canvases=service.sync_canvases,
        canvas_links=lambda: {link.board: link.url for link in links()},
        home=home_publisher,
        tz=service.tz,
        banner=service.maintenance_notice,
        extra_subcommands=(watch_subcommand(service),),
    )
    slack_app = SlackApp(
        settings, service.slack, deps, home_publisher, service.slack_identity
    )
    slack_app.add_routes(service.web_app)
    return slack_app


WATCH_USAGE = ("watch <app> <domain> <job_id>", "follow an EPM job until it finishes")


def watch_subcommand(service: Service) -> ExtraSubcommand:
    """Build the ``/epmpulse watch`` subcommand, which makes pull mode follow an
    EPM job."""

    async def run(args: list[str], user_id: str) -> Message:
        if len(args) != 3:
            return help_message(
                "`watch` needs an app, a domain and the EPM job id: "
                "`/epmpulse watch Planning Actual 1234`.",
                [WATCH_USAGE],
            )
        if service.pull is None:
            return problem_message(
                "Pull mode is off, so EPMPulse cannot follow EPM jobs: add an epm "
                "block to the app in apps.json and set the EPM sign-in settings."
            )
        try:
            watching = await service.pull.watch(*args)
        except WatchRejected as exc:
            return problem_message(str(exc))
        log.info(
            "user %s requested a watch of %s/%s job %s",
            user_id,
            watching["app"],
            watching["domain"],
            watching["job_id"],
        )
        return watch_message(watching["app"], watching["domain"], watching["job_id"])

    return ExtraSubcommand("watch", *WATCH_USAGE, run)
