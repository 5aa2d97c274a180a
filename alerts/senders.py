"""Outbox senders: Slack's chat.postMessage and chat.update, or the local alerts log."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from alerts.outbox import Blocks, SendError

# Importing any slack_sdk module, even slack_sdk.errors, runs the package's
# __init__, which imports the synchronous WebClient (slack_sdk 3.48). That is slow,
# and local mode never calls Slack.
if TYPE_CHECKING:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

# Slack returns these errors when it is overloaded or briefly failing.
TRANSIENT_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}
# Errors that a person fixes in the settings or in Slack. Until then the message
# waits and is retried slowly.
SETTING_FIXES = {
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "not_authed": "set SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the app and set the new SLACK_BOT_TOKEN",
    "token_expired": "reinstall the app and set the new SLACK_BOT_TOKEN",
    "account_inactive": "reinstall the app and set the new SLACK_BOT_TOKEN",
    "missing_scope": "add the chat:write scope to the app and reinstall it",
    "channel_not_found": "check SLACK_MAIN_CHANNEL_ID and SLACK_ARCS_CHANNEL_ID",
    "not_in_channel": "invite the bot to the channel (/invite @EPMPulse)",
    "is_archived": "unarchive the channel or set another channel ID",
    "restricted_action": "allow the bot to post in the channel",
}


class SlackSender:
    """Posts through a Web API client that has no retry handlers of its own: the
    outbox owns retries, so a restart finds every unsent message in the store."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    @property
    def description(self) -> str:
        return "Slack"

    async def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None
    ) -> str:
        arguments: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if blocks is not None:
            arguments["blocks"] = blocks
        if thread_ts is not None:
            arguments["thread_ts"] = thread_ts
        response = await self._call(self.client.chat_postMessage, arguments)
        return str(response["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> None:
        arguments: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        await self._call(self.client.chat_update, arguments)

    async def _call(
        self, method: Callable[..., Awaitable[Any]], arguments: dict[str, Any]
    ) -> Any:
        from slack_sdk.errors import SlackApiError

        try:
            return await method(**arguments)
        except SlackApiError as exc:
            raise classify(exc) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SendError(
                "retry", f"Slack is unreachable ({type(exc).__name__}: {exc})"
            ) from exc


def classify(exc: SlackApiError) -> SendError:
    """Map a Slack error response to what the outbox does next."""
    response = exc.response
    status = response.status_code if response is not None else 0
    data = response.data if response is not None else None
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    detail = f"Slack answered {code or 'HTTP ' + str(status)}"

    if status == 429 or code == "ratelimited":
        header = response.headers.get("Retry-After") if response is not None else None
        try:
            retry_after = float(header) if header else 1.0
        except ValueError:
            retry_after = 1.0
        return SendError("retry", detail, retry_after=retry_after)
    if status >= 500 or code in TRANSIENT_ERRORS or not code:
        return SendError("retry", detail)
    if code in SETTING_FIXES:
        return SendError("blocked", detail, fix=SETTING_FIXES[code])
    return SendError("drop", detail)


class AlertLogSender:
    """Local mode: appends each message as one fsync'd JSON line to a file.

    Each line has ``at`` (UTC), ``action`` (post, reply or update), ``channel``
    (the board), ``ts`` (an id for replies and edits to refer to), ``thread_ts``,
    ``text`` and ``blocks``.
    """

    def __init__(
        self,
        path: Path,
        run_io: Callable[[Callable[[], Any]], Awaitable[Any]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self.run_io = run_io
        self.clock = clock
        self._last_ts = 0.0

    @property
    def description(self) -> str:
        return f"file {self.path}"

    async def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None
    ) -> str:
        ts = self._next_ts()
        action = "reply" if thread_ts else "post"
        await self._append(action, channel, ts, thread_ts, text, blocks)
        return ts

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> None:
        await self._append("update", channel, ts, None, text, blocks)

    def _next_ts(self) -> str:
        # Increasing like Slack's ts, even when two posts share a microsecond.
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    async def _append(
        self,
        action: str,
        channel: str,
        ts: str,
        thread_ts: str | None,
        text: str,
        blocks: Blocks,
    ) -> None:
        line = {
            "at": self.clock().isoformat(),
            "action": action,
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": text,
            "blocks": blocks,
        }
        text_line = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        payload = text_line.encode() + b"\n"

        def write() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

        try:
            await self.run_io(write)
        except OSError as exc:
            raise SendError("retry", f"cannot append to {self.path}: {exc}") from exc
