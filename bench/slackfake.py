"""The fake Slack Web API from the test suite, as a target for the server."""

from __future__ import annotations

import importlib.util

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID

SIGNING_SECRET = "bench-signing-secret-0123456789"


def slack_app_available() -> bool:
    """True once the product has its Slack app (slash command, App Home)."""
    return importlib.util.find_spec("bot.slack_app") is not None


def slack_env(fake: FakeSlack, *, http_mode: bool) -> dict[str, str]:
    """Settings that point the server at ``fake``, with one board (main).

    ``http_mode`` adds a signing secret, which turns on Slack's HTTP mode: the
    slash command arrives as a signed POST on the server's own port.
    """
    env = {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_API_URL": fake.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
    }
    if http_mode:
        env["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
    return env
