"""The status store: durability, grouped writes, failures and damaged files."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import threading
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
    monkeypatch.setattr(os, "fsync", enospc)

    with pytest.raises(StoreUnavailable, match="No space left"):
        await store.apply([update(status=Status.ERROR, minutes=1)])

    assert store.snapshot is before
    assert store.snapshot.get("Planning", "Actual").status is Status.OK  # type: ignore[union-attr]
    assert store.last_write_error is not None


async def test_failed_write_leaves_no_history_line(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.apply([update(status=Status.OK)])
    (segment,) = store.history.segments()
    logged = segment.read_bytes()
    monkeypatch.setattr(os, "fsync", enospc)

    with pytest.raises(StoreUnavailable):
        await store.apply([update(status=Status.ERROR, minutes=1)])
    monkeypatch.undo()

    assert segment.read_bytes() == logged


async def test_write_after_a_failure_succeeds(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.apply([update(status=Status.OK)])
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(StoreUnavailable):
        await store.apply([update(domain="Lost", status=Status.ERROR, minutes=1)])
    monkeypatch.undo()

    await store.apply([update(domain="Forecast", status=Status.LOADING, minutes=2)])

    rows = (await reopen(store.data_dir)).snapshot.rows
    assert ("Planning", "Forecast") in rows
    assert ("Planning", "Lost") not in rows
    assert rows[("Planning", "Actual")].status is Status.OK
    assert store.last_write_error is None


async def test_rows_file_failure_keeps_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=0)
    await store.open()
    await store.apply([update(status=Status.OK)])
    old_bytes = store.db_path.read_bytes()
    monkeypatch.setattr(os, "replace", enospc)

    # The history line is the durable copy, so the update is still acknowledged.
    changes = await store.apply([update(status=Status.ERROR, minutes=1)])
    monkeypatch.undo()

    assert changes[0].changed
    assert store.db_path.read_bytes() == old_bytes
    assert [p.name for p in store.data_dir.iterdir() if p.name.startswith(".")] == []
    crashed = await reopen(store.data_dir)  # without closing the first store
    assert crashed.snapshot.get("Planning", "Actual").status is Status.ERROR  # type: ignore[union-attr]
    await store.close()


async def test_meta_write_failure_keeps_updates_of_its_group(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tinydb_storage, "write_atomic", enospc)

    applied, meta = await asyncio.gather(
        store.apply([update(status=Status.OK)]),
        store.set_meta("canvas_id:main", "F0ABCDEFGH"),
        return_exceptions=True,
    )
    monkeypatch.undo()

    assert isinstance(meta, StoreUnavailable)
    assert store.get_meta("canvas_id:main") is None
    assert store.last_write_error is not None
    assert isinstance(applied, list)
    assert applied[0].changed
    reopened = await reopen(store.data_dir)
    assert reopened.snapshot.get("Planning", "Actual") is not None
    assert reopened.get_meta("canvas_id:main") is None


# --- the rows file as a checkpoint of the history ------------------------------------


def rows_on_disk(store: StatusStore) -> dict[str, str]:
    tables = json.loads(store.db_path.read_text())
    return {row["domain"]: row["status"] for row in tables["rows"].values()}


async def test_rows_file_lags_but_a_crash_loses_nothing(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    await store.apply([update(status=Status.OK, domain="First")])
    await store.apply([update(status=Status.ERROR, minutes=1, domain="Second")])
    await store.apply([update(status=Status.WARNING, minutes=2, domain="First")])

    on_disk = rows_on_disk(store)
    crashed = await reopen(store.data_dir)  # the first store is never closed

    assert on_disk == {"First": "OK"}
    assert crashed.snapshot.get("Planning", "First").status is Status.WARNING  # type: ignore[union-attr]
    assert crashed.snapshot.get("Planning", "Second").status is Status.ERROR  # type: ignore[union-attr]
    assert rows_on_disk(store) == {"First": "Warning", "Second": "Error"}
    await store.close()


async def test_replay_keeps_run_times(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    await store.apply([update(Status.OK, domain="Other")])
    await store.apply([update(Status.LOADING, 1, job_id="7")])
    await store.apply([update(Status.OK, 4, job_id="7")])
    live = store.snapshot.get("Planning", "Actual")

    replayed = (await reopen(store.data_dir)).snapshot.get("Planning", "Actual")

    assert replayed == live
    await store.close()


async def test_close_writes_the_rows_file(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    await store.apply([update(status=Status.OK)])
    await store.apply([update(status=Status.ERROR, minutes=1)])

    await store.close()

    assert rows_on_disk(store) == {"Actual": "Error"}


async def test_idle_store_catches_up_on_the_rows_file(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=0.2)
    await store.open()
    await store.apply([update(status=Status.OK)])
    await store.apply([update(status=Status.ERROR, minutes=1)])
    lagging = rows_on_disk(store)

    for _ in range(100):  # up to 5 s; the file is polled, there is no event
        if rows_on_disk(store) == {"Actual": "Error"}:
            break
        await asyncio.sleep(0.05)

    assert lagging == {"Actual": "OK"}
    assert rows_on_disk(store) == {"Actual": "Error"}
    await store.close()


async def test_clean_reopen_replays_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    for minute in range(5):
        await store.apply([update(Status.LOADING, minute, job_id=str(minute))])
    await store.close()

    with caplog.at_level("INFO", logger="store.store"):
        await reopen(store.data_dir)

    assert "replayed" not in caplog.text


async def test_history_rewrite_moves_the_replay_position(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    for minute in range(10):
        await store.apply([update(Status.LOADING, minute, job_id=str(minute))])

    dropped = await store.rewrite_history(lambda history: history.cap_rows(3))
    await store.apply([update(Status.ERROR, 20, job_id="last")])
    crashed = await reopen(store.data_dir)

    assert dropped == 7
    record = crashed.snapshot.get("Planning", "Actual")
    assert record is not None
    assert (record.status, record.job_id) == (Status.ERROR, "last")
    assert len(crashed.history.read_recent(limit=100)) == 4
    await store.close()


async def test_failed_checkpoint_after_rewrite_blocks_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    for minute in range(6):
        await store.apply([update(Status.LOADING, minute, job_id=str(minute))])
    real_write_atomic = store_files.write_atomic
    calls = 0

    def second_fails(path: Path, data: bytes, mode: int = 0o640) -> None:
        nonlocal calls
        calls += 1
        if calls >= 2:
            enospc()
        real_write_atomic(path, data, mode)

    monkeypatch.setattr(tinydb_storage, "write_atomic", second_fails)
    await store.rewrite_history(lambda history: history.cap_rows(2))

    # The rows file still names the history position from before the rewrite,
    # so a write must fail rather than append where a replay would not look.
    with pytest.raises(StoreUnavailable):
        await store.apply([update(Status.ERROR, 20, job_id="blocked")])
    monkeypatch.undo()
    await store.apply([update(Status.ERROR, 21, job_id="after")])
    crashed = await reopen(store.data_dir)

    assert crashed.snapshot.get("Planning", "Actual").job_id == "after"  # type: ignore[union-attr]
    await store.close()


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
    "checkpoint_not_a_table": b'{"rows": {}, "checkpoint": {"1": 5}}',
    "row_id_not_a_number": b'{"rows": {"abc": {}}}',
    "checkpoint_offset_text": (
        b'{"checkpoint": {"1": {"segment": "2026-01-31.jsonl", "offset": "abc"}}}'
    ),
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


async def test_stale_rows_file_replays_rewritten_day(
    tmp_path: Path,
) -> None:
    # What a backup can read while retention runs: the rows file from before a
    # history rewrite, and the history from after it.
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    await store.apply([update(Status.OK, 0, domain="A")])
    await store.apply([update(Status.ERROR, 1, domain="B", message="x" * 300)])
    for minute in range(2, 5):
        await store.apply(
            [update(Status.LOADING, minute, domain="A", job_id=str(minute))]
        )
    rows_file = store.db_path.read_bytes()
    await store.rewrite_history(lambda history: history.cap_rows(1))
    copy = tmp_path / "copy"
    (copy / "history").mkdir(parents=True)
    (copy / "epmpulse.json").write_bytes(rows_file)
    for segment in store.history.segments():
        (copy / "history" / segment.name).write_bytes(segment.read_bytes())
    await store.close()

    restored = (await reopen(copy)).snapshot

    assert restored.get("Planning", "B").status is Status.ERROR  # type: ignore[union-attr]
    assert restored.get("Planning", "A").job_id == "4"  # type: ignore[union-attr]


async def test_history_read_does_not_hold_up_writes(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow_read(*args: Any) -> list[Any]:
        release.wait(10)
        return []

    monkeypatch.setattr(store.history, "read_recent", slow_read)
    reading = asyncio.ensure_future(store.read_history())
    try:
        await asyncio.wait_for(store.apply([update(status=Status.OK)]), 2)
    finally:
        release.set()
        await reading


async def test_replay_warns_about_damaged_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StatusStore(tmp_path / "data", checkpoint_seconds=60)
    await store.open()
    await store.apply([update(Status.OK, 0, domain="A")])
    await store.apply([update(Status.ERROR, 1, domain="B")])
    await store.apply([update(Status.WARNING, 2, domain="C")])
    (segment,) = store.history.segments()
    lines = segment.read_bytes().split(b"\n")
    lines[1] = lines[1][:30]  # B's line, which the rows file does not have yet
    segment.write_bytes(b"\n".join(lines))

    with caplog.at_level("WARNING", logger="store.store"):
        crashed = await reopen(store.data_dir)

    assert "skipped 1 history line(s) that cannot be read" in caplog.text
    assert crashed.snapshot.get("Planning", "C").status is Status.WARNING  # type: ignore[union-attr]
    await store.close()
