"""A fake Slack Socket Mode server on 127.0.0.1 for slack_sdk and Bolt clients.

The protocol, as Slack documents it: the client opens a WebSocket to the URL that
``apps.connections.open`` returned and receives ``{"type": "hello", ...}``. Slack
then sends envelopes ``{"envelope_id", "type", "payload",
"accepts_response_payload"}``, and the app acknowledges each one within 3 seconds
with ``{"envelope_id", "payload"?}``. ``{"type": "disconnect", "reason": ...}`` tells
the client to open a new connection, which slack_sdk does by calling
``apps.connections.open`` again.

Usage::

    async with FakeSlack() as slack:               # hosts one at slack.socket_mode
        ...start the app's AsyncSocketModeHandler against slack.base_url...
        await slack.socket_mode.wait_connected()
        ack = await slack.socket_mode.send_envelope("slash_commands", payload)
        assert ack.latency < 3

    async with FakeSocketMode() as socket_mode:     # standalone
        client.wss_uri = socket_mode.url            # skips apps.connections.open
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.slack_payloads import API_APP_ID

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Slack's deadline for acknowledging an envelope.
ACK_DEADLINE_SECONDS = 3.0

# accepts_response_payload as Slack sets it for each envelope type.
_ACCEPTS_RESPONSE_PAYLOAD = {
    "slash_commands": True,
    "interactive": True,
    "events_api": False,
}


class AckTimeoutError(TimeoutError):
    """No acknowledgement arrived for an envelope before the deadline."""


@dataclass(frozen=True)
class Ack:
    """An acknowledgement from the client, with the time it took to arrive."""

    envelope_id: str
    payload: dict[str, Any] | None
    latency: float  # seconds from sending the envelope to receiving the ack
    message: dict[str, Any]  # the whole ack as received


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    query: dict[str, str]
    opened_at: float
    closed_at: float | None = None


@dataclass
class _Pending:
    future: asyncio.Future[tuple[dict[str, Any], float]]
    sent_at: float


@dataclass
class _State:
    connections: list[_Connection] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)


def run_on_loop(
    loop: asyncio.AbstractEventLoop | None,
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
) -> T:
    """Run ``coro`` on ``loop`` from another thread and return its result.

    Raises RuntimeError when ``loop`` is missing or is the caller's own loop,
    because blocking that loop on itself would deadlock.
    """
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if loop is None or current is loop:
        coro.close()
        if loop is None:
            raise RuntimeError("the fake is not running; start it first")
        raise RuntimeError(
            "a *_sync method was called on the fake's own event loop; "
            "await the async method instead"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


class FakeSocketMode:
    """Socket Mode WebSocket endpoint: sends hello, envelopes and disconnects.

    Envelopes go to the newest open connection. The async methods must run on the
    loop that serves the WebSocket. Code on other threads, such as a test using
    ``FakeSlack.in_thread()``, calls the ``*_sync`` variants.
    """

    def __init__(
        self,
        *,
        app_id: str = API_APP_ID,
        ack_timeout: float = ACK_DEADLINE_SECONDS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self._host = host
        self._port = port
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        self._state = _State()
        self._pending: dict[str, _Pending] = {}
        self._started_wall = time.strftime("%Y-%m-%d %H:%M:%S")

    # Lifecycle: standalone server, or bound to a FakeSlack that hosts /link.

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self.handle_websocket)
        app.router.add_get("/link/", self.handle_websocket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.bind(asyncio.get_running_loop(), f"ws://{self._host}:{port}/link")

    async def close(self) -> None:
        await self.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSocketMode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def bind(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        """Record the loop and URL of the server that routes to handle_websocket."""
        self._loop = loop
        self._url = url

    @property
    def url(self) -> str:
        """The ``ws://`` URL that clients connect to."""
        if self._url is None:
            raise RuntimeError("FakeSocketMode is not started")
        return self._url

    # Observations, safe to read from any thread.

    @property
    def connected(self) -> bool:
        return self.open_connections > 0

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._state.connections if c.closed_at is None)

    @property
    def connection_count(self) -> int:
        """Connections accepted since start, including closed ones."""
        with self._lock:
            return len(self._state.connections)

    @property
    def connection_queries(self) -> list[dict[str, str]]:
        """Query parameters of each accepted connection, in order."""
        with self._lock:
            return [dict(c.query) for c in self._state.connections]

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every JSON message that clients sent, in arrival order."""
        with self._lock:
            return [dict(m) for m in self._state.received]

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every message this server sent, hello and disconnect included."""
        with self._lock:
            return [dict(m) for m in self._state.sent]

    # Actions.

    async def send_envelope(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        timeout: float | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> Ack:
        """Send an envelope to the newest connection and wait for its ack.

        ``envelope_type`` is ``slash_commands``, ``events_api`` or ``interactive``.
        ``accepts_response_payload`` defaults to what Slack sends for that type.
        Raises ConnectionError when no client is connected, and AckTimeoutError
        when no ack arrives within ``timeout`` (default ``ack_timeout``, 3 s).
        """
        connection = self._newest_open_connection()
        if accepts_response_payload is None:
            accepts_response_payload = _ACCEPTS_RESPONSE_PAYLOAD.get(
                envelope_type, False
            )
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason

        loop = asyncio.get_running_loop()
        pending = _Pending(future=loop.create_future(), sent_at=time.monotonic())
        self._pending[envelope_id] = pending
        deadline = self.ack_timeout if timeout is None else timeout
        try:
            await self._send(connection, envelope)
            try:
                message, received_at = await asyncio.wait_for(pending.future, deadline)
            except TimeoutError:
                raise AckTimeoutError(
                    f"no ack for {envelope_type} envelope {envelope_id} "
                    f"within {deadline} s"
                ) from None
        finally:
            self._pending.pop(envelope_id, None)
        return Ack(
            envelope_id=envelope_id,
            payload=message.get("payload"),
            latency=received_at - pending.sent_at,
            message=message,
        )

    async def disconnect(
        self, reason: str = "refresh_requested", *, close: bool = False
    ) -> None:
        """Send ``{"type": "disconnect"}`` to the newest connection.

        Slack uses reasons ``warning``, ``refresh_requested``, ``link_disabled``
        and ``too_many_websockets``. With ``close`` the connection is also closed,
        as Slack does a few seconds after a warning.
        """
        connection = self._newest_open_connection()
        await self._send(
            connection,
            {
                "type": "disconnect",
                "reason": reason,
                "debug_info": {"host": "applink-fake-1"},
            },
        )
        if close:
            await connection.ws.close(code=WSCloseCode.GOING_AWAY)

    async def drop_connections(self) -> None:
        """Cut every open connection at the TCP level, like a network failure.

        No disconnect message and no WebSocket close frame is sent.
        """
        with self._lock:
            connections = [c for c in self._state.connections if c.closed_at is None]
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()

    async def close_connections(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        with self._lock:
            connections = [c for c in self._state.connections if c.closed_at is None]
        for connection in connections:
            await connection.ws.close(code=code)

    async def wait_connected(self, *, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` connections were accepted and one is open.

        Raises TimeoutError with the counts seen when that does not happen.
        """
        deadline = time.monotonic() + timeout
        while not (self.connection_count >= count and self.connected):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected {count} Socket Mode connection(s) and one open "
                    f"within {timeout} s; accepted {self.connection_count}, "
                    f"open {self.open_connections}"
                )
            await asyncio.sleep(0.01)

    # Thread-side variants.

    def send_envelope_sync(
        self, envelope_type: str, payload: dict[str, Any], **kwargs: Any
    ) -> Ack:
        return run_on_loop(
            self._loop, self.send_envelope(envelope_type, payload, **kwargs)
        )

    def disconnect_sync(
        self, reason: str = "refresh_requested", *, close: bool = False
    ) -> None:
        run_on_loop(self._loop, self.disconnect(reason, close=close))

    def drop_connections_sync(self) -> None:
        run_on_loop(self._loop, self.drop_connections())

    def wait_connected_sync(self, *, count: int = 1, timeout: float = 5.0) -> None:
        run_on_loop(self._loop, self.wait_connected(count=count, timeout=timeout))

    # Server side.

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        # A short close timeout keeps shutdown quick when a client does not
        # reply to the close frame.
        ws = web.WebSocketResponse(autoping=True, timeout=1.0)
        await ws.prepare(request)
        with self._lock:
            connection = _Connection(
                number=len(self._state.connections) + 1,
                ws=ws,
                transport=request.transport,
                query=dict(request.query),
                opened_at=time.monotonic(),
            )
            self._state.connections.append(connection)
            open_count = sum(1 for c in self._state.connections if c.closed_at is None)
        try:
            await self._send(connection, self._hello(open_count))
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_text(message.data)
        finally:
            with self._lock:
                connection.closed_at = time.monotonic()
        return ws

    def _hello(self, open_count: int) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": open_count,
            "debug_info": {
                "host": "applink-fake-1",
                "started": self._started_wall,
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _on_text(self, data: str) -> None:
        received_at = time.monotonic()
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            logger.warning("Socket Mode client sent non-JSON text: %.200r", data)
            return
        if not isinstance(message, dict):
            logger.warning("Socket Mode client sent a non-object: %.200r", data)
            return
        with self._lock:
            self._state.received.append(message)
        pending = self._pending.get(str(message.get("envelope_id")))
        if pending is not None and not pending.future.done():
            pending.future.set_result((message, received_at))

    async def _send(self, connection: _Connection, message: dict[str, Any]) -> None:
        with self._lock:
            self._state.sent.append(message)
        await connection.ws.send_str(json.dumps(message))

    def _newest_open_connection(self) -> _Connection:
        with self._lock:
            for connection in reversed(self._state.connections):
                if connection.closed_at is None and not connection.ws.closed:
                    return connection
        raise ConnectionError("no Socket Mode client is connected")
