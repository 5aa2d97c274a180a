import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.manifest import BOT_SCOPES, build_manifest, render_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"
HTTP_URL = "https://epmpulse.example.com"
EVENTS_URL = "https://epmpulse.example.com/slack/events"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        pytest.skip(
            f"Slack's manifest JSON schema is not at {SCHEMA_PATH}; put a copy of "
            "manifest.schema.1.0.0.json from slackapi/manifest-schema there to run "
            "the schema checks"
        )
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def schema_errors(schema: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


@pytest.mark.parametrize("http_url", [None, HTTP_URL])
def test_manifest_matches_slack_schema(
    schema: dict[str, Any], http_url: str | None
) -> None:
    assert schema_errors(schema, build_manifest(http_url)) == []


@pytest.mark.parametrize("http_url", [None, HTTP_URL])
def test_rendered_yaml_loads_as_manifest(http_url: str | None) -> None:
    assert yaml.safe_load(render_manifest(http_url)) == build_manifest(http_url)


def test_display_information_within_slack_limits() -> None:
    display = build_manifest()["display_information"]

    assert display["name"] == "EPMPulse"
    assert 1 <= len(display["description"]) <= 140
    assert 175 <= len(display["long_description"]) <= 4000
    # The schema states this pattern under "regex", which jsonschema does not check.
    assert re.fullmatch(
        r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", display["background_color"]
    )


def test_bot_display_name_uses_allowed_characters() -> None:
    display_name = build_manifest()["features"]["bot_user"]["display_name"]

    assert re.fullmatch(r"[a-z0-9._-]{1,80}", display_name)


def test_slash_command_has_usage_hint() -> None:
    (command,) = build_manifest()["features"]["slash_commands"]

    assert command["command"] == "/epmpulse"
    assert command["description"]
    assert command["usage_hint"] == (
        "status [app] | history <app> <domain> [n] | sync | "
        "watch <app> <domain> <job_id> | help"
    )


def test_home_tab_on_and_messages_tab_off() -> None:
    manifest = build_manifest()

    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is False
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == [
        "app_home_opened"
    ]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_bot_scopes_are_the_minimum_set() -> None:
    scopes = build_manifest()["oauth_config"]["scopes"]["bot"]

    assert sorted(scopes) == sorted(
        ["commands", "chat:write", "canvases:write", "canvases:read", "channels:read"]
    )
    assert len(scopes) == len(set(scopes))
    assert "user" not in build_manifest()["oauth_config"]["scopes"]


def test_rendered_scopes_carry_reasons() -> None:
    lines = render_manifest().splitlines()

    for scope, reason in BOT_SCOPES.items():
        assert any(line.strip() == f"- {scope}  # {reason}" for line in lines), scope


def test_socket_mode_manifest_has_no_urls() -> None:
    manifest = build_manifest()
    (command,) = manifest["features"]["slash_commands"]

    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["token_rotation_enabled"] is False
    assert manifest["settings"]["org_deploy_enabled"] is False
    assert "url" not in command
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "request_url" not in manifest["settings"]["interactivity"]


def test_http_manifest_points_at_slack_events() -> None:
    manifest = build_manifest(HTTP_URL)
    (command,) = manifest["features"]["slash_commands"]

    assert manifest["settings"]["socket_mode_enabled"] is False
    assert command["url"] == EVENTS_URL
    assert manifest["settings"]["event_subscriptions"]["request_url"] == EVENTS_URL
    assert manifest["settings"]["interactivity"]["request_url"] == EVENTS_URL


def test_http_url_keeps_port_and_drops_trailing_slash() -> None:
    manifest = build_manifest("https://epmpulse.example.com:8443/")

    assert manifest["settings"]["interactivity"]["request_url"] == (
        "https://epmpulse.example.com:8443/slack/events"
    )


@pytest.mark.parametrize(
    ("http_url", "problem"),
    [
        ("http://epmpulse.example.com", "only to https"),
        ("ftp://epmpulse.example.com", "only to https"),
        ("epmpulse.example.com", "scheme is missing"),
        ("", "scheme is missing"),
        ("https://", "host name is missing"),
        ("https://epmpulse.example.com/slack/events", "path, query or fragment"),
        ("https://epmpulse.example.com/epmpulse", "path, query or fragment"),
        ("https://epmpulse.example.com?team=T1", "path, query or fragment"),
        ("https://epmpulse.example.com#top", "path, query or fragment"),
        ("https://admin:secret@epmpulse.example.com", "user name or password"),
        ("https://epmpulse.example.com:https", "cannot be parsed"),
        ("https://[::1", "cannot be parsed"),
    ],
)
def test_http_url_rejects_invalid_value(http_url: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        build_manifest(http_url)

    message = str(raised.value)
    assert repr(http_url) in message
    assert problem in message
    assert "Use the public https base URL" in message


def test_render_rejects_invalid_http_url() -> None:
    with pytest.raises(ValueError, match="only to https"):
        render_manifest("http://epmpulse.example.com")


def test_manifest_file_matches_render() -> None:
    committed = (REPO_ROOT / "manifest.yml").read_text(encoding="utf-8")

    assert committed == render_manifest(), (
        "manifest.yml differs from render_manifest(): change bot/manifest.py, then "
        "regenerate the file with `epmpulse manifest > manifest.yml`"
    )


@pytest.mark.parametrize(
    "http_url",
    [
        "https://exa mple.com",
        "https://epm_pulse.example.com",
        "https://-epmpulse.example.com",
        "https://epmpulse..example.com",
    ],
)
def test_http_url_rejects_invalid_host(http_url: str) -> None:
    with pytest.raises(ValueError) as raised:
        build_manifest(http_url)

    assert "is not a valid host name" in str(raised.value)


def test_http_url_idn_host_needs_punycode() -> None:
    with pytest.raises(ValueError) as raised:
        build_manifest("https://bücher.example")

    assert "punycode (xn--bcher-kva.example)" in str(raised.value)


@pytest.mark.parametrize(
    ("http_url", "request_url"),
    [
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example/slack/events"),
        ("https://203.0.113.7:8443", "https://203.0.113.7:8443/slack/events"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]/slack/events"),
    ],
)
def test_http_url_accepts_punycode_and_ip_hosts(
    http_url: str, request_url: str
) -> None:
    manifest = build_manifest(http_url)

    assert manifest["settings"]["interactivity"]["request_url"] == request_url
