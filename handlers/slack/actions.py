"""Buttons of the App Home tab: Refresh, Sync canvases and the canvas links.

A Home tab click carries no ``response_url`` and no channel, so each result shows
in the Home tab itself.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from canvas.command_view import sync_notice
from canvas.home import ACTION_OPEN_CANVAS_PREFIX, ACTION_REFRESH, ACTION_SYNC
from handlers.slack.deps import SlackDeps
from handlers.slack.home import publish_home

log = logging.getLogger(__name__)

SYNC_STARTED_NOTICE = ":hourglass_flowing_sand: Publishing every canvas now…"
SYNC_FAILED_NOTICE = (
    ":warning: Sync failed because of an internal error. The EPMPulse server log "
    "has the details."
)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def on_refresh(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user_id = _user_id(body)
        if user_id is None:
            return
        deps.home.opened(user_id)
        await publish_home(deps, user_id)

    async def on_sync(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user_id = _user_id(body)
        if user_id is None:
            return
        deps.home.opened(user_id)
        await publish_home(deps, user_id, SYNC_STARTED_NOTICE)
        try:
            results = await deps.sync_canvases()
        except Exception:
            log.exception("Sync canvases from the Home tab of user %s failed", user_id)
            await publish_home(deps, user_id, SYNC_FAILED_NOTICE)
            return
        now = datetime.now(UTC)
        notice = sync_notice(results, deps.canvas_links(), tz=deps.tz, now=now)
        await publish_home(deps, user_id, notice)

    async def on_open_canvas(ack: AsyncAck) -> None:
        # Slack opens the URL itself; the click still has to be acknowledged.
        await ack()

    app.action(ACTION_REFRESH)(on_refresh)
    app.action(ACTION_SYNC)(on_sync)
    app.action(re.compile("^" + re.escape(ACTION_OPEN_CANVAS_PREFIX)))(on_open_canvas)


def _user_id(body: dict[str, Any]) -> str | None:
    user = body.get("user") or {}
    user_id = user.get("id") if isinstance(user, dict) else None
    return user_id if isinstance(user_id, str) else None
