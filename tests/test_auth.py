"""API keys: the Bearer check, several keys, labels, and what the logs show."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.keys import KeyConfigError, read_keys_file
from handlers.auth import ApiKey, Keyring
from tests.conftest import API_KEY, ApiClient, StartService

STATUS = "/api/v1/status"
BODY = {"app": "Planning", "domain": "Actual", "status": "OK"}
OLD_KEY = "old-key-aaaaaaaaaaaaaaaa"
NEW_KEY = "new-key-bbbbbbbbbbbbbbbb"
WRONG_KEY = "wrong-key-cccccccccccccccc"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([ApiKey("env-1", OLD_KEY), ApiKey("env-2", NEW_KEY)])


@pytest.mark.parametrize(
    ("header", "label"),
    [
        (f"Bearer {OLD_KEY}", "env-1"),
        (f"Bearer {NEW_KEY}", "env-2"),
        (f"bearer {NEW_KEY}", "env-2"),
        (f"Bearer  {OLD_KEY} ", "env-1"),
    ],
)
def test_keyring_matches_every_key(keyring: Keyring, header: str, label: str) -> None:
    assert keyring.match(header) == label


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {OLD_KEY}",
        OLD_KEY,
        f"Bearer {OLD_KEY}x",
        f"Bearer {OLD_KEY[:-1]}",
        f"Bearer {WRONG_KEY}",
    ],
)
def test_keyring_rejects_bad_header(keyring: Keyring, header: str | None) -> None:
    assert keyring.match(header) is None


def test_keyring_replace_drops_old_keys(keyring: Keyring) -> None:
    keyring.replace([ApiKey("rotated", WRONG_KEY)])

    assert keyring.match(f"Bearer {OLD_KEY}") is None
    assert keyring.match(f"Bearer {WRONG_KEY}") == "rotated"
    assert keyring.labels == ["rotated"]


def test_api_key_repr_hides_secret() -> None:
    assert OLD_KEY not in repr(ApiKey("env-1", OLD_KEY))


def test_keys_file_reads_labels(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        f"# rotated monthly\n\nplanning-prod:{OLD_KEY}\n fccs : {NEW_KEY} \n",
        encoding="utf-8",
    )

    keys = read_keys_file(path)

    assert [(k.label, k.secret) for k in keys] == [
        ("planning-prod", OLD_KEY),
        ("fccs", NEW_KEY),
    ]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (f"{OLD_KEY}\n", "line 1 is not 'label:key'"),
        (f"ok:{OLD_KEY}\n:{NEW_KEY}\n", "line 2 is not 'label:key'"),
        ("short:abc\n", "shorter than 16"),
        (f"a:{OLD_KEY}\na:{NEW_KEY}\n", "label 'a' is used twice"),
    ],
)
def test_keys_file_problem_names_line(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(KeyConfigError) as caught:
        read_keys_file(path)

    assert words in str(caught.value)
    assert str(path) in str(caught.value)
    assert NEW_KEY not in str(caught.value)


def test_unreadable_keys_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="unreadable"):
        read_keys_file(tmp_path / "absent")


async def test_missing_key_is_401(api: ApiClient) -> None:
    reply = await api.post(STATUS, BODY, key=None)

    assert reply.status == 401
    assert reply.body["ok"] is False
    assert reply.body["error"]["code"] == "unauthorized"
    assert reply.body["error"]["field"] == "Authorization"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_key_is_401(api: ApiClient) -> None:
    reply = await api.post(STATUS, BODY, key=WRONG_KEY)

    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in reply.headers


async def test_wrong_key_on_huge_body_is_401(api: ApiClient) -> None:
    reply = await api.post(
        STATUS,
        data=b"x" * (1024 * 1024),
        key=WRONG_KEY,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 401


async def test_key_is_checked_before_body_is_read(api: ApiClient) -> None:
    never = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b'{"app": "Planning", '
        # The rest never comes, so a server that reads the body first cannot respond.
        await never.wait()

    async with asyncio.timeout(5):
        reply = await api.request(
            "POST",
            STATUS,
            data=stalled_body(),  # type: ignore[arg-type]
            key=WRONG_KEY,
            headers={"Content-Type": "application/json"},
        )

    assert reply.status == 401


@pytest.mark.parametrize("path", [STATUS, f"{STATUS}/Planning", "/api/v1/history"])
async def test_reads_need_key(api: ApiClient, path: str) -> None:
    reply = await api.get(path, key=None)

    assert reply.status == 401


async def test_sync_needs_key(api: ApiClient) -> None:
    reply = await api.post("/api/v1/canvas/sync", key=None)

    assert reply.status == 401


async def test_each_comma_separated_key_works(
    start_service: StartService, http: Any
) -> None:
    service = await start_service(api_key=f"{OLD_KEY}, {NEW_KEY}")
    api = ApiClient(http, service.url)

    old = await api.post(STATUS, BODY, key=OLD_KEY)
    new = await api.post(STATUS, BODY, key=NEW_KEY)
    whole = await api.post(STATUS, BODY, key=f"{OLD_KEY}, {NEW_KEY}")

    assert old.status == 200
    assert new.status == 200
    assert whole.status == 401


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The access lines in the captured records, which hold a batch of lines."""
    return [
        line
        for record in caplog.records
        if record.name == "handlers.access"
        for line in record.getMessage().splitlines()
    ]


