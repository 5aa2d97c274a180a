"""The App Home tab: publish it whenever a user opens it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from canvas.home_publisher import HomePublishError
from handlers.slack.deps import SlackDeps

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def on_home_opened(ack: AsyncAck, event: dict[str, Any]) -> None:
        await ack()
        user_id = event.get("user")
        # The event also fires for the Messages tab, which EPMPulse does not use.
        if event.get("tab") != "home" or not isinstance(user_id, str):
            return
        deps.home.opened(user_id)
        await publish_home(deps, user_id)

    app.event("app_home_opened")(on_home_opened)


async def publish_home(
    deps: SlackDeps, user_id: str, notice: str | None = None
) -> None:
    """Publish a Home tab and log, not raise, a failure: a Home tab event or click
    has nowhere to show an error but the log."""
    try:
        await deps.home.publish(user_id, notice)
    except HomePublishError as exc:
        log.warning("%s", exc)
    except Exception:
        log.exception("publishing the Home tab of user %s failed", user_id)
