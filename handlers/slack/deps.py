"""Interfaces that the Slack listeners get from the rest of EPMPulse at wiring.

The listeners read boards and history and trigger publishes only through these
callables, so they import no publisher and no Slack client of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol

from store.board import BoardView
from store.history import HistoryEvent

Message = dict[str, Any]


class HomeSurface(Protocol):
    def opened(self, user_id: str) -> None:
        """Remember that the user opened the Home tab, so it is kept current."""
        ...

    async def publish(self, user_id: str, notice: str | None = None) -> None:
        """Publish the user's Home tab now; ``notice`` is escaped mrkdwn."""
        ...


@dataclass(frozen=True, slots=True)
class ExtraSubcommand:
    """A ``/epmpulse`` subcommand added by an optional part (e.g. EPM polling).

    ``run(args, user_id)`` returns the reply message (``text`` and ``blocks``).
    """

    name: str
    usage: str
    description: str
    run: Callable[[list[str], str], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class SlackDeps:
    """Callables and settings for the listeners.

    - ``boards(now)`` builds every active board at ``now``.
    - ``read_history(app, domain, limit)`` returns a row's updates, newest first.
    - ``sync_canvases()`` publishes every canvas and returns one result per board.
    - ``canvas_links()`` maps each board to its canvas URL, when that is known.
    - ``banner()`` returns a line for every surface (EPM maintenance), or None.
    """

    boards: Callable[[datetime], list[BoardView]]
    read_history: Callable[[str, str, int], Awaitable[list[HistoryEvent]]]
    sync_canvases: Callable[[], Awaitable[list[dict[str, Any]]]]
    canvas_links: Callable[[], Mapping[str, str]]
    home: HomeSurface
    tz: tzinfo
    banner: Callable[[], str | None] = lambda: None
    extra_subcommands: tuple[ExtraSubcommand, ...] = ()
