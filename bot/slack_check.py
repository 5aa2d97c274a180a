"""``epmpulse check-config --slack``: ask Slack whether the configuration works.

Each problem comes with its fix. The checks:

- the bot token (``auth.test``);
- the granted bot scopes (``X-OAuth-Scopes``) against the manifest's scopes;
- in Socket Mode, the app-level token (``apps.connections.open``, which only
  returns a URL and opens no connection);
- each board's channel: it exists, is not archived and has the bot as a member;
- each configured canvas (``canvases.getContent``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config_check import Problem
from bot.manifest import BOT_SCOPES
from bot.settings import Settings

_TOKEN_FIXES = {
    "invalid_auth": "copy the Bot User OAuth Token (xoxb-...) again from the app's "
    "OAuth & Permissions page",
    "not_authed": "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...)",
    "token_revoked": "the app was uninstalled or the token revoked: reinstall the "
    "app and copy the new Bot User OAuth Token",
    "account_inactive": "the app was uninstalled or the token revoked: reinstall "
    "the app and copy the new Bot User OAuth Token",
    "not_allowed_token_type": "SLACK_BOT_TOKEN must be the Bot User OAuth Token "
    "(xoxb-...), not a user or app-level token",
}


class _Unreachable(Exception):
    pass


async def check_slack(settings: Settings) -> list[Problem]:
    """Return the problems Slack reports for ``settings``; empty when all is well."""
    from bot.service import build_slack_client

    if settings.slack_bot_token is None:
        return [
            Problem(
                "error",
                "SLACK_BOT_TOKEN",
                "missing: --slack needs the Bot User OAuth Token (xoxb-...) from the "
                "app's OAuth & Permissions page",
            )
        ]
    client = build_slack_client(settings)
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        code = _code(exc)
        fix = _TOKEN_FIXES.get(code, "check SLACK_BOT_TOKEN")
        return [
            Problem("error", "SLACK_BOT_TOKEN", f"Slack rejected it ({code}): {fix}")
        ]
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [_unreachable(settings, exc)]

    problems = _check_scopes(response.headers)
    bot_name = str(response.get("user") or "epmpulse")
    try:
        problems += await _check_app_token(client, settings)
        problems += await _check_channels(client, settings, bot_name)
        problems += await _check_canvases(client, settings)
    except _Unreachable as exc:
        problems.append(_unreachable(settings, exc.__cause__ or exc))
    return problems


def _unreachable(settings: Settings, exc: BaseException) -> Problem:
    return Problem(
        "error",
        "SLACK_API_URL",
        f"cannot reach Slack at {settings.slack_api_url} ({type(exc).__name__}: "
        f"{exc}): check the network, a proxy, or SLACK_API_URL",
    )


def _code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    status = exc.response.status_code if exc.response is not None else 0
    return f"HTTP {status}"


def _check_scopes(headers: Mapping[str, Any]) -> list[Problem]:
    granted_header = next(
        (value for name, value in headers.items() if name.lower() == "x-oauth-scopes"),
        None,
    )
    if granted_header is None:
        return [
            Problem(
                "warning",
                "Slack app scopes",
                "Slack did not report the granted scopes (no X-OAuth-Scopes "
                "header); compare them with 'epmpulse manifest' by hand",
            )
        ]
    granted = {scope.strip() for scope in str(granted_header).split(",")}
    missing = [scope for scope in BOT_SCOPES if scope not in granted]
    if not missing:
        return []
    needed_for = "; ".join(f"{scope} for {BOT_SCOPES[scope]}" for scope in missing)
    return [
        Problem(
            "error",
            "Slack app scopes",
            f"the bot token lacks {', '.join(missing)} ({needed_for}): add them "
            "under OAuth & Permissions > Bot Token Scopes (or update the app from "
            "'epmpulse manifest'), reinstall the app and copy the new "
            "SLACK_BOT_TOKEN",
        )
    ]


async def _call(
    client: AsyncWebClient, method: str, **kwargs: Any
) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
    """Return (data, None) on success and (None, error code, data) on an API error.

    Raises _Unreachable when Slack cannot be reached.
    """
    try:
        response = await client.api_call(method, **kwargs)
    except SlackApiError as exc:
        data = exc.response.data if exc.response is not None else None
        return None, _code(exc), data if isinstance(data, dict) else {}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _Unreachable() from exc
    data = response.data if isinstance(response.data, dict) else {}
    return data, None, data


async def _check_app_token(client: AsyncWebClient, settings: Settings) -> list[Problem]:
    if settings.slack_app_token is None:
        return []
    token = settings.slack_app_token.get_secret_value()
    # slack_sdk moves a "token" parameter into the Authorization header.
    _, error, _ = await _call(
        client, "apps.connections.open", http_verb="POST", params={"token": token}
    )
    if error is None:
        return []
    fixes = {
        "invalid_auth": "copy it again from Basic Information > App-Level Tokens",
        "not_allowed_token_type": "it must be an app-level token (xapp-...), not "
        "the bot token",
        "token_revoked": "it was revoked: create a new one under Basic Information "
        "> App-Level Tokens with the connections:write scope",
    }
    fix = fixes.get(
        error,
        "check that Socket Mode is on (Settings > Socket Mode) and that the token "
        "has the connections:write scope",
    )
    return [
        Problem(
            "error",
            "SLACK_APP_TOKEN",
            f"Slack rejected it for Socket Mode ({error}): {fix}",
        )
    ]


async def _check_channels(
    client: AsyncWebClient, settings: Settings, bot_name: str
) -> list[Problem]:
    problems: list[Problem] = []
    channels = (
        ("SLACK_MAIN_CHANNEL_ID", settings.slack_main_channel_id),
        ("SLACK_ARCS_CHANNEL_ID", settings.slack_arcs_channel_id),
    )
    for setting, channel_id in channels:
        if channel_id is None:
            continue
        data, error, details = await _call(
            client, "conversations.info", params={"channel": channel_id}
        )
        if error == "missing_scope":
            needed = details.get("needed") or "channels:read"
            problems.append(
                Problem(
                    "error",
                    setting,
                    f"reading channel {channel_id} needs the {needed} scope: add it "
                    "under OAuth & Permissions > Bot Token Scopes and reinstall the "
                    "app",
                )
            )
        elif error == "channel_not_found":
            problems.append(
                Problem(
                    "error",
                    setting,
                    f"channel {channel_id} not found: check the ID (channel details, "
                    "at the bottom of the About tab); a private channel also needs "
                    "the groups:read scope and the bot invited",
                )
            )
        elif error is not None:
            problems.append(
                Problem(
                    "error",
                    setting,
                    f"Slack returned {error} for channel {channel_id}",
                )
            )
        else:
            assert data is not None
            problems += _channel_state(setting, data.get("channel") or {}, bot_name)
    return problems


def _channel_state(
    setting: str, channel: Mapping[str, Any], bot_name: str
) -> list[Problem]:
    name = f"#{channel.get('name')} ({channel.get('id')})"
    if channel.get("is_archived"):
        return [
            Problem(
                "error",
                setting,
                f"channel {name} is archived: unarchive it or choose another channel",
            )
        ]
    if not channel.get("is_member"):
        return [
            Problem(
                "error",
                setting,
                f"the bot is not a member of channel {name}: type "
                f"'/invite @{bot_name}' in the channel",
            )
        ]
    return []


async def _check_canvases(client: AsyncWebClient, settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    canvases = (
        ("SLACK_MAIN_CANVAS_ID", settings.slack_main_canvas_id),
        ("SLACK_ARCS_CANVAS_ID", settings.slack_arcs_canvas_id),
    )
    for setting, canvas_id in canvases:
        if canvas_id is None:
            continue
        _, error, details = await _call(
            client, "canvases.getContent", json={"canvas_id": canvas_id}
        )
        if error is None:
            continue
        if error in ("canvas_not_found", "canvas_deleted"):
            message = (
                f"canvas {canvas_id} not found, or not visible to the bot: check "
                "the ID (the last part of the canvas link), share the canvas with "
                f"the bot, or unset {setting} so EPMPulse creates a channel canvas"
            )
        elif error == "missing_scope":
            needed = details.get("needed") or "canvases:read"
            message = (
                f"reading canvas {canvas_id} needs the {needed} scope: add it under "
                "OAuth & Permissions > Bot Token Scopes and reinstall the app"
            )
        else:
            message = f"Slack returned {error} for canvas {canvas_id}"
        problems.append(Problem("error", setting, message))
    return problems
