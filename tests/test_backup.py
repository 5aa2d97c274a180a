"""The data-dir lock, ``epmpulse backup`` and ``epmpulse restore``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.backup import (
    BACKUP_PREFIX,
    MANIFEST_NAME,
    PRE_RESTORE_PREFIX,
    create_backup,
)
from bot.cli import main
from bot.service import Service
from bot.settings import Settings
from store.lock import DataDirLocked
from store.models import Status, Update
from store.store import StatusStore
from tests.conftest import API_KEY, StartService
from tests.server_process import ServerProcess

KEYS_LINE = "planning-prod:keys-file-key-0123456789abcdef\n"


@pytest.fixture
def cli_env(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> Path:
    """Point the in-process CLI at ``data_dir`` with an apps.json and a keys file;
    return the apps.json path."""
    apps = tmp_path / "apps.json"
    apps.write_text(
        json.dumps({"apps": [{"name": "Load", "domains": ["Row0", "Row1", "Row2"]}]})
    )
    secrets = data_dir / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    (secrets / "api_keys").write_text(KEYS_LINE)
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EPMPULSE_API_KEY", API_KEY)
    monkeypatch.setenv("EPMPULSE_APPS_CONFIG", str(apps))
    monkeypatch.setenv("EPMPULSE_API_KEYS_FILE", str(secrets / "api_keys"))
    return apps


def server_env(apps: Path) -> dict[str, str]:
    return {
        "EPMPULSE_APPS_CONFIG": str(apps),
        "EPMPULSE_RATE_LIMIT_POST": "1000000 per minute",
    }


def archive_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        files = {}
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            assert handle is not None
            files[member.name] = handle.read()
        return files


def backups_in(folder: Path, prefix: str = BACKUP_PREFIX) -> list[Path]:
    return sorted(folder.glob(f"{prefix}*.tar.gz"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def update(app: str, domain: str, status: Status, job_id: str) -> Update:
    now = datetime.now(UTC)
    return Update(app, domain, status, received_at=now, timestamp=now, job_id=job_id)


# --- the lock ----------------------------------------------------------------------


def test_second_server_on_data_dir_fails(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as first:
        second = ServerProcess(data_dir)
        with pytest.raises(RuntimeError):
            second.start()
        assert second.process is not None
        assert second.process.returncode == 3
        assert f"in use by process {first.process.pid}" in second.log()  # type: ignore[union-attr]
        response = first.post({"app": "Planning", "domain": "Actual", "status": "OK"})
        assert response.status_code == 200


async def test_service_start_fails_while_locked(
    start_service: StartService, make_settings: Callable[..., Settings]
) -> None:
    await start_service()
    with pytest.raises(DataDirLocked):
        await Service(make_settings()).start()


async def test_service_stop_releases_lock(
    make_settings: Callable[..., Settings],
) -> None:
    first = Service(make_settings())
    await first.start()
    await first.stop()
    second = Service(make_settings())
    await second.start()
    await second.stop()
    assert not second.data_lock.held


async def test_service_lock_file_names_pid(service: Service, data_dir: Path) -> None:
    assert (data_dir / ".lock").read_text().strip() == str(os.getpid())


# --- backup ------------------------------------------------------------------------


@pytest.fixture
def busy_server(
    tmp_path: Path, data_dir: Path, cli_env: Path
) -> Iterator[dict[str, int]]:
    """A server with writers posting to three rows; yields the last acked job ids."""
    acked: dict[str, int] = {}
    stop = threading.Event()

    def write(server: ServerProcess, row: str) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        sequence = 0
        while not stop.is_set():
            sequence += 1
            body = {"app": "Load", "domain": row, "status": "OK", "job_id": sequence}
            reply = session.post(server.url + "/api/v1/status", json=body, timeout=5)
            if reply.status_code == 200:
                acked[row] = sequence

    with ServerProcess(data_dir, server_env(cli_env)) as server:
        threads = [
            threading.Thread(target=write, args=(server, f"Row{n}")) for n in range(3)
        ]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 10
            while len(acked) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            yield acked
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)


def test_backup_while_writing_is_consistent(
    busy_server: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cli_env: Path,
) -> None:
    out = tmp_path / "backups"
    for _ in range(3):
        code, printed, _ = run_cli(capsys, "backup", "--out", str(out))
        assert code == 0
        assert "backup written:" in printed
    archives = backups_in(out)
    assert len(archives) == 3
    assert busy_server, "the writers got no 200 at all"
    for path in archives:
        files = archive_files(path)
        rows = json.loads(files["data/epmpulse.json"])["rows"].values()
        history = b"".join(
            content
            for name, content in files.items()
            if name.startswith("data/history/")
        )
        events = [json.loads(line) for line in history.splitlines()]
        logged = {(e["domain"], e["job_id"]) for e in events}
        for row in rows:
            assert (row["domain"], row["job_id"]) in logged, (path.name, row)


def test_backup_archive_matches_manifest(
    busy_server: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cli_env: Path,
) -> None:
    out = tmp_path / "backups"
    assert run_cli(capsys, "backup", "--out", str(out))[0] == 0
    files = archive_files(backups_in(out)[0])
    manifest = json.loads(files.pop(MANIFEST_NAME))
    assert set(manifest["files"]) == set(files)
    for name, content in files.items():
        assert manifest["files"][name]["sha256"] == hashlib.sha256(content).hexdigest()
    assert files["config/apps.json"] == cli_env.read_bytes()
    assert "data/epmpulse.json" in files
    assert manifest["includes_secrets"] is False


def test_backup_leaves_out_lock_and_secrets(
    busy_server: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "backups"
    assert run_cli(capsys, "backup", "--out", str(out))[0] == 0
    archive = backups_in(out)[0]
    names = set(archive_files(archive))
    assert "data/.lock" not in names
    assert [n for n in names if n.startswith("data/secrets/")] == []
    assert stat.S_IMODE(archive.stat().st_mode) == 0o640


def test_backup_includes_secrets_on_request(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    code, printed, _ = run_cli(capsys, "backup", "--out", str(out), "--include-secrets")
    assert code == 0
    assert "secrets included" in printed
    archive = backups_in(out)[0]
    files = archive_files(archive)
    assert files["data/secrets/api_keys"] == KEYS_LINE.encode()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_backup_keeps_newest_n(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir()
    (data_dir / "epmpulse.json").write_text("{}")
    out = tmp_path / "backups"
    start = datetime(2026, 12, 1, tzinfo=UTC)
    written = [
        create_backup(data_dir, out, keep=3, now=start + timedelta(days=n)).path
        for n in range(5)
    ]
    assert backups_in(out) == written[2:]


def test_backup_keep_spares_pre_restore_archives(
    data_dir: Path, tmp_path: Path
) -> None:
    data_dir.mkdir()
    out = tmp_path / "backups"
    start = datetime(2026, 12, 1, tzinfo=UTC)
    kept = create_backup(data_dir, out, prefix=PRE_RESTORE_PREFIX, keep=None, now=start)
    for n in range(1, 3):
        create_backup(data_dir, out, keep=1, now=start + timedelta(days=n))
    assert kept.path.exists()


def test_backup_rejects_keep_zero(
    capsys: pytest.CaptureFixture[str], cli_env: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backup", "--keep", "0"])
    assert exited.value.code == 2
    assert "1 or more" in capsys.readouterr().err


def test_backup_default_folder_is_not_archived(
    capsys: pytest.CaptureFixture[str],
    cli_env: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (data_dir / "epmpulse.log").write_text("a log line\n")
    monkeypatch.setenv("EPMPULSE_LOG_FILE", str(data_dir / "epmpulse.log"))
    assert run_cli(capsys, "backup")[0] == 0
    assert run_cli(capsys, "backup")[0] == 0
    archives = backups_in(data_dir / "backups")
    assert len(archives) == 2
    names = set(archive_files(archives[1]))
    assert [n for n in names if "backups" in n] == []
    assert "data/epmpulse.log" not in names


def test_backup_of_missing_data_dir_fails(
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(tmp_path / "nowhere"))
    code, _, err = run_cli(capsys, "backup", "--out", str(tmp_path / "out"))
    assert code == 1
    assert "does not exist" in err


@pytest.mark.parametrize("inside", [".", "canvas"])
def test_backup_rejects_out_dir_in_data_dir(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, inside: str
) -> None:
    (data_dir / "canvas").mkdir(parents=True, exist_ok=True)
    out = data_dir / inside

    code, _, err = run_cli(capsys, "backup", "--out", str(out))

    assert code == 1
    assert "is inside the data dir" in err
    assert list(data_dir.rglob("*.tar.gz")) == []


# --- restore -----------------------------------------------------------------------


def test_restore_refuses_live_server(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    with ServerProcess(data_dir, server_env(cli_env)) as server:
        server.post({"app": "Load", "domain": "Row0", "status": "OK"})
        assert run_cli(capsys, "backup", "--out", str(out))[0] == 0
        archive = backups_in(out)[0]
        server.post({"app": "Load", "domain": "Row1", "status": "Error"})
        # The rows file trails the history by up to a second; wait for it.
        deadline = time.monotonic() + 5
        while "Row1" not in _stored_rows(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        before = _stored_rows(data_dir)
        code, _, err = run_cli(capsys, "restore", str(archive), "--out", str(out))
        assert code == 1
        assert f"process {server.process.pid}" in err  # type: ignore[union-attr]
        assert "Stop EPMPulse first" in err
        assert _stored_rows(data_dir) == before
        assert backups_in(out, PRE_RESTORE_PREFIX) == []


async def _write_rows(data_dir: Path, rows: dict[str, Status], job_id: str) -> None:
    store = StatusStore(data_dir)
    await store.open()
    await store.apply(
        [update("Load", domain, status, job_id) for domain, status in rows.items()]
    )
    await store.close()


def _stored_rows(data_dir: Path) -> dict[str, str]:
    rows = json.loads((data_dir / "epmpulse.json").read_text())["rows"].values()
    return {row["domain"]: row["status"] for row in rows}


async def test_restore_replaces_data_and_saves_current(
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    tmp_path: Path,
    cli_env: Path,
) -> None:
    out = tmp_path / "backups"
    await _write_rows(data_dir, {"Row0": Status.OK}, "1")
    archive = create_backup(data_dir, out).path
    await _write_rows(data_dir, {"Row0": Status.ERROR, "Row1": Status.LOADING}, "2")

    code, printed, _ = run_cli(capsys, "restore", str(archive), "--out", str(out))

    assert code == 0
    assert "saved the current data to" in printed
    assert _stored_rows(data_dir) == {"Row0": "OK"}
    saved = backups_in(out, PRE_RESTORE_PREFIX)
    assert len(saved) == 1
    saved_rows = json.loads(archive_files(saved[0])["data/epmpulse.json"])["rows"]
    assert {r["domain"]: r["status"] for r in saved_rows.values()} == {
        "Row0": "Error",
        "Row1": "Loading",
    }
    history = b"".join(p.read_bytes() for p in (data_dir / "history").glob("*.jsonl"))
    assert [json.loads(line)["job_id"] for line in history.splitlines()] == ["1"]


async def test_restored_data_serves_after_restart(
    start_service: StartService,
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    tmp_path: Path,
    cli_env: Path,
) -> None:
    out = tmp_path / "backups"
    await _write_rows(data_dir, {"Row0": Status.OK}, "1")
    archive = create_backup(data_dir, out).path
    await _write_rows(data_dir, {"Row0": Status.ERROR}, "2")
    assert run_cli(capsys, "restore", str(archive), "--out", str(out))[0] == 0
    service = await start_service()
    record = service.store.snapshot.get("Load", "Row0")
    assert record is not None
    assert record.status is Status.OK


def test_restore_keeps_secrets_when_archive_has_none(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    archive = create_backup(data_dir, out).path
    (data_dir / "secrets" / "api_keys").write_text(
        "new-prod:new-key-0123456789abcdef\n"
    )
    assert run_cli(capsys, "restore", str(archive), "--out", str(out))[0] == 0
    assert "new-prod" in (data_dir / "secrets" / "api_keys").read_text()


def test_restore_puts_back_archived_secrets(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    archive = create_backup(data_dir, out, include_secrets=True).path
    (data_dir / "secrets" / "api_keys").write_text(
        "new-prod:new-key-0123456789abcdef\n"
    )
    assert run_cli(capsys, "restore", str(archive), "--out", str(out))[0] == 0
    assert (data_dir / "secrets" / "api_keys").read_text() == KEYS_LINE
    saved = archive_files(backups_in(out, PRE_RESTORE_PREFIX)[0])
    assert b"new-prod" in saved["data/secrets/api_keys"]


def test_restored_files_get_server_modes(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    (data_dir / "history").mkdir()
    (data_dir / "history" / "2026-12-01.jsonl").write_text("{}\n")
    (data_dir / "epmpulse.json").write_text("{}")
    archive = create_backup(data_dir, tmp_path / "out", include_secrets=True).path
    assert (
        run_cli(capsys, "restore", str(archive), "--out", str(tmp_path / "out"))[0] == 0
    )

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data_dir) == 0o750
    assert mode(data_dir / "history") == 0o750
    assert mode(data_dir / "history" / "2026-12-01.jsonl") == 0o640
    assert mode(data_dir / "epmpulse.json") == 0o640
    assert mode(data_dir / "secrets") == 0o700
    assert mode(data_dir / "secrets" / "api_keys") == 0o600


def test_restore_with_config_writes_apps_json(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    original = cli_env.read_text()
    archive = create_backup(data_dir, tmp_path / "out", apps_config=cli_env).path
    cli_env.write_text('{"apps": []}')
    code, printed, _ = run_cli(
        capsys, "restore", str(archive), "--out", str(tmp_path / "out"), "--with-config"
    )
    assert code == 0
    assert "restored apps config" in printed
    assert cli_env.read_text() == original


def test_restore_without_flag_leaves_apps_json(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    archive = create_backup(data_dir, tmp_path / "out", apps_config=cli_env).path
    cli_env.write_text('{"apps": []}')
    assert (
        run_cli(capsys, "restore", str(archive), "--out", str(tmp_path / "out"))[0] == 0
    )
    assert cli_env.read_text() == '{"apps": []}'


def _crafted_archive(
    path: Path, members: dict[str, bytes], manifest: dict[str, Any] | None = None
) -> Path:
    files = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in members.items()
    }
    manifest = manifest or {"format": 1, "created_at": "2026-12-01T00:00:00+00:00"}
    manifest.setdefault("files", files)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {
            MANIFEST_NAME: json.dumps(manifest).encode(),
            **members,
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "name",
    ["data/../../evil", "../evil", "/tmp/evil", "evil", "data/.lock", "config/other"],
)
def test_restore_rejects_unsafe_member(
    capsys: pytest.CaptureFixture[str],
    cli_env: Path,
    data_dir: Path,
    tmp_path: Path,
    name: str,
) -> None:
    (data_dir / "epmpulse.json").write_text('{"rows": {}}')
    archive = _crafted_archive(
        tmp_path / "crafted.tar.gz",
        {"data/epmpulse.json": b"{}", name: b"owned"},
    )
    code, _, err = run_cli(capsys, "restore", str(archive), "--out", str(tmp_path))
    assert code == 1
    assert "never contains" in err
    assert (data_dir / "epmpulse.json").read_text() == '{"rows": {}}'
    assert not (tmp_path / "evil").exists()


def test_restore_rejects_checksum_mismatch(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    manifest = {
        "format": 1,
        "created_at": "2026-12-01T00:00:00+00:00",
        "files": {"data/epmpulse.json": {"size": 2, "sha256": "0" * 64}},
    }
    archive = _crafted_archive(
        tmp_path / "crafted.tar.gz", {"data/epmpulse.json": b"{}"}, manifest
    )
    code, _, err = run_cli(capsys, "restore", str(archive), "--out", str(tmp_path))
    assert code == 1
    assert "does not match its checksum" in err
    assert backups_in(tmp_path, PRE_RESTORE_PREFIX) == []


def test_restore_rejects_archive_without_manifest(
    capsys: pytest.CaptureFixture[str], cli_env: Path, tmp_path: Path
) -> None:
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("data/epmpulse.json")
        archive.addfile(info, io.BytesIO(b""))
    code, _, err = run_cli(capsys, "restore", str(path))
    assert code == 1
    assert "not an EPMPulse backup" in err


def test_restore_rejects_truncated_archive(
    capsys: pytest.CaptureFixture[str], cli_env: Path, data_dir: Path, tmp_path: Path
) -> None:
    (data_dir / "epmpulse.json").write_bytes(os.urandom(4096).hex().encode())
    archive = create_backup(data_dir, tmp_path / "out").path
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:-200])
    code, _, err = run_cli(capsys, "restore", str(truncated), "--out", str(tmp_path))
    assert code == 1
    assert "damaged" in err


def test_restore_into_empty_data_dir_saves_nothing(
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "epmpulse.json").write_text('{"rows": {}}')
    archive = create_backup(source, tmp_path / "out").path
    target = tmp_path / "fresh"
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(target))
    code, printed, _ = run_cli(
        capsys, "restore", str(archive), "--out", str(tmp_path / "out")
    )
    assert code == 0
    assert "saved the current data" not in printed
    assert (target / "epmpulse.json").read_text() == '{"rows": {}}'
