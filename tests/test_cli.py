"""The ``epmpulse`` command line: ``send`` to a live server, ``serve`` refusing
to start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.service import Service
from tests.conftest import API_KEY, StartService

REPO_ROOT = Path(__file__).resolve().parents[1]


def send(*args: str) -> int:
    return main(["send", "--app", "Planning", "--domain", "Actual", *args])


async def test_send_posts_update(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", API_KEY)

    # send blocks on HTTP, and the server runs on this loop: send from a thread.
    code = await asyncio.to_thread(
        send,
        "--status",
        "completed",
        "--job-id",
        "77",
        "--message",
        "loaded",
        "--url",
        service.url,
    )

    printed = json.loads(capsys.readouterr().out)
    record = service.store.snapshot.get("Planning", "Actual")
    assert code == 0
    assert printed["record"]["status"] == "OK"
    assert record is not None
    assert record.job_id == "77"
    assert record.message == "loaded"


async def test_send_uses_generated_key(
    start_service: StartService,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = await start_service(api_key=None)
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(data_dir))

    code = await asyncio.to_thread(send, "--status", "Loading", "--url", service.url)

    assert code == 0
    assert service.store.snapshot.get("Planning", "Actual") is not None


async def test_send_reports_rejected_update(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", API_KEY)

    code = await asyncio.to_thread(send, "--status", "meh", "--url", service.url)

    printed = json.loads(capsys.readouterr().out)
    assert code == 1
    assert printed["error"]["code"] == "invalid_status"


async def test_send_with_wrong_key_fails(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(
        send, "--status", "OK", "--url", service.url, "--key", "not-the-key-000000"
    )

    assert code == 1
    assert "unauthorized" in capsys.readouterr().out


def test_send_without_server_names_url(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    code = send("--status", "OK", "--url", url, "--key", API_KEY)

    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach EPMPulse at {url}" in err


def test_send_without_key_explains(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = send("--status", "OK", "--url", "http://127.0.0.1:9")

    assert code == 2
    assert "no API key" in capsys.readouterr().err


def run_serve(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("EPMPULSE_", "SLACK_", "EPM_"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_refuses_bad_config_with_list(tmp_path: Path) -> None:
    result = run_serve(
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-your-bot-token-here",
        SLACK_MAIN_CHANNEL_ID="general",
        EPMPULSE_API_KEY="your_secure_64_character_api_key_here",
        EPMPULSE_APPS_CONFIG=str(tmp_path / "missing.json"),
        EPMPULSE_PORT="0",
    )

    assert result.returncode != 0
    assert "did not start" in result.stderr
    for setting in (
        "SLACK_BOT_TOKEN",
        "SLACK_MAIN_CHANNEL_ID",
        "EPMPULSE_API_KEY",
        "EPMPULSE_APPS_CONFIG",
    ):
        assert f"error: {setting}:" in result.stderr
    assert "xoxb-your-bot-token-here" not in result.stderr


def test_serve_refuses_corrupt_data_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_file = data_dir / "epmpulse.json"
    data_file.write_bytes(b'{"rows": {"1": {"app": "Plan')

    result = run_serve(
        tmp_path,
        EPMPULSE_DATA_DIR=str(data_dir),
        EPMPULSE_API_KEY=API_KEY,
        EPMPULSE_PORT="0",
    )

    assert result.returncode != 0
    assert str(data_file) in result.stderr
    assert data_file.read_bytes() == b'{"rows": {"1": {"app": "Plan'


async def test_send_defaults_to_configured_address(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = service.url.rsplit(":", 1)[1]
    monkeypatch.setenv("EPMPULSE_API_KEY", API_KEY)
    monkeypatch.setenv("EPMPULSE_HOST", "0.0.0.0")
    monkeypatch.setenv("EPMPULSE_PORT", port)

    code = await asyncio.to_thread(send, "--status", "OK")

    assert code == 0
    assert service.store.snapshot.get("Planning", "Actual") is not None
