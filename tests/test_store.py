"""The status store: durability, grouped writes, failures and damaged files."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from store import files as store_files
from store import tinydb_storage
from store.models import Change, Snapshot, Status, Update
from store.store import StatusStore, StoreUnavailable, TooManyRows
from store.tinydb_storage import StoreCorruptError

T0 = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)


def update(
    status: Status = Status.LOADING,
    minutes: float = 0,
    *,
    app: str = "Planning",
    domain: str = "Actual",
    job_id: str | None = None,
    message: str | None = None,
) -> Update:
    at = T0 + timedelta(minutes=minutes)
    return Update(app, domain, status, at, at, job_id, message)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StatusStore]:
    opened = StatusStore(tmp_path / "data")
    await opened.open()
    yield opened
    await opened.close()


async def reopen(data_dir: Path) -> StatusStore:
    fresh = StatusStore(data_dir)
    await fresh.open()
    await fresh.close()
    return fresh


def enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_apply_is_on_disk_when_it_returns(store: StatusStore) -> None:
    await store.apply([update(status=Status.OK, job_id="42", message="done")])

    record = (await reopen(store.data_dir)).snapshot.get("Planning", "Actual")

    assert record is not None
    assert record.status is Status.OK
    assert record.job_id == "42"
    assert record.message == "done"
    assert record.timestamp == T0


async def test_run_bounds_survive_reopen(store: StatusStore) -> None:
    await store.apply([update(Status.LOADING, 0, job_id="7")])
    await store.apply([update(Status.OK, 5, job_id="7")])

    record = (await reopen(store.data_dir)).snapshot.get("Planning", "Actual")

    assert record is not None
    assert record.run_started_at == T0
    assert record.run_finished_at == T0 + timedelta(minutes=5)
    assert record.run_duration_seconds == 300


async def test_concurrent_applies_share_one_write(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real_write = store._write

    def counting_write(*args: Any) -> None:
        writes.append(len(args[1]))
        real_write(*args)

    monkeypatch.setattr(store, "_write", counting_write)
    updates = [update(domain=f"D{i}") for i in range(50)]

    await asyncio.gather(*(store.apply([u]) for u in updates))

    # Every request is queued before the writer task first runs, so one write
    # carries all 50 rows.
    assert writes == [50]
    assert len((await reopen(store.data_dir)).snapshot.rows) == 50


async def test_requests_during_write_share_next_write(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real_write = store._write

    def slow_write(*args: Any) -> None:
        writes.append(len(args[1]))
        time.sleep(0.1)
        real_write(*args)

    monkeypatch.setattr(store, "_write", slow_write)

    first = asyncio.ensure_future(store.apply([update(domain="first")]))
    await asyncio.sleep(0.03)
    later = [store.apply([update(domain=f"D{i}")]) for i in range(20)]
    await asyncio.gather(first, *later)

    assert writes == [1, 20]


async def test_data_file_is_written_once_per_group(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    real_write_atomic = store_files.write_atomic

    def recording(path: Path, data: bytes, mode: int = 0o640) -> None:
        written.append(path)
        real_write_atomic(path, data, mode)

    monkeypatch.setattr(tinydb_storage, "write_atomic", recording)

    await asyncio.gather(*(store.apply([update(domain=f"D{i}")]) for i in range(30)))

    assert written == [store.db_path]


async def test_failed_write_raises_store_unavailable(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.apply([update(status=Status.OK)])
    before = store.snapshot
    monkeypatch.setattr(tinydb_storage, "write_atomic", enospc)

    with pytest.raises(StoreUnavailable, match="No space left"):
        await store.apply([update(status=Status.ERROR, minutes=1)])

    assert store.snapshot is before
    assert store.snapshot.get("Planning", "Actual").status is Status.OK  # type: ignore[union-attr]
    assert store.last_write_error is not None


async def test_write_after_a_failure_succeeds(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.apply([update(status=Status.OK)])
    monkeypatch.setattr(tinydb_storage, "write_atomic", enospc)
    with pytest.raises(StoreUnavailable):
        await store.apply([update(domain="Lost", status=Status.ERROR, minutes=1)])
    monkeypatch.undo()

    await store.apply([update(domain="Forecast", status=Status.LOADING, minutes=2)])

    rows = (await reopen(store.data_dir)).snapshot.rows
    assert ("Planning", "Forecast") in rows
    assert ("Planning", "Lost") not in rows
    assert rows[("Planning", "Actual")].status is Status.OK
    assert store.last_write_error is None


async def test_failed_rename_keeps_old_file(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.apply([update(status=Status.OK)])
    old_bytes = store.db_path.read_bytes()
    monkeypatch.setattr(os, "replace", enospc)

    with pytest.raises(StoreUnavailable):
        await store.apply([update(status=Status.ERROR, minutes=1)])
    monkeypatch.undo()

    assert store.db_path.read_bytes() == old_bytes
    assert [p.name for p in store.data_dir.iterdir() if p.name.startswith(".")] == []


async def test_listener_gets_only_real_changes(store: StatusStore) -> None:
    calls: list[tuple[Snapshot, Sequence[Change]]] = []
    store.subscribe(lambda snapshot, changes: calls.append((snapshot, changes)))

    await store.apply([update(status=Status.OK, minutes=5)])
    await store.apply([update(status=Status.OK, minutes=5)])
    await store.apply([update(status=Status.ERROR, minutes=1)])
    await store.set_meta("canvas_id:main", "F0ABCDEFGH")

    assert len(calls) == 1
    snapshot, changes = calls[0]
    assert snapshot is store.snapshot
    assert [c.changed for c in changes] == [True]
    assert changes[0].after is snapshot.get("Planning", "Actual")


async def test_failing_listener_does_not_stop_others(store: StatusStore) -> None:
    seen: list[int] = []

    def broken(snapshot: Snapshot, changes: Sequence[Change]) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    store.subscribe(lambda snapshot, changes: seen.append(len(changes)))

    await store.apply([update()])

    assert seen == [1]


async def test_snapshot_is_immutable(store: StatusStore) -> None:
    await store.apply([update(status=Status.LOADING)])
    first = store.snapshot
    record = first.get("Planning", "Actual")
    assert record is not None

    await store.apply([update(status=Status.OK, minutes=1)])

    with pytest.raises(TypeError):
        first.rows[("Planning", "Actual")] = record  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = Status.ERROR  # type: ignore[misc]
    assert first.get("Planning", "Actual").status is Status.LOADING  # type: ignore[union-attr]
    assert store.snapshot.get("Planning", "Actual").status is Status.OK  # type: ignore[union-attr]


async def test_meta_value_persists(store: StatusStore) -> None:
    await store.set_meta("canvas_id:main", "F0ABCDEFGH")
    await store.set_meta("canvas_id:main", "F0NEWCANVAS")
    await store.set_meta("home_ts", {"U1": "1700000000.000100"})

    fresh = await reopen(store.data_dir)

    assert fresh.get_meta("canvas_id:main") == "F0NEWCANVAS"
    assert fresh.get_meta("home_ts") == {"U1": "1700000000.000100"}
    assert fresh.get_meta("absent", "default") == "default"


async def test_unencodable_meta_fails_without_hanging(store: StatusStore) -> None:
    async with asyncio.timeout(5):
        with pytest.raises(TypeError):
            await store.set_meta("bad", object())
        await store.set_meta("good", 1)

    assert (await reopen(store.data_dir)).get_meta("good") == 1


async def test_new_row_past_max_rows_is_rejected(tmp_path: Path) -> None:
    limited = StatusStore(tmp_path / "data", max_rows=2)
    await limited.open()
    await limited.apply([update(domain="A"), update(domain="B")])

    with pytest.raises(TooManyRows) as caught:
        await limited.apply([update(domain="C")])
    await limited.apply([update(domain="A", status=Status.OK, minutes=1)])
    await limited.close()

    assert caught.value.limit == 2
    assert "Planning/C" in str(caught.value)
    assert ("Planning", "C") not in limited.snapshot.rows
    assert limited.snapshot.get("Planning", "A").status is Status.OK  # type: ignore[union-attr]


async def test_history_keeps_older_update(store: StatusStore) -> None:
    await store.apply([update(status=Status.OK, minutes=10)])
    changes = await store.apply([update(status=Status.ERROR, minutes=5)])

    events = await store.read_history("Planning", "Actual")

    assert changes[0].changed is False
    assert store.snapshot.get("Planning", "Actual").status is Status.OK  # type: ignore[union-attr]
    assert [(e.status, e.applied) for e in events] == [("Error", False), ("OK", True)]


async def test_repeat_leaves_no_history_event(store: StatusStore) -> None:
    await store.apply([update(status=Status.OK)])
    await store.apply([update(status=Status.OK, minutes=1)])

    events = await store.read_history()

    assert len(events) == 1


CORRUPT_FILES = {
    "garbage": b"{not json",
    "empty": b"",
    "blank": b"  \n",
    "truncated": b'{"rows": {"1": {"app": "Planning", "domain": "Act',
    "list": b"[1, 2]",
    "string": b'"rows"',
    "table_not_object": b'{"rows": [1]}',
    "row_missing_fields": b'{"rows": {"1": {"app": "Planning"}}}',
    "row_null_timestamp": json.dumps(
        {
            "rows": {
                "1": {
                    "app": "Planning",
                    "domain": "Actual",
                    "status": "OK",
                    "timestamp": None,
                    "received_at": None,
                }
            }
        }
    ).encode(),
    "row_bad_status": json.dumps(
        {
            "rows": {
                "1": {
                    "app": "Planning",
                    "domain": "Actual",
                    "status": "Done-ish",
                    "timestamp": "2026-01-31T17:00:00+00:00",
                    "received_at": "2026-01-31T17:00:00+00:00",
                }
            }
        }
    ).encode(),
    "meta_without_key": b'{"meta": {"1": {"value": 3}}}',
    "not_utf8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("content", CORRUPT_FILES.values(), ids=CORRUPT_FILES.keys())
async def test_damaged_data_file_stops_open(tmp_path: Path, content: bytes) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "epmpulse.json"
    path.write_bytes(content)
    damaged = StatusStore(data_dir)

    with pytest.raises(StoreCorruptError) as caught:
        await damaged.open()
    await damaged.close()

    assert str(path) in str(caught.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in data_dir.iterdir()) == ["epmpulse.json"]


async def test_close_twice_is_harmless(tmp_path: Path) -> None:
    opened = StatusStore(tmp_path / "data")
    await opened.open()
    await opened.apply([update()])

    await opened.close()
    await opened.close()

    record = (await reopen(opened.data_dir)).snapshot.get("Planning", "Actual")
    assert record is not None


async def test_apply_syncs_file_then_renames_then_syncs_dir(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording_replace(source: Any, target: Any) -> None:
        steps.append(("replace", os.fspath(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)

    await store.apply([update(status=Status.OK)])

    db = str(store.db_path)
    replaced = steps.index(("replace", db))
    synced_before = [path for step, path in steps[:replaced] if step == "fsync"]
    assert any(Path(path).name.startswith(".epmpulse.json.") for path in synced_before)
    assert ("fsync", str(store.data_dir)) in steps[replaced:]
    history_synced = [path for step, path in steps if path.endswith(".jsonl")]
    assert history_synced != []
