"""Render the App Home tab from board views. Pure: same input, same view.

Slack limits a Home tab to 100 blocks, a section to 3,000 characters and a header
to 150, and rejects a view over 250 kB (``view_too_large``). A board too large for
that is summarised (see ``canvas.blocks.layout_apps``) instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from canvas.blocks import (
    Block,
    BlockBudget,
    apps_failures_first,
    button,
    context,
    divider,
    header,
    last_update_line,
    layout_apps,
    section,
    status_counts,
)
from store.board import BoardView

MAX_HOME_BLOCKS = 100
# Slack rejects views over 250 kB; the margin covers the view's other fields.
MAX_HOME_BYTES = 240_000

CALLBACK_ID = "epmpulse_home"
ACTIONS_BLOCK_ID = "epmpulse_home_actions"
ACTION_REFRESH = "epmpulse_home_refresh"
ACTION_SYNC = "epmpulse_home_sync"
# One link button per board: the action id is this prefix plus the board name.
ACTION_OPEN_CANVAS_PREFIX = "epmpulse_home_open_canvas_"

TOO_LARGE_NOTE = (
    "The board is too large for the Home tab, so it shows failed, stuck and "
    "running jobs one by one and the other apps one line each. The canvas has "
    "every row."
)


@dataclass(frozen=True, slots=True)
class CanvasLink:
    """A board's canvas as a link: ``<workspace url>docs/<team id>/<canvas id>``."""

    board: str
    title: str
    url: str


def canvas_url(workspace_url: str, team_id: str, canvas_id: str) -> str:
    base = workspace_url if workspace_url.endswith("/") else workspace_url + "/"
    return f"{base}docs/{team_id}/{canvas_id}"


def render_home(
    boards: Sequence[BoardView],
    *,
    tz: tzinfo,
    now: datetime,
    links: Sequence[CanvasLink] = (),
    notice: str | None = None,
    banner: str | None = None,
) -> dict[str, Any]:
    """Build the Home tab view for ``views.publish``.

    ``banner`` (e.g. an EPM maintenance line) and ``notice`` (e.g. the result of
    a Sync click) are mrkdwn that the caller has escaped; both show under the
    summary.
    """
    rows = [row for board in boards for row in board.rows()]
    top: list[Block] = [
        header("EPM job status"),
        context(last_update_line(boards, tz, now)),
        section(status_counts(rows) if rows else "No rows yet"),
    ]
    top += [section(text) for text in (banner, notice) if text]
    top += [_actions(links), divider()]

    budget = BlockBudget(MAX_HOME_BLOCKS, MAX_HOME_BYTES)
    budget.take(top)
    apps = layout_apps(
        apps_failures_first(boards), budget, tz, now, too_large_note=TOO_LARGE_NOTE
    )
    return {"type": "home", "callback_id": CALLBACK_ID, "blocks": top + apps}


def _actions(links: Sequence[CanvasLink]) -> Block:
    elements = [
        button(ACTION_REFRESH, "Refresh", value="refresh"),
        button(ACTION_SYNC, "Sync canvases", value="sync", style="primary"),
    ]
    elements += [
        button(
            ACTION_OPEN_CANVAS_PREFIX + link.board,
            f"Open {link.title}",
            value=link.board,
            url=link.url,
        )
        for link in links
    ]
    return {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements}
