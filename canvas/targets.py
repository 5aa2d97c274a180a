"""Publish targets of a board: a Slack canvas, or a markdown file in local mode."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from canvas.publisher import PublishError
from store.files import ensure_private_dir, write_atomic
from store.store import DATA_DIR_MODE, DATA_FILE_MODE

# Importing any slack_sdk module runs the package's __init__, which imports the
# synchronous WebClient (slack_sdk 3.48). That is slow, and local mode publishes to
# files only, so SlackCanvasTarget imports SlackApiError in the methods that catch it.
if TYPE_CHECKING:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# Slack returns these while an edit is under way or the API is overloaded, so they
# are worth a retry. Everything else is logged and retried later with a longer backoff.
RETRYABLE_ERRORS = {
    "canvas_editing_locked",
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


class MetaStore(Protocol):
    def get_meta(self, key: str, default: Any = None) -> Any: ...

    async def set_meta(self, key: str, value: Any) -> None: ...


class FileTarget:
    """Writes ``<data dir>/canvas/<board>.md`` atomically on the store's I/O thread."""

    def __init__(
        self,
        path: Path,
        run_io: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        self.path = path
        self.run_io = run_io

    @property
    def description(self) -> str:
        return f"file {self.path}"

    async def publish(self, markdown: str) -> str:
        def write() -> None:
            ensure_private_dir(self.path.parent, DATA_DIR_MODE)
            write_atomic(self.path, markdown.encode(), DATA_FILE_MODE)

        try:
            await self.run_io(write)
        except OSError as exc:
            raise PublishError(f"cannot write {self.path}: {exc}") from exc
        return str(self.path)


class SlackCanvasTarget:
    """Replaces the whole canvas with one ``canvases.edit`` per publish.

    Without a canvas id, the board's channel gets a channel canvas
    (``conversations.canvases.create``) and its id is stored, so later publishes
    edit it. A channel that already has a canvas gives its id through
    ``conversations.info``.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        board: str,
        meta: MetaStore,
        *,
        channel_id: str | None,
        canvas_id: str | None,
        title: str,
    ) -> None:
        self.client = client
        self.board = board
        self.meta = meta
        self.channel_id = channel_id
        self.configured_canvas_id = canvas_id
        self.title = title

    @property
    def meta_key(self) -> str:
        return f"canvas_id:{self.board}"

    @property
    def canvas_id(self) -> str | None:
        return self.configured_canvas_id or self.meta.get_meta(self.meta_key)

    @property
    def description(self) -> str:
        if self.canvas_id:
            return f"canvas {self.canvas_id}"
        return f"a new canvas in channel {self.channel_id}"

    async def publish(self, markdown: str) -> str:
        from slack_sdk.errors import SlackApiError

        content = {"type": "markdown", "markdown": markdown}
        try:
            canvas_id = self.canvas_id
            if canvas_id is None:
                return await self._create(content)
            try:
                await self.client.canvases_edit(
                    canvas_id=canvas_id,
                    changes=[{"operation": "replace", "document_content": content}],
                )
            except SlackApiError as exc:
                if _error_code(exc) != "canvas_not_found" or self.channel_id is None:
                    raise
                if self.configured_canvas_id is not None:
                    raise
                log.warning(
                    "canvas %s of board %s is gone; creating a new one",
                    canvas_id,
                    self.board,
                )
                return await self._create(content)
            return canvas_id
        except SlackApiError as exc:
            raise _publish_error(exc, self.description) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PublishError(
                f"Slack is unreachable ({type(exc).__name__}: {exc})"
            ) from exc

    async def _create(self, content: dict[str, str]) -> str:
        if self.channel_id is None:
            response = await self.client.canvases_create(
                title=self.title, document_content=content
            )
            canvas_id = str(response["canvas_id"])
        else:
            canvas_id = await self._create_channel_canvas(content)
        await self.meta.set_meta(self.meta_key, canvas_id)
        log.info("board %s now publishes to canvas %s", self.board, canvas_id)
        return canvas_id

    async def _create_channel_canvas(self, content: dict[str, str]) -> str:
        from slack_sdk.errors import SlackApiError

        assert self.channel_id is not None
        try:
            response = await self.client.conversations_canvases_create(
                channel_id=self.channel_id, document_content=content
            )
            return str(response["canvas_id"])
        except SlackApiError as exc:
            if _error_code(exc) != "channel_canvas_already_exists":
                raise
        info = await self.client.conversations_info(channel=self.channel_id)
        canvas = (info.get("channel") or {}).get("properties", {}).get("canvas", {})
        canvas_id = canvas.get("file_id")
        if not canvas_id:
            raise PublishError(
                f"channel {self.channel_id} already has a canvas but Slack did not "
                "return its id; set the canvas id in the board's _CANVAS_ID setting"
            )
        await self.client.canvases_edit(
            canvas_id=canvas_id,
            changes=[{"operation": "replace", "document_content": content}],
        )
        return str(canvas_id)


def _error_code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict):
        return str(data.get("error", ""))
    return ""


def _publish_error(exc: SlackApiError, where: str) -> PublishError:
    status = exc.response.status_code if exc.response is not None else 0
    code = _error_code(exc) or f"HTTP {status}"
    retry_after: float | None = None
    if exc.response is not None:
        header = exc.response.headers.get("Retry-After") or exc.response.headers.get(
            "retry-after"
        )
        if header:
            try:
                retry_after = float(header)
            except (TypeError, ValueError):
                retry_after = None
    if code == "canvas_editing_locked" and retry_after is None:
        retry_after = 1.0
    if code in RETRYABLE_ERRORS or status >= 500 or status == 429:
        return PublishError(f"{where}: Slack returned {code}", retry_after)
    return PublishError(f"{where}: Slack returned {code}{_fix_for(code)}", retry_after)


def _fix_for(code: str) -> str:
    fixes = {
        "invalid_auth": " (check SLACK_BOT_TOKEN)",
        "not_authed": " (set SLACK_BOT_TOKEN)",
        "missing_scope": " (add canvases:write to the app and reinstall it)",
        "canvas_not_found": " (check the board's _CANVAS_ID setting, or unset it so "
        "EPMPulse creates a channel canvas)",
        "channel_not_found": " (check the board's _CHANNEL_ID setting)",
        "not_in_channel": " (invite the bot to the channel)",
        "canvas_too_large": " (the board is too large for one canvas)",
    }
    return fixes.get(code, "")
