"""The ``epmpulse`` command line: ``send`` to a live server, ``serve`` refusing
to start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bot.cli import main
from bot.loop import loop_factory, loop_name
from bot.service import Service
from tests.conftest import API_KEY, StartService
from tests.server_process import ServerProcess

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


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "inf", "fast"])
def test_demo_rejects_speed_not_above_zero(
    capsys: pytest.CaptureFixture[str], speed: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--speed", speed])

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "--speed" in err
    assert "above 0" in err


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
async def test_run_demo_rejects_speed_not_above_zero(
    tmp_path: Path, speed: float
) -> None:
    from bot.demo import run_demo

    with pytest.raises(ValueError, match="above 0"):
        await run_demo(speed=speed, data_dir=tmp_path / "demo")

    assert not (tmp_path / "demo").exists()


def test_send_never_prints_url_password(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = send("--status", "OK", "--url", "http://admin:s3cret-pw@127.0.0.1:9")

    captured = capsys.readouterr()
    assert code == 2
    assert "user name or password" in captured.err
    assert "s3cret-pw" not in captured.err + captured.out


def test_send_help_documents_key_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["send", "--help"])

    out = " ".join(capsys.readouterr().out.split())
    assert "EPMPULSE_API_KEY" in out
    assert "EPMPULSE_API_KEYS_FILE" in out
    assert "<data dir>/secrets/api_key" in out
    assert "--key-env" in out
    assert "for testing only" in out


async def test_send_reads_key_from_named_variable(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANNING_EPMPULSE_KEY", API_KEY)

    code = await asyncio.to_thread(
        send,
        "--status",
        "OK",
        "--url",
        service.url,
        "--key-env",
        "PLANNING_EPMPULSE_KEY",
    )

    assert code == 0
    assert service.store.snapshot.get("Planning", "Actual") is not None


def test_send_with_unset_key_variable_fails(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = send("--status", "OK", "--url", "http://127.0.0.1:9", "--key-env", "NOPE")

    assert code == 2
    assert "NOPE" in capsys.readouterr().err


def test_send_without_key_lists_places_looked(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = send("--status", "OK", "--url", "http://127.0.0.1:9")

    err = capsys.readouterr().err
    assert code == 2
    assert "EPMPULSE_API_KEY: not set" in err
    assert "EPMPULSE_API_KEYS_FILE: not set" in err
    assert f"{tmp_path / 'data' / 'secrets' / 'api_key'}: not found" in err
    assert "set EPMPULSE_DATA_DIR to the server's data dir" in err
    assert "start 'epmpulse serve' once" not in err


def test_send_with_bad_keys_file_explains(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEYS_FILE", str(tmp_path / "absent"))

    code = send("--status", "OK", "--url", "http://127.0.0.1:9")

    err = capsys.readouterr().err
    assert code == 2
    assert "EPMPULSE_API_KEYS_FILE" in err
    assert "Traceback" not in err


def test_serve_names_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = run_serve(tmp_path, EPMPULSE_API_KEY=API_KEY, EPMPULSE_PORT=str(port))

    assert result.returncode == 3
    assert f"EPMPULSE_PORT: 127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_names_uncreatable_log_file(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("", encoding="utf-8")

    result = run_serve(
        tmp_path,
        EPMPULSE_API_KEY=API_KEY,
        EPMPULSE_PORT="0",
        EPMPULSE_LOG_FILE=str(tmp_path / "log" / "epmpulse.log"),
    )

    assert result.returncode != 0
    assert "error: EPMPULSE_LOG_FILE: " in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_logs_absolute_data_dir(tmp_path: Path) -> None:
    # ServerProcess runs serve in tmp_path, so "data" is relative to it.
    with ServerProcess(tmp_path / "data", {"EPMPULSE_DATA_DIR": "data"}) as server:
        server.stop()

    assert f"data dir {tmp_path / 'data'})" in server.log()


def test_serve_loop_is_uvloop_where_installed() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed here")
    factory = loop_factory()
    assert factory is uvloop.new_event_loop
    assert loop_factory("asyncio") is None
    loops = [factory(), asyncio.new_event_loop()]
    try:
        assert [loop_name(loop) for loop in loops] == ["uvloop", "asyncio"]
    finally:
        for loop in loops:
            loop.close()


def test_demo_replays_close_and_cleans_up(
    clean_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    code = main(["demo", "--speed", "1000"])

    out = capsys.readouterr().out
    assert code == 0
    assert "--- main board, written to" in out
    assert list(scratch.iterdir()) == []


def test_demo_names_invalid_setting(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_EVENT_LOOP", "tokio")

    code = main(["demo"])

    err = capsys.readouterr().err
    assert code == 2
    assert "EPMPULSE_EVENT_LOOP" in err
    assert "'tokio'" in err
    assert "Traceback" not in err


def test_missing_uvloop_warns_only_when_requested(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails

    assert loop_factory() is None
    assert caplog.records == []
    assert loop_factory("uvloop", requested=True) is None
    assert "pip install uvloop" in caplog.text
