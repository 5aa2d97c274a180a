"""A fake Slack Web API on 127.0.0.1 that speaks Slack's HTTP protocol.

Point the real ``AsyncWebClient(base_url=slack.base_url)`` (or Bolt's ``AsyncApp``)
at it. The fake responds as Slack documents: HTTP 200 with ``{"ok": false,
"error": code}`` for API errors, 429 with ``Retry-After`` when rate limited, and it
keeps the state that a test checks afterwards (canvases, messages, Home views,
``response_url`` posts). It also hosts a Socket Mode endpoint
(``slack.socket_mode``, see ``tests.fakes.slack_socket``).

Usage::

    async with FakeSlack() as slack:                # inside a running event loop
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
        slack.ratelimit("canvases.edit", retry_after=1)   # next edit gets a 429
        await slack.wait_for(lambda: "FCCS" in slack.canvas_markdown(canvas_id))

    with FakeSlack.in_thread() as slack:            # own loop in a thread
        ...start `epmpulse serve` with base_url=slack.base_url...
        slack.wait_for_sync(lambda: slack.calls_to("canvases.edit"))

Request parameters are merged from the query string, a form body and a JSON body,
because slack_sdk's AsyncWebClient sends ``params=`` methods in the query string
and the JSON methods (``canvases.edit``, ``views.publish``, ``chat.postMessage``...)
as a JSON body, while the sync WebClient sends a form body.

Not modelled: canvas sections (``canvases.sections.lookup`` and edits with a
``section_id`` return errors, see ``_section_edit``), the sticky title heading
that Slack keeps on whole replaces, and HTML output of ``canvases.getContent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.slack_payloads import (
    API_APP_ID,
    ARCS_CHANNEL_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    MAIN_CHANNEL_ID,
    TEAM_ID,
    TEAM_NAME,
)
from tests.fakes.slack_socket import FakeSocketMode, run_on_loop

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BOT_TOKEN = "xoxb-test-token"
DEFAULT_APP_TOKEN = "xapp-1-test"
# The bot scopes EPMPulse's manifest requests.
DEFAULT_SCOPES = (
    "commands",
    "chat:write",
    "canvases:write",
    "canvases:read",
    "channels:read",
)

# Limits as Slack documents them for each method and for Block Kit.
MAX_CANVAS_MARKDOWN_CHARS = 1_048_576  # 1 MiB, per change and per document
MAX_HOME_BLOCKS = 100
MAX_MESSAGE_BLOCKS = 50
MAX_MESSAGE_TEXT_CHARS = 40_000
MAX_SECTION_TEXT_CHARS = 3000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_CHARS = 2000
MAX_HEADER_TEXT_CHARS = 150
MAX_BLOCK_ID_CHARS = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT_CHARS = 75
MAX_BUTTON_VALUE_CHARS = 2000
MAX_PRIVATE_METADATA_CHARS = 3000
MAX_CALLBACK_ID_CHARS = 255
MAX_TABLE_ROWS = 100
MAX_TABLE_CELLS = 20
# Slack documents "greater than 250kb" for view_too_large without saying whether
# kb is 1000 or 1024 bytes, so the fake uses the stricter 250,000.
MAX_VIEW_JSON_BYTES = 250_000
# Slack allows five responses to a response_url within 30 minutes.
MAX_RESPONSE_URL_POSTS = 5

_FIRST_MESSAGE_TS_MICROS = 1_700_000_000_000_000
_JSON_ARGUMENTS = (
    "changes",
    "document_content",
    "title_content",
    "view",
    "blocks",
    "criteria",
    "attachments",
    "metadata",
)
_USER_ID_PATTERN = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CANVAS_OPERATIONS = (
    "replace",
    "insert_at_start",
    "insert_at_end",
    "insert_after",
    "insert_before",
    "delete",
    "rename",
)

# Method -> (token type it needs, bot scope it needs). App-level tokens carry
# connections:write, which the fake always grants.
_METHODS: dict[str, tuple[str, str | None]] = {
    "auth.test": ("bot", None),
    "apps.connections.open": ("app", None),
    "canvases.create": ("bot", "canvases:write"),
    "canvases.edit": ("bot", "canvases:write"),
    "canvases.delete": ("bot", "canvases:write"),
    "canvases.access.set": ("bot", "canvases:write"),
    "canvases.getContent": ("bot", "canvases:read"),
    "canvases.sections.lookup": ("bot", "canvases:read"),
    "conversations.canvases.create": ("bot", "canvases:write"),
    # channels:read for public channels, groups:read for private ones.
    "conversations.info": ("bot", None),
    "views.publish": ("bot", None),
    "chat.postMessage": ("bot", "chat:write"),
    "chat.update": ("bot", "chat:write"),
}


# Recorded state. Accessors hand out deep copies, so tests may keep them.


@dataclass
class Call:
    """One Web API request as the fake saw it."""

    method: str
    params: dict[str, Any]  # query string, form and JSON body merged
    token: str | None
    timestamp: float  # time.monotonic() when the request arrived
    status: int | None = None  # HTTP status sent; None while held or when dropped
    error: str | None = None  # the "error" of an ok:false response
    responded_at: float | None = None  # time.monotonic() when the response was sent

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class Canvas:
    id: str
    title: str
    markdown: str
    channel_id: str | None  # the channel it is a tab of, if any
    is_channel_canvas: bool  # created by conversations.canvases.create
    history: list[str] = field(default_factory=list)  # markdown after each change
    access: list[dict[str, Any]] = field(default_factory=list)  # access.set calls
    deleted: bool = False


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None  # the parent's ts for a thread reply
    user: str = BOT_USER_ID
    bot_id: str = BOT_ID
    reply_broadcast: bool = False
    replies: list[Message] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # earlier versions

    def to_api(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": self.text,
            "user": self.user,
            "bot_id": self.bot_id,
            "ts": self.ts,
            "team": TEAM_ID,
        }
        if self.blocks is not None:
            message["blocks"] = self.blocks
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
        return message


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_private: bool = False
    canvas_id: str | None = None  # the channel canvas, as conversations.info shows


class _ApiError(Exception):
    """Ends a method with HTTP 200 ``{"ok": false, "error": code, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _invalid_arguments(*lines: str) -> _ApiError:
    return _ApiError(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] {line}" for line in lines]},
    )


