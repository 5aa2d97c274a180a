"""Builders for the payloads Slack sends to an app, and HTTP-mode request helpers.

Field names follow what Slack sends: slash commands arrive as flat string fields
(form-encoded over HTTP), events as an ``event_callback`` JSON object, and
interactive payloads (``block_actions``) as JSON in a ``payload`` form field. In
Socket Mode the same dicts travel as the ``payload`` of an envelope.

Usage::

    cmd = slash_command("status FCCS", response_url=slack.response_url("status"))
    ack = await slack.socket_mode.send_envelope("slash_commands", cmd)

    body = slash_command_body(cmd)                  # HTTP mode
    headers = signed_request(body, "signing-secret")
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

# IDs shared by the fakes and the builders, so that payloads and the fake
# workspace agree without every test passing them around.
TEAM_ID = "T0EPMTEAM1"
TEAM_DOMAIN = "epmpulse-test"
TEAM_NAME = "EPMPulse Test"
API_APP_ID = "A0EPMPULSE"
BOT_USER_ID = "U0EPMBOT01"
BOT_ID = "B0EPMBOT01"
BOT_NAME = "epmpulse"
USER_ID = "U0EPMUSER1"
USER_NAME = "pat.doe"
MAIN_CHANNEL_ID = "C0MAIN00001"
ARCS_CHANNEL_ID = "C0ARCS00001"
HOME_CHANNEL_ID = "D0EPMHOME1"
# The deprecated verification token that Slack still puts in payloads.
VERIFICATION_TOKEN = "fake-verification-token"

_sequence = itertools.count(1)


def _trigger_id() -> str:
    # Slack trigger ids look like "<digits>.<digits>.<hex>".
    return f"{int(time.time())}{next(_sequence):04d}.4242424242.{uuid.uuid4().hex}"


def _event_id() -> str:
    return f"Ev0EPM{next(_sequence):06d}"


def slash_command(
    text: str = "",
    *,
    response_url: str,
    command: str = "/epmpulse",
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    channel_id: str = MAIN_CHANNEL_ID,
    channel_name: str = "main",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """Build a slash command payload: every value is a string, as in the form body.

    ``response_url`` has no default so that no test posts to a real Slack host;
    pass ``FakeSlack.response_url(name)``.
    """
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def home_view(
    blocks: Sequence[Mapping[str, Any]] = (),
    *,
    view_id: str = "V0EPMHOME1",
    view_hash: str = "1700000000.0a1b2c3d",
    team_id: str = TEAM_ID,
    app_id: str = API_APP_ID,
    bot_id: str = BOT_ID,
    private_metadata: str = "",
    callback_id: str = "",
) -> dict[str, Any]:
    """Build a published Home tab view as Slack echoes it back in payloads."""
    return {
        "id": view_id,
        "team_id": team_id,
        "type": "home",
        "blocks": [dict(block) for block in blocks],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": {}},
        "hash": view_hash,
        "title": {"type": "plain_text", "text": "View Title", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": app_id,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": bot_id,
    }


def app_home_opened(
    user_id: str = USER_ID,
    *,
    tab: str = "home",
    view: Mapping[str, Any] | None = None,
    channel: str = HOME_CHANNEL_ID,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    event_time: int | None = None,
) -> dict[str, Any]:
    """Build the ``event_callback`` for ``app_home_opened``.

    Slack includes ``event.view`` only after a Home view was published for the
    user, so leave ``view`` as None for a first visit.
    """
    now = time.time()
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel,
        "tab": tab,
        "event_ts": f"{now:.6f}",
    }
    if view is not None:
        event["view"] = dict(view)
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or _event_id(),
        "event_time": event_time if event_time is not None else int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-eyJldCI6ImFwcF9ob21lX29wZW5lZCJ9-{team_id}",
    }


def block_actions(
    action_id: str,
    *,
    value: str | None = None,
    block_id: str = "epmpulse_home_actions",
    button_text: str = "Refresh",
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    view: Mapping[str, Any] | None = None,
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """Build a ``block_actions`` payload for a button clicked on the Home tab.

    A Home tab click carries the view (type ``home``) and a ``view`` container, and
    no ``response_url``, ``channel`` or ``message``: a handler must reply through
    ``views.publish`` or ``chat.postMessage``.
    """
    home = dict(view) if view is not None else home_view(team_id=team_id)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": button_text, "emoji": True},
        "type": "button",
        "action_ts": f"{time.time():.6f}",
    }
    if value is not None:
        action["value"] = value
    return {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": user_name,
            "name": user_name,
            "team_id": team_id,
        },
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": home["id"]},
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": home,
        "actions": [action],
        "state": {"values": {}},
    }


def url_verification(challenge: str = "fake-challenge") -> dict[str, str]:
    """Build the Events API handshake Slack posts when a request URL is saved."""
    return {
        "token": VERIFICATION_TOKEN,
        "challenge": challenge,
        "type": "url_verification",
    }


# HTTP mode: bodies and signatures.


def form_body(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode()


def slash_command_body(payload: Mapping[str, str]) -> bytes:
    """Encode a slash command as Slack posts it: a form-encoded body."""
    return form_body(payload)


def interactive_body(payload: Mapping[str, Any]) -> bytes:
    """Encode an interactive payload as Slack posts it: one ``payload`` form field."""
    return form_body({"payload": json.dumps(payload)})


def event_body(payload: Mapping[str, Any]) -> bytes:
    """Encode an Events API payload as Slack posts it: a JSON body."""
    return json.dumps(payload).encode()


def signed_request(
    body: bytes,
    signing_secret: str,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """Return the headers Slack sends with ``body``, signed with ``signing_secret``.

    The signature is ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``, made by
    ``slack_sdk.signature.SignatureVerifier``. ``timestamp`` defaults to now;
    Bolt rejects timestamps more than five minutes old. Without ``content_type``
    the header is chosen from the body: JSON for ``{``, otherwise form encoding.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(
        timestamp=ts, body=body
    )
    # generate_signature returns None only when the timestamp is None.
    assert signature is not None
    if content_type is None:
        if body.lstrip().startswith(b"{"):
            content_type = "application/json"
        else:
            content_type = "application/x-www-form-urlencoded"
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }
