"""``epmpulse smoke-test`` against a running server, and the smoke-test row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import main
from bot.service import Service
from store.smoke import SMOKE_TEST_APP, SMOKE_TEST_DOMAIN
from tests.conftest import API_KEY, ApiClient, StartService, write_apps
from tests.server_process import free_port

WRONG_KEY = "wrong-key-0123456789abcdef"


async def smoke(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[str], str]:
    code = await asyncio.to_thread(main, ["smoke-test", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def result_of(lines: list[str], check: str) -> tuple[str, str]:
    """Return the mark (``ok`` or ``FAIL``) and the detail of one check's line."""
    found = [line for line in lines if line[5:].startswith(f"{check}:")]
    assert len(found) == 1, lines
    mark, _, rest = found[0].partition(" ")
    return mark, rest.strip()[len(check) + 2 :]


async def test_smoke_test_passes_against_server(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = await smoke(capsys, "--url", service.url, "--key", API_KEY)
    assert code == 0
    for check in ("health", "wrong key", "api key", "round trip"):
        assert result_of(lines, check)[0] == "ok", lines
    assert lines[-1] == "smoke test passed: 4 checks"


async def test_smoke_test_stores_its_row(
    service: Service, api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await smoke(capsys, "--url", service.url, "--key", API_KEY)
    reply = await api.get(f"/api/v1/status/{SMOKE_TEST_APP}")
    assert reply.status == 200
    record = reply.body["domains"][SMOKE_TEST_DOMAIN]
    assert record["status"] == "OK"
    assert record["job_id"].startswith("smoke-")


async def test_smoke_row_stays_off_boards(
    service: Service, api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await api.post("/api/v1/status", {"app": "Planning", "domain": "A", "status": "OK"})
    await smoke(capsys, "--url", service.url, "--key", API_KEY)
    assert service.store.snapshot.get(SMOKE_TEST_APP, SMOKE_TEST_DOMAIN) is not None
    for board in ("main", "arcs"):
        markdown = service.render(board)
        assert SMOKE_TEST_DOMAIN not in markdown
        assert SMOKE_TEST_APP not in markdown
    assert "Planning" in service.render("main")


async def test_smoke_row_alone_leaves_board_empty(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    await smoke(capsys, "--url", service.url, "--key", API_KEY)
    assert "No job status yet" in service.render("main")


async def test_smoke_test_passes_with_apps_json(
    start_service: StartService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apps = write_apps(
        tmp_path / "apps.json", [{"name": "Planning", "domains": ["Actual"]}]
    )
    service = await start_service(apps_config=apps)
    code, lines, _ = await smoke(capsys, "--url", service.url, "--key", API_KEY)
    assert code == 0, lines
    assert result_of(lines, "round trip")[0] == "ok"


async def test_smoke_test_reports_wrong_key(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = await smoke(capsys, "--url", service.url, "--key", WRONG_KEY)
    assert code == 1
    assert result_of(lines, "health")[0] == "ok"
    assert result_of(lines, "wrong key")[0] == "ok"
    assert result_of(lines, "api key") == (
        "FAIL",
        "GET /api/v1/status returned 401 (the API key is not valid: check the key "
        "configured in the EPM connection); check --key or EPMPULSE_API_KEY",
    )
    assert result_of(lines, "round trip")[0] == "FAIL"
    assert "api key, round trip" in err


async def test_smoke_test_never_prints_key(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, err = await smoke(capsys, "--url", service.url, "--key", API_KEY)
    _, wrong_lines, wrong_err = await smoke(
        capsys, "--url", service.url, "--key", WRONG_KEY
    )
    printed = "\n".join([*lines, err, *wrong_lines, wrong_err])
    assert API_KEY not in printed
    assert WRONG_KEY not in printed


async def test_smoke_test_uses_configured_key(
    service: Service,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", API_KEY)
    code, lines, _ = await smoke(capsys, "--url", service.url)
    assert code == 0, lines


def test_smoke_test_without_key_exits_2(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["smoke-test", "--url", "http://127.0.0.1:9"])
    assert code == 2
    assert "no API key" in capsys.readouterr().err


def test_smoke_test_reports_unreachable_server(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["smoke-test", "--url", url, "--key", API_KEY])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 4
    for line in lines:
        assert line.startswith("FAIL "), line
        assert f"cannot reach {url}" in line


@pytest.fixture
async def stub_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that responds to every request with the status at the head of
    the list (200 until a test changes it) and a health body."""
    statuses = [200]

    async def handle(request: web.Request) -> web.Response:
        body = {
            "status": "unhealthy",
            "checks": {"store": "failing: OSError: disk full", "publish_main": "ok"},
        }
        return web.json_response(body, status=statuses[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", statuses
    await runner.cleanup()


async def test_smoke_test_flags_unprotected_api(
    stub_server: tuple[str, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = stub_server
    code, lines, _ = await smoke(capsys, "--url", url, "--key", API_KEY)
    assert code == 1
    mark, detail = result_of(lines, "wrong key")
    assert mark == "FAIL"
    assert "got 200 instead of 401" in detail


async def test_smoke_test_reports_failing_health_check(
    stub_server: tuple[str, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, statuses = stub_server
    statuses[0] = 503
    code, lines, _ = await smoke(capsys, "--url", url, "--key", API_KEY)
    mark, detail = result_of(lines, "health")
    assert code == 1
    assert mark == "FAIL"
    assert detail.startswith("GET /health returned 503")
    assert "disk full" in detail
    assert "publish_main" not in detail