ACCESS_LINE = re.compile(
    r"^access client=127\.0\.0\.1 method=POST path=/api/v1/status status=200 "
    r"ms=\d+\.\d key=(?P<label>\S+)$"
)


async def test_access_log_names_key_label(
    start_service: StartService,
    http: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"planning-prod:{NEW_KEY}\n", encoding="utf-8")
    service = await start_service(api_key=OLD_KEY, api_keys_file=keys_file)
    api = ApiClient(http, service.url)
    caplog.set_level(logging.INFO, logger="handlers")

    await api.post(STATUS, BODY, key=NEW_KEY)
    await api.post(STATUS, BODY, key=OLD_KEY)

    lines = access_lines(caplog)
    matches = [ACCESS_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m.group("label") for m in matches if m] == ["planning-prod", "env-1"]
    assert NEW_KEY not in caplog.text
    assert OLD_KEY not in caplog.text


async def test_rejected_request_is_logged_without_key(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handlers")

    await api.post(STATUS, BODY, key=WRONG_KEY)
    await api.post(STATUS, BODY, key=None)

    rejected = [r.getMessage() for r in caplog.records if r.name == "handlers.auth"]
    assert len(rejected) == 2
    assert rejected == [
        "auth rejected client=127.0.0.1 method=POST path=/api/v1/status "
        "reason=invalid_key",
        "auth rejected client=127.0.0.1 method=POST path=/api/v1/status "
        "reason=missing_key",
    ]
    access = access_lines(caplog)
    assert access
    assert all("status=401" in line and line.endswith("key=-") for line in access)
    assert WRONG_KEY not in caplog.text
    assert API_KEY not in caplog.text


def access_clients(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line.split()[1] for line in access_lines(caplog)]


async def test_forwarded_for_from_trusted_proxy_is_client(
    start_service: StartService, http: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = await start_service(trusted_proxies=["127.0.0.1"])
    api = ApiClient(http, service.url)
    caplog.set_level(logging.INFO, logger="handlers")

    await api.post(
        STATUS, BODY, headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
    )

    assert access_clients(caplog) == ["client=203.0.113.7"]


async def test_forwarded_for_from_untrusted_peer_is_ignored(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handlers")

    await api.post(STATUS, BODY, headers={"X-Forwarded-For": "203.0.113.7"})

    assert access_clients(caplog) == ["client=127.0.0.1"]
