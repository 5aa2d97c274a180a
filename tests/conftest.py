"""Shared fixtures: a clean environment, a temporary data dir, an in-process
EPMPulse in local mode on a free loopback port, and a small API client."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.service import Service
from bot.settings import Settings

API_KEY = "test-key-0123456789abcdef"

# Prefixes of the variables EPMPulse reads; a developer's own values must not leak
# into a test.
_ENV_PREFIXES = ("EPMPULSE_", "SLACK_", "EPM_")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Remove EPMPulse variables from the environment and work in ``tmp_path``,
    so no ``.env`` file of the checkout is read."""
    for name in list(os.environ):
        if name.upper().startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_settings(clean_env: None, data_dir: Path) -> Callable[..., Settings]:
    """Build local-mode Settings on port 0 with ``API_KEY``; keywords override."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "host": "127.0.0.1",
            "port": 0,
            "api_key": API_KEY,
            "canvas_debounce_seconds": 0.05,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


def write_apps(path: Path, apps: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"apps": apps}), encoding="utf-8")
    return path


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class ApiClient:
    """Sends requests to a running EPMPulse with ``Authorization: Bearer <key>``.

    ``key=None`` sends no Authorization header.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {key}")
        async with self.session.request(
            method, self.base_url + path, json=json_body, data=data, headers=sent
        ) as response:
            raw = await response.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            return Reply(response.status, body, response.headers)

    async def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("POST", path, json_body=json_body, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)


StartService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_service(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[StartService]:
    """Start a local-mode Service (keywords override its Settings); all the
    services started are stopped at teardown."""
    started: list[Service] = []

    async def start(**overrides: Any) -> Service:
        service = Service(make_settings(**overrides))
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def service(start_service: StartService) -> Service:
    return await start_service()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(service: Service, http: aiohttp.ClientSession) -> ApiClient:
    return ApiClient(http, service.url)