@dataclass
class _Fault:
    kind: str  # "status", "error", "hang" or "drop"
    remaining: int | None  # None: until cleared
    status: int = 200
    error: str | None = None  # the "error" field of the body, for the record
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# Block Kit validation. Only the "no more than N items allowed" wording is taken
# from observed Slack responses; the other lines follow the same
# "<problem> [json-pointer:<path>]" shape with wording of our own.


def _check_text(
    text: Any, pointer: str, max_chars: int, *, plain_only: bool = False
) -> list[str]:
    if not isinstance(text, dict):
        return [f"must be a text object [json-pointer:{pointer}]"]
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if text.get("type") not in allowed:
        expected = " or ".join(allowed)
        return [f"must be {expected} [json-pointer:{pointer}/type]"]
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return [f"must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(value) > max_chars:
        return [
            f"must be less than {max_chars + 1} characters "
            f"[json-pointer:{pointer}/text]"
        ]
    return []


def _check_elements(
    elements: Any, pointer: str, max_items: int, *, buttons: bool
) -> list[str]:
    if not isinstance(elements, list) or not elements:
        return [f"must provide at least 1 items [json-pointer:{pointer}]"]
    if len(elements) > max_items:
        return [f"no more than {max_items} items allowed [json-pointer:{pointer}]"]
    if not buttons:
        return []
    problems: list[str] = []
    for index, element in enumerate(elements):
        at = f"{pointer}/{index}"
        if not isinstance(element, dict) or element.get("type") != "button":
            continue
        problems += _check_text(
            element.get("text"), f"{at}/text", MAX_BUTTON_TEXT_CHARS, plain_only=True
        )
        value = element.get("value")
        if isinstance(value, str) and len(value) > MAX_BUTTON_VALUE_CHARS:
            problems.append(
                f"must be less than {MAX_BUTTON_VALUE_CHARS + 1} characters "
                f"[json-pointer:{at}/value]"
            )
    return problems


def _check_block(block: Any, pointer: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"must be an object [json-pointer:{pointer}]"]
    problems: list[str] = []
    block_id = block.get("block_id")
    if isinstance(block_id, str) and len(block_id) > MAX_BLOCK_ID_CHARS:
        problems.append(
            f"must be less than {MAX_BLOCK_ID_CHARS + 1} characters "
            f"[json-pointer:{pointer}/block_id]"
        )

    kind = block.get("type")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(
                f"must provide either text or fields [json-pointer:{pointer}]"
            )
        if "text" in block:
            problems += _check_text(
                block["text"], f"{pointer}/text", MAX_SECTION_TEXT_CHARS
            )
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                problems.append(
                    f"no more than {MAX_SECTION_FIELDS} items allowed "
                    f"[json-pointer:{pointer}/fields]"
                )
            else:
                for index, item in enumerate(fields):
                    problems += _check_text(
                        item, f"{pointer}/fields/{index}", MAX_SECTION_FIELD_CHARS
                    )
    elif kind == "header":
        problems += _check_text(
            block.get("text"),
            f"{pointer}/text",
            MAX_HEADER_TEXT_CHARS,
            plain_only=True,
        )
    elif kind == "actions":
        problems += _check_elements(
            block.get("elements"),
            f"{pointer}/elements",
            MAX_ACTIONS_ELEMENTS,
            buttons=True,
        )
    elif kind == "context":
        problems += _check_elements(
            block.get("elements"),
            f"{pointer}/elements",
            MAX_CONTEXT_ELEMENTS,
            buttons=False,
        )
    elif kind == "table":
        rows = block.get("rows")
        if not isinstance(rows, list) or len(rows) > MAX_TABLE_ROWS:
            problems.append(
                f"no more than {MAX_TABLE_ROWS} items allowed "
                f"[json-pointer:{pointer}/rows]"
            )
        else:
            for index, row in enumerate(rows):
                if isinstance(row, list) and len(row) > MAX_TABLE_CELLS:
                    problems.append(
                        f"no more than {MAX_TABLE_CELLS} items allowed "
                        f"[json-pointer:{pointer}/rows/{index}]"
                    )
    elif kind not in (
        "divider",
        "image",
        "rich_text",
        "input",
        "markdown",
        "video",
        "file",
    ):
        problems.append(
            f"unsupported block type {kind!r} [json-pointer:{pointer}/type]"
        )
    return problems


def check_blocks(blocks: Any, pointer: str, max_items: int) -> list[str]:
    """Return Slack-style problem lines for a list of blocks; empty when valid."""
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    if len(blocks) > max_items:
        return [f"no more than {max_items} items allowed [json-pointer:{pointer}]"]
    problems: list[str] = []
    seen_ids: set[str] = set()
    for index, block in enumerate(blocks):
        problems += _check_block(block, f"{pointer}/{index}")
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if isinstance(block_id, str):
            if block_id in seen_ids:
                problems.append(
                    f"block_id must be unique [json-pointer:{pointer}/{index}/block_id]"
                )
            seen_ids.add(block_id)
    return problems


# Request parsing.


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge the query string, form body and JSON body of a Web API request."""
    params: dict[str, Any] = dict(request.query)
    body = await request.read()
    content_type = request.content_type
    if body and content_type == "application/json":
        try:
            decoded = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _ApiError("invalid_json") from None
        if not isinstance(decoded, dict):
            raise _ApiError("json_not_object")
        params.update(decoded)
    elif body and content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        params.update({key: value for key, value in form.items()})
    elif body:
        raise _ApiError("invalid_post_type")

    # Structured arguments sent in a form or query string are JSON-encoded strings.
    for name in _JSON_ARGUMENTS:
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                raise _invalid_arguments(
                    f"invalid JSON [json-pointer:/{name}]"
                ) from None
    return params


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _required(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise _invalid_arguments(f"missing required field: {name}")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


def _markdown_of(content: Any, pointer: str) -> str:
    if not isinstance(content, dict):
        raise _invalid_arguments(f"must be an object [json-pointer:{pointer}]")
    if content.get("type") != "markdown":
        raise _invalid_arguments(f"must be markdown [json-pointer:{pointer}/type]")
    markdown = content.get("markdown")
    if not isinstance(markdown, str):
        raise _invalid_arguments(
            f"missing required field: markdown [json-pointer:{pointer}/markdown]"
        )
    return markdown


class _LoopThread:
    """An event loop running in a daemon thread until stop()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name="fake-slack", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

        # Finish what is left (held requests, WebSocket handlers) on this
        # thread, so closing the loop leaks no task, socket or executor.
        leftover = asyncio.all_tasks(self.loop)
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


class FakeSlack:
    """Fake Slack workspace: Web API, response_url sink and Socket Mode endpoint.

    State is kept behind a lock, so the recorded-state accessors and the fault
    switches may be used from any thread while the server runs on its loop.
    """

    def __init__(
        self,
        *,
        bot_tokens: Sequence[str] = (DEFAULT_BOT_TOKEN,),
        app_token: str = DEFAULT_APP_TOKEN,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        team_id: str = TEAM_ID,
        team_name: str = TEAM_NAME,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        api_app_id: str = API_APP_ID,
        host: str = "127.0.0.1",
        port: int = 0,
        default_channels: bool = True,
    ) -> None:
        if not bot_tokens:
            raise ValueError("bot_tokens must contain at least one token")
        self.bot_tokens = list(bot_tokens)
        self.app_token = app_token
        self.scopes = list(scopes)
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.api_app_id = api_app_id
        # The Socket Mode endpoint served at /link of this server. A standalone
        # one can replace it in apps.connections.open; see attach_socket_mode().
        self._hosted_socket_mode = FakeSocketMode(app_id=api_app_id)
        self.socket_mode = self._hosted_socket_mode

        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None

        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._revoked: set[str] = set()
        self._channels: dict[str, Channel] = {}
        self._canvases: dict[str, Canvas] = {}
        self._editing: set[str] = set()
        self._edit_duration = 0.0
        self._messages: dict[str, list[Message]] = {}
        self._orphan_replies: list[Message] = []
        self._views: dict[str, list[dict[str, Any]]] = {}
        self._responses: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._ts_micros = _FIRST_MESSAGE_TS_MICROS

        if default_channels:
            self.add_channel(MAIN_CHANNEL_ID, "main")
            self.add_channel(ARCS_CHANNEL_ID, "arcs")

    # Lifecycle.

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{name}", self._handle_response_url)
        app.router.add_get("/docs/{team_id}/{canvas_id}", self._handle_canvas_link)
        app.router.add_get("/link", self._handle_websocket)
        app.router.add_get("/link/", self._handle_websocket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._bound_port = self._runner.addresses[0][1]
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        self._hosted_socket_mode.bind(
            self._loop, f"ws://{self._host}:{self._bound_port}/link"
        )
        logger.info("fake Slack listening on %s", self.base_url)

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        await self._hosted_socket_mode.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **kwargs: Any) -> Iterator[FakeSlack]:
        """Run a FakeSlack on its own event loop in a background thread.

        For synchronous tests, such as ones that start ``epmpulse serve`` as a
        subprocess. Keyword arguments go to the constructor.
        """
        fake = cls(**kwargs)
        runner = _LoopThread()
        runner.start()
        try:
            run_on_loop(runner.loop, fake.start(), timeout=10)
            yield fake
        finally:
            with contextlib.suppress(RuntimeError):
                run_on_loop(runner.loop, fake.close(), timeout=10)
            runner.stop()

    def attach_socket_mode(self, socket_mode: FakeSocketMode) -> None:
        """Make apps.connections.open hand out ``socket_mode``'s URL."""
        self.socket_mode = socket_mode

    # Addresses and identity.

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """Web API root, as ``AsyncWebClient(base_url=...)`` takes it."""
        return f"http://{self._host}:{self.port}/api/"

    @property
    def workspace_url(self) -> str:
        """Workspace root; a canvas link is ``<this>docs/<team id>/<canvas id>``."""
        return f"http://{self._host}:{self.port}/"

    @property
    def bot_token(self) -> str:
        return self.bot_tokens[0]

    def response_url(self, name: str) -> str:
        """A response_url whose posts are recorded under ``name``."""
        return f"http://{self._host}:{self.port}/response/{name}"

    def canvas_url(self, canvas_id: str) -> str:
        return f"{self.workspace_url}docs/{self.team_id}/{canvas_id}"

    # Workspace configuration.

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_member: bool = True,
        is_private: bool = False,
    ) -> None:
        with self._lock:
            self._channels[channel_id] = Channel(
                channel_id, name, is_member=is_member, is_private=is_private
            )
            self._messages.setdefault(channel_id, [])

    def set_member(self, channel_id: str, is_member: bool) -> None:
        with self._lock:
            self._channels[channel_id].is_member = is_member

    def set_scopes(self, scopes: Sequence[str]) -> None:
        with self._lock:
            self.scopes = list(scopes)

    def revoke_token(self, token: str) -> None:
        """Reject every later call made with ``token`` with ``token_revoked``."""
        with self._lock:
            self._revoked.add(token)

    # Fault switches. Each applies to the next ``times`` calls of ``method``
    # ("*" for any method), or until clear_faults() when ``times`` is None. Faults
    # queued for one method are used in the order they were added.

    def ratelimit(
        self, method: str, *, retry_after: int = 1, times: int | None = 1
    ) -> None:
        """Respond with HTTP 429 and ``Retry-After: <retry_after>``, as Slack does."""
        self._add_fault(
            method,
            _Fault(
                kind="status",
                remaining=times,
                status=429,
                error="ratelimited",
                body=json.dumps({"ok": False, "error": "ratelimited"}),
                headers={"Retry-After": str(retry_after)},
            ),
        )

    def fail(
        self, method: str, error: str, *, times: int | None = 1, **extra: Any
    ) -> None:
        """Respond with HTTP 200 ``{"ok": false, "error": error, **extra}``."""
        body = {"ok": False, "error": error, **extra}
        self._add_fault(
            method,
            _Fault(kind="error", remaining=times, error=error, body=json.dumps(body)),
        )

    def server_error(
        self, method: str, *, status: int = 500, times: int | None = 1
    ) -> None:
        """Respond with an HTTP 5xx status and an HTML body instead of JSON."""
        page = f"<html><body><h1>{status} Server Error</h1></body></html>"
        self._add_fault(
            method,
            _Fault(
                kind="status",
                remaining=times,
                status=status,
                body=page,
                content_type="text/html",
            ),
        )

    def hang(self, method: str, seconds: float, *, times: int | None = 1) -> None:
        """Hold the request ``seconds`` before responding normally."""
        self._add_fault(method, _Fault(kind="hang", remaining=times, seconds=seconds))

    def drop_connection(self, method: str, *, times: int | None = 1) -> None:
        """Close the connection without sending a response."""
        self._add_fault(method, _Fault(kind="drop", remaining=times))

    def clear_faults(self, method: str | None = None) -> None:
        with self._lock:
            if method is None:
                self._faults.clear()
            else:
                self._faults.pop(method, None)

    def set_edit_duration(self, seconds: float) -> None:
        """Make each canvases.edit take ``seconds`` before it is applied.

        While an edit is in progress, another edit of the same canvas is rejected
        with ``canvas_editing_locked``, as Slack does for concurrent edits. With the
        default of 0 the fake applies edits at once, so none overlap.
        """
        with self._lock:
            self._edit_duration = seconds

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if not queue:
                continue
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
            return fault
        return None

    # Recorded state.

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return copy.deepcopy([c for c in self._calls if c.method == method])

    @property
    def canvases(self) -> dict[str, Canvas]:
        """Every canvas created, deleted ones included (``Canvas.deleted``)."""
        with self._lock:
            return copy.deepcopy(self._canvases)

    @property
    def edits_in_progress(self) -> set[str]:
        """Ids of canvases with an edit held by set_edit_duration()."""
        with self._lock:
            return set(self._editing)

    def canvas_markdown(self, canvas_id: str) -> str:
        """Current markdown of a canvas; raises KeyError for an unknown id."""
        with self._lock:
            return self._canvases[canvas_id].markdown

    def channel_canvas(self, channel_id: str) -> str | None:
        """The channel canvas id of ``channel_id``, or None."""
        with self._lock:
            return self._channels[channel_id].canvas_id

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel, each with its replies and edits."""
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    @property
    def orphan_replies(self) -> list[Message]:
        """Replies posted with a thread_ts that matched no message."""
        with self._lock:
            return copy.deepcopy(self._orphan_replies)

    def published_views(self, user_id: str) -> list[dict[str, Any]]:
        """Every Home view published for a user, oldest first."""
        with self._lock:
            return copy.deepcopy(self._views.get(user_id, []))

    def responses(self, name: str) -> list[dict[str, Any]]:
        """JSON bodies posted to ``response_url(name)``, oldest first."""
        with self._lock:
            return copy.deepcopy(self._responses.get(name, []))

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,
        *,
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate`` until it returns a truthy value, and return that.

        A LookupError from the predicate (an id not created yet) counts as false.
        Raises TimeoutError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = _evaluate(predicate)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(interval)

    def wait_for_sync(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,
        *,
        interval: float = 0.01,
    ) -> T:
        """Blocking wait_for() for a thread other than the fake's loop thread."""
        deadline = time.monotonic() + timeout
        while True:
            result = _evaluate(predicate)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # HTTP handlers.

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        call = Call(method=method, params={}, token=None, timestamp=time.monotonic())
        with self._lock:
            self._calls.append(call)
            fault = self._take_fault(method)

        # Parameters are recorded even for faulted calls, so that a test can see
        # what a dropped or rate-limited request carried.
        params: dict[str, Any] = {}
        parse_error: _ApiError | None = None
        try:
            params = await _read_params(request)
        except _ApiError as e:
            parse_error = e
        param_token = params.pop("token", None)
        token = _bearer_token(request) or param_token
        with self._lock:
            call.params = params
            call.token = token

        if fault is not None and fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        if fault is not None and fault.kind == "hang":
            await self._sleep(fault.seconds)
        elif fault is not None:
            return self._respond(
                call,
                fault.status,
                fault.body,
                error=fault.error,
                content_type=fault.content_type,
                headers=fault.headers,
            )

        headers: dict[str, str] = {}
        try:
            if parse_error is not None:
                raise parse_error
            with self._lock:
                headers = self._auth_headers(token)
                self._authorize(method, token)
            body = await self._dispatch(method, params)
        except _ApiError as e:
            body = {"ok": False, "error": e.error, **e.extra}
        return self._respond(
            call,
            200,
            json.dumps(body),
            error=None if body.get("ok") else str(body.get("error")),
            headers=headers,
        )

    def _respond(
        self,
        call: Call,
        status: int,
        body: str,
        *,
        error: str | None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        with self._lock:
            call.status = status
            call.error = error
            call.responded_at = time.monotonic()
        if error is not None:
            logger.debug("fake Slack %s -> %s %s", call.method, status, error)
        return web.Response(
            status=status,
            text=body,
            content_type=content_type,
            charset="utf-8",
            headers=dict(headers or {}),
        )

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = await request.json()
        except (UnicodeDecodeError, json.JSONDecodeError):
            return web.Response(status=400, text="invalid_payload")
        with self._lock:
            posts = self._responses.setdefault(name, [])
            # NOTE: "used_url" is our guess at Slack's response to a sixth post.
            if len(posts) >= MAX_RESPONSE_URL_POSTS:
                return web.Response(status=404, text="used_url")
            posts.append(body)
        return web.Response(text="ok")

    async def _handle_canvas_link(self, request: web.Request) -> web.Response:
        with self._lock:
            canvas = self._canvases.get(request.match_info["canvas_id"])
            if (
                canvas is None
                or canvas.deleted
                or request.match_info["team_id"] != self.team_id
            ):
                return web.Response(status=404, text="canvas not found")
            return web.Response(text=canvas.markdown)

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        return await self._hosted_socket_mode.handle_websocket(request)

    async def _sleep(self, seconds: float) -> None:
        # Held requests end early when the fake closes, so close() does not wait
        # for them.
        if self._closing is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # Authentication. Called with the lock held.

    def _auth_headers(self, token: str | None) -> dict[str, str]:
        if token in self.bot_tokens:
            return {"X-OAuth-Scopes": ",".join(self.scopes)}
        return {}

    def _authorize(self, method: str, token: str | None) -> None:
        if token is None:
            raise _ApiError("not_authed")
        if token in self._revoked:
            raise _ApiError("token_revoked")
        if token in self.bot_tokens:
            token_type = "bot"
        elif token == self.app_token:
            token_type = "app"
        else:
            raise _ApiError("invalid_auth")
        if method not in _METHODS:
            raise _ApiError("unknown_method", req_method=method)
        needed_type, scope = _METHODS[method]
        if token_type != needed_type:
            raise _ApiError("not_allowed_token_type")
        if scope is not None and scope not in self.scopes:
            raise _ApiError(
                "missing_scope", needed=scope, provided=",".join(self.scopes)
            )

    # Web API methods.

    async def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "canvases.edit":
            return await self._canvases_edit(params)
        handler = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "canvases.create": self._canvases_create,
            "canvases.delete": self._canvases_delete,
            "canvases.access.set": self._canvases_access_set,
            "canvases.getContent": self._canvases_get_content,
            "canvases.sections.lookup": self._canvases_sections_lookup,
            "conversations.canvases.create": self._conversations_canvases_create,
            "conversations.info": self._conversations_info,
            "views.publish": self._views_publish,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
        }[method]
        with self._lock:
            return handler(params)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": self.workspace_url,
            "team": self.team_name,
            "user": BOT_NAME,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = f"fake-{next(self._ids)}"
        return {
            "ok": True,
            "url": f"{self.socket_mode.url}?ticket={ticket}&app_id={self.api_app_id}",
        }

    # Canvases.

    def _new_canvas(
        self,
        params: dict[str, Any],
        *,
        channel_id: str | None,
        is_channel_canvas: bool,
    ) -> Canvas:
        markdown = ""
        content = params.get("document_content")
        if content is not None:
            markdown = _markdown_of(content, "/document_content")
        if len(markdown) > MAX_CANVAS_MARKDOWN_CHARS:
            # NOTE: the error code for oversized create content is our guess;
            # Slack documents canvas_too_large only for canvases.edit.
            raise _ApiError(
                "canvas_creation_failed",
                detail=f"'content' error: more than {MAX_CANVAS_MARKDOWN_CHARS} "
                "characters of markdown",
            )
        title = params.get("title")
        canvas = Canvas(
            id=f"F0CANVAS{next(self._ids):04d}",
            title=title if isinstance(title, str) and title else "Untitled",
            markdown=markdown,
            channel_id=channel_id,
            is_channel_canvas=is_channel_canvas,
            history=[markdown],
        )
        self._canvases[canvas.id] = canvas
        return canvas

    def _channel(self, channel_id: Any, *, by_name: bool = False) -> Channel:
        channel = self._channels.get(str(channel_id))
        if channel is None and by_name:
            # Slack accepts channel names in place of ids for chat methods.
            name = str(channel_id).lstrip("#")
            channel = next((c for c in self._channels.values() if c.name == name), None)
        if channel is None:
            raise _ApiError("channel_not_found")
        return channel

    def _canvas(self, params: dict[str, Any]) -> Canvas:
        canvas = self._canvases.get(str(_required(params, "canvas_id")))
        if canvas is None or canvas.deleted:
            raise _ApiError("canvas_not_found")
        return canvas

    def _canvases_create(self, params: dict[str, Any]) -> dict[str, Any]:
        channel_id = params.get("channel_id")
        if channel_id:
            channel_id = self._channel(channel_id).id
        canvas = self._new_canvas(
            params, channel_id=channel_id or None, is_channel_canvas=False
        )
        return {"ok": True, "canvas_id": canvas.id}

    def _conversations_canvases_create(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(_required(params, "channel_id"))
        if channel.canvas_id is not None:
            raise _ApiError("channel_canvas_already_exists")
        canvas = self._new_canvas(params, channel_id=channel.id, is_channel_canvas=True)
        channel.canvas_id = canvas.id
        return {"ok": True, "canvas_id": canvas.id}

    async def _canvases_edit(self, params: dict[str, Any]) -> dict[str, Any]:
        # Validate and mark the canvas busy, hold for the configured duration
        # (without the lock), then apply. A second edit arriving meanwhile is
        # rejected with canvas_editing_locked.
        with self._lock:
            canvas = self._canvas(params)
            change = self._single_change(params)
            self._apply_change(copy.deepcopy(canvas), change)  # validate only
            if canvas.id in self._editing:
                raise _ApiError("canvas_editing_locked")
            duration = self._edit_duration
            if duration > 0:
                self._editing.add(canvas.id)
        if duration > 0:
            try:
                await self._sleep(duration)
            finally:
                with self._lock:
                    self._editing.discard(canvas.id)
        with self._lock:
            self._apply_change(self._canvas(params), change)
        return {"ok": True}

    def _single_change(self, params: dict[str, Any]) -> dict[str, Any]:
        changes = _required(params, "changes")
        if not isinstance(changes, list) or not changes:
            raise _invalid_arguments(
                "must provide at least 1 items [json-pointer:/changes]"
            )
        if len(changes) > 1:
            raise _invalid_arguments(
                "no more than 1 items allowed [json-pointer:/changes]"
            )
        change = changes[0]
        if not isinstance(change, dict):
            raise _invalid_arguments("must be an object [json-pointer:/changes/0]")
        operation = change.get("operation")
        if operation not in _CANVAS_OPERATIONS:
            raise _invalid_arguments(
                f"invalid operation {operation!r} [json-pointer:/changes/0/operation]"
            )
        return change

    def _apply_change(self, canvas: Canvas, change: dict[str, Any]) -> None:
        operation = change["operation"]
        if operation == "rename":
            if "section_id" in change:
                raise _invalid_arguments(
                    "rename takes no section_id [json-pointer:/changes/0/section_id]"
                )
            title = _markdown_of(
                change.get("title_content"), "/changes/0/title_content"
            )
            canvas.title = title
            return
        if change.get("section_id") is not None or operation in (
            "insert_after",
            "insert_before",
            "delete",
        ):
            self._section_edit(change)

        markdown = _markdown_of(
            change.get("document_content"), "/changes/0/document_content"
        )
        if len(markdown) > MAX_CANVAS_MARKDOWN_CHARS:
            raise _ApiError("canvas_too_large")
        if operation == "replace":
            if not markdown.strip():
                # NOTE: Slack is reported to reject an empty whole replace; the
                # error code here is our guess.
                raise _ApiError(
                    "canvas_editing_failed",
                    detail="'content' error: a whole-canvas replace needs content",
                )
            result = markdown
        elif operation == "insert_at_start":
            result = _join_markdown(markdown, canvas.markdown)
        else:
            result = _join_markdown(canvas.markdown, markdown)
        if len(result) > MAX_CANVAS_MARKDOWN_CHARS:
            raise _ApiError("canvas_too_large")
        canvas.markdown = result
        canvas.history.append(result)

    def _section_edit(self, change: dict[str, Any]) -> None:
        # NOTE: the fake does not model canvas sections, so section edits fail
        # loudly rather than pretend; whole-canvas edits are what EPMPulse uses.
        if change.get("section_id") is None:
            raise _invalid_arguments(
                f"{change['operation']} needs section_id "
                "[json-pointer:/changes/0/section_id]"
            )
        raise _ApiError(
            "canvas_editing_failed",
            detail="fake Slack does not model canvas sections",
        )

    def _canvases_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        canvas = self._canvas(params)
        canvas.deleted = True
        for channel in self._channels.values():
            if channel.canvas_id == canvas.id:
                channel.canvas_id = None
        return {"ok": True}

    def _canvases_access_set(self, params: dict[str, Any]) -> dict[str, Any]:
        canvas = self._canvas(params)
        level = _required(params, "access_level")
        if level not in ("read", "write", "owner"):
            raise _invalid_arguments(f"invalid access_level {level!r}")
        channel_ids = _id_list(params.get("channel_ids"))
        user_ids = _id_list(params.get("user_ids"))
        if bool(channel_ids) == bool(user_ids):
            raise _ApiError("invalid_parameters")
        for channel_id in channel_ids:
            self._channel(channel_id)
        canvas.access.append(
            {"access_level": level, "channel_ids": channel_ids, "user_ids": user_ids}
        )
        return {"ok": True}

    def _canvases_get_content(self, params: dict[str, Any]) -> dict[str, Any]:
        canvas = self._canvas(params)
        content_type = params.get("content_type") or "markdown"
        if content_type == "markdown":
            return {"ok": True, "content": canvas.markdown}
        if content_type == "html":
            # NOTE: a placeholder, because the fake does not model Slack's HTML.
            return {"ok": True, "content": f"<pre>{html.escape(canvas.markdown)}</pre>"}
        raise _invalid_arguments(f"invalid content_type {content_type!r}")

    def _canvases_sections_lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        self._canvas(params)
        raise _ApiError(
            "internal_error", detail="fake Slack does not model canvas sections"
        )

    # Conversations, views and messages.

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(_required(params, "channel"))
        channel = self._channels.get(channel_id)
        if channel is None:
            raise _ApiError("channel_not_found")
        scope = "groups:read" if channel.is_private else "channels:read"
        if scope not in self.scopes:
            raise _ApiError(
                "missing_scope", needed=scope, provided=",".join(self.scopes)
            )
        if channel.is_private and not channel.is_member:
            raise _ApiError("channel_not_found")
        info: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_private": channel.is_private,
            "is_archived": False,
            "is_member": channel.is_member,
            "context_team_id": self.team_id,
            "properties": {},
        }
        if channel.canvas_id is not None:
            canvas = self._canvases[channel.canvas_id]
            info["properties"]["canvas"] = {
                "file_id": canvas.id,
                "is_empty": not canvas.markdown,
                "quip_thread_id": f"quip-{canvas.id}",
            }
        return {"ok": True, "channel": info}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(params, "user_id")
        if not isinstance(user_id, str) or not _USER_ID_PATTERN.match(user_id):
            raise _invalid_arguments("invalid `user_id`")
        view = _required(params, "view")
        if not isinstance(view, dict):
            raise _invalid_arguments("must be an object [json-pointer:/view]")
        if len(json.dumps(view).encode()) > MAX_VIEW_JSON_BYTES:
            raise _ApiError("view_too_large")

        problems: list[str] = []
        if view.get("type") != "home":
            problems.append("must be home [json-pointer:/view/type]")
        problems += check_blocks(view.get("blocks"), "/view/blocks", MAX_HOME_BLOCKS)
        for name, limit in (
            ("private_metadata", MAX_PRIVATE_METADATA_CHARS),
            ("callback_id", MAX_CALLBACK_ID_CHARS),
        ):
            value = view.get(name)
            if isinstance(value, str) and len(value) > limit:
                problems.append(
                    f"must be less than {limit + 1} characters "
                    f"[json-pointer:/view/{name}]"
                )
        if problems:
            raise _invalid_arguments(*problems)

        history = self._views.setdefault(user_id, [])
        expected_hash = params.get("hash")
        if expected_hash and history and history[-1]["hash"] != expected_hash:
            raise _ApiError("hash_conflict")
        number = next(self._ids)
        published = {
            "id": f"V0HOME{number:04d}",
            "team_id": self.team_id,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{number:08x}",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": f"V0HOME{number:04d}",
            "app_id": self.api_app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        history.append(published)
        return {"ok": True, "view": published}

    def _next_ts(self) -> str:
        # Unique and increasing, like Slack's "<seconds>.<microseconds>" ts.
        self._ts_micros += 100
        seconds, micros = divmod(self._ts_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _check_message_content(self, params: dict[str, Any]) -> None:
        text = params.get("text")
        blocks = params.get("blocks")
        if not text and not blocks:
            raise _ApiError("no_text")
        if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT_CHARS:
            raise _ApiError("msg_too_long")
        if blocks is not None:
            problems = check_blocks(blocks, "/blocks", MAX_MESSAGE_BLOCKS)
            if problems:
                raise _ApiError(
                    "invalid_blocks",
                    errors=problems,
                    response_metadata={
                        "messages": [f"[ERROR] {line}" for line in problems]
                    },
                )

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(_required_channel(params), by_name=True)
        # chat:write.public lets a bot post in public channels it has not joined.
        may_post_outside = not channel.is_private and "chat:write.public" in self.scopes
        if not channel.is_member and not may_post_outside:
            raise _ApiError("not_in_channel")
        self._check_message_content(params)

        thread_ts = params.get("thread_ts")
        message = Message(
            channel=channel.id,
            ts=self._next_ts(),
            text=str(params.get("text") or ""),
            blocks=params.get("blocks"),
            thread_ts=str(thread_ts) if thread_ts else None,
            reply_broadcast=_flag(params.get("reply_broadcast")),
        )
        if message.thread_ts is None:
            self._messages[channel.id].append(message)
        else:
            # Slack accepts a thread_ts that matches no message, but the reply
            # then shows up nowhere.
            # A thread_ts naming a reply puts the new reply in that reply's thread.
            found = self._locate(channel.id, message.thread_ts)
            if found is None:
                self._orphan_replies.append(message)
            else:
                parent = found[0]
                message.thread_ts = parent.ts
                parent.replies.append(message)
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "message": message.to_api(),
        }

    def _locate(self, channel_id: str, ts: str) -> tuple[Message, Message] | None:
        """Find the message with ``ts`` and the top-level message of its thread."""
        for parent in self._messages.get(channel_id, []):
            if parent.ts == ts:
                return parent, parent
            for reply in parent.replies:
                if reply.ts == ts:
                    return parent, reply
        return None

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(_required_channel(params), by_name=True)
        ts = str(_required(params, "ts"))
        found = self._locate(channel.id, ts)
        if found is None:
            raise _ApiError("message_not_found")
        message = found[1]
        self._check_message_content(params)
        message.edits.append({"text": message.text, "blocks": message.blocks})
        if "text" in params:
            message.text = str(params["text"] or "")
        if "blocks" in params:
            message.blocks = params["blocks"]
        return {
            "ok": True,
            "channel": channel.id,
            "ts": ts,
            "text": message.text,
            "message": message.to_api(),
        }


def _required_channel(params: Mapping[str, Any]) -> Any:
    # Slack returns channel_not_found, not invalid_arguments, for a missing channel.
    channel = params.get("channel")
    if not channel:
        raise _ApiError("channel_not_found")
    return channel


def _id_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [item for item in value.split(",") if item]
    return [str(item) for item in value]


def _join_markdown(first: str, second: str) -> str:
    if not first:
        return second
    if not second:
        return first
    separator = "" if first.endswith("\n") else "\n"
    return f"{first}{separator}{second}"


def _evaluate(predicate: Callable[[], T]) -> T | None:
    try:
        return predicate()
    except LookupError:
        return None
