"""The ``/epmpulse`` slash command: status, history, sync and help.

The listener acknowledges before it parses anything or touches the store, so it
meets Slack's 3-second deadline however busy the store is. Replies are ephemeral,
through the command's ``response_url``; an unexpected error becomes a short
apology for the user and a traceback in the log.
"""

from __future__ import annotations

import difflib
import logging
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from canvas.command_view import (
    COMMAND,
    error_message,
    help_message,
    history_message,
    status_message,
    sync_message,
    unknown_name_message,
    working_message,
)
from canvas.escape import mrkdwn_text
from handlers.slack.deps import ExtraSubcommand, Message, SlackDeps
from store.board import AppView, BoardView

log = logging.getLogger(__name__)

HISTORY_DEFAULT = 10
HISTORY_MAX = 100


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def on_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        words = split_words(str(command.get("text") or ""))
        subcommand = words[0].lower() if words else "status"
        user_id = str(command.get("user_id") or "")
        try:
            message = await run_subcommand(
                subcommand, words[1:], deps, respond, user_id
            )
        except Exception:
            log.exception("%s %s failed for user %s", COMMAND, subcommand, user_id)
            message = error_message(subcommand)
        await reply(respond, message)

    app.command(COMMAND)(on_command)


def split_words(text: str) -> list[str]:
    """Split like a shell, so ``"Account Reconciliation"`` stays one word; text
    with an unbalanced quote is split on white space instead."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


async def reply(respond: AsyncRespond, message: Message) -> None:
    try:
        await respond(
            text=message["text"],
            blocks=message["blocks"],
            response_type="ephemeral",
        )
    except Exception:
        log.exception("replying to %s through its response_url failed", COMMAND)


async def run_subcommand(
    subcommand: str,
    args: list[str],
    deps: SlackDeps,
    respond: AsyncRespond,
    user_id: str,
) -> Message:
    now = datetime.now(UTC)
    extras = {extra.name: extra for extra in deps.extra_subcommands}
    if subcommand == "status":
        return _status(args, deps, now)
    if subcommand == "history":
        return await _history(args, deps, now)
    if subcommand == "sync":
        await reply(respond, working_message("Publishing every canvas now…"))
        results = await deps.sync_canvases()
        return sync_message(results, deps.canvas_links())
    if subcommand == "help":
        return _help(deps.extra_subcommands)
    if subcommand in extras:
        return await extras[subcommand].run(args, user_id)
    shown = mrkdwn_text(subcommand, 40)
    return _help(deps.extra_subcommands, f"Unknown subcommand `{shown}`.")


def _help(extras: Sequence[ExtraSubcommand], problem: str | None = None) -> Message:
    return help_message(problem, [(extra.usage, extra.description) for extra in extras])


def _status(args: list[str], deps: SlackDeps, now: datetime) -> Message:
    boards = deps.boards(now)
    if not args:
        return status_message(boards, tz=deps.tz, now=now, banner=deps.banner())
    apps = _apps(boards)
    wanted = " ".join(args)
    found = find_app(wanted, apps)
    if found is None:
        return _unknown("app", wanted, [app.name for app in apps])
    return status_message(
        boards, tz=deps.tz, now=now, app=found.name, banner=deps.banner()
    )


async def _history(args: list[str], deps: SlackDeps, now: datetime) -> Message:
    if len(args) < 2 or len(args) > 3:
        return _help(
            deps.extra_subcommands,
            f"`history` needs an app and a domain, and optionally a count: "
            f"`{COMMAND} history Planning Actual 20`.",
        )
    limit = HISTORY_DEFAULT
    if len(args) == 3:
        parsed = _count(args[2])
        if parsed is None:
            shown = mrkdwn_text(args[2], 20)
            return _help(
                deps.extra_subcommands,
                f"`{shown}` is not a count: use a whole number from 1 to "
                f"{HISTORY_MAX}.",
            )
        limit = parsed

    apps = _apps(deps.boards(now))
    app = find_app(args[0], apps)
    if app is None:
        return _unknown("app", args[0], [view.name for view in apps])
    domains = [row.domain for row in app.rows]
    domain = find_name(args[1], domains)
    if domain is None:
        return _unknown("domain", args[1], domains)

    events = await deps.read_history(app.name, domain, limit)
    return history_message(app.title, domain, events, limit=limit, tz=deps.tz, now=now)


def _count(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 1 <= value <= HISTORY_MAX else None


def _apps(boards: Sequence[BoardView]) -> list[AppView]:
    return [app for board in boards for app in board.apps]


def find_app(query: str, apps: Sequence[AppView]) -> AppView | None:
    """Find an app by name or display name, ignoring case."""
    wanted = query.casefold()
    for app in apps:
        if wanted in (app.name.casefold(), app.title.casefold()):
            return app
    return None


def find_name(query: str, names: Sequence[str]) -> str | None:
    wanted = query.casefold()
    return next((name for name in names if name.casefold() == wanted), None)


def close_match(query: str, names: Sequence[str]) -> str | None:
    """Return the known name closest to ``query`` (ignoring case), if any is close."""
    by_folded = {name.casefold(): name for name in names}
    matches = difflib.get_close_matches(query.casefold(), list(by_folded), n=1)
    return by_folded[matches[0]] if matches else None


def _unknown(kind: str, name: str, known: list[str]) -> Message:
    return unknown_name_message(kind, name, known, close_match(name, known))
