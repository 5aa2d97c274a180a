"""History retention in the background: the task with an injected clock, and the
real server pruning at start-up while webhook writes stay flat."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from store.retention import RetentionTask
from store.store import StatusStore
from tests.server_process import ServerProcess

TODAY = date(2026, 3, 1)


def event_line(status: str, day: date, message: str) -> str:
    stamp = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).isoformat()
    return json.dumps(
        {
            "app": "Planning",
            "domain": "Actual",
            "status": status,
            "timestamp": stamp,
            "received_at": stamp,
            "message": message,
        }
    )


def seed_segment(directory: Path, day: date) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{day.isoformat()}.jsonl"
    lines = [
        event_line("OK", day, f"ok {day}"),
        event_line("Error", day, f"error {day}"),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.jsonl"))


async def open_store(data_dir: Path) -> StatusStore:
    store = StatusStore(data_dir)
    await store.open()
    return store


async def test_prune_once_applies_retention(tmp_path: Path) -> None:
    history = tmp_path / "history"
    for age in (1, 4, 7):
        seed_segment(history, TODAY - timedelta(days=age))
    store = await open_store(tmp_path)
    task = RetentionTask(store, 3, clock=lambda: datetime(2026, 3, 1, 8, tzinfo=UTC))

    changed = await task.prune_once()
    await store.close()

    assert changed == 2
    assert names(history) == ["2026-02-25.failures.jsonl", "2026-02-28.jsonl"]


async def test_prune_uses_utc_day(tmp_path: Path) -> None:
    history = tmp_path / "history"
    seed_segment(history, TODAY - timedelta(days=4))
    store = await open_store(tmp_path)
    # Still Feb 28 in New York, but Mar 1 in UTC: the segment is 4 UTC days old.
    evening = datetime(2026, 2, 28, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    task = RetentionTask(store, 3, clock=lambda: evening)

    await task.prune_once()
    await store.close()

    assert names(history) == ["2026-02-25.failures.jsonl"]


async def test_background_task_prunes_at_start(tmp_path: Path) -> None:
    history = tmp_path / "history"
    seed_segment(history, TODAY - timedelta(days=10))
    store = await open_store(tmp_path)
    task = RetentionTask(
        store, 3, interval=3600, clock=lambda: datetime(2026, 3, 1, tzinfo=UTC)
    )

    await task.start()
    for _ in range(100):
        if not names(history):
            break
        await asyncio.sleep(0.02)
    await task.stop()
    await store.close()

    assert names(history) == []


def test_server_prunes_history_and_keeps_failures(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    history = data_dir / "history"
    today = datetime.now(UTC).date()
    recent = [seed_segment(history, today - timedelta(days=age)) for age in (1, 2)]
    seed_segment(history, today - timedelta(days=2 + 1))
    seed_segment(history, today - timedelta(days=2 * 2 + 1))
    before = {path: path.stat().st_mtime_ns for path in recent}

    pruned_day = today - timedelta(days=3)
    failures = history / f"{pruned_day.isoformat()}.failures.jsonl"

    env = {"EPMPULSE_HISTORY_DAYS": "2"}
    with ServerProcess(data_dir, env) as server:
        deadline = time.monotonic() + 5
        while not failures.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        body = {"app": "Planning", "domain": "Actual", "status": "Loading"}
        assert server.post(body).status_code == 200
        events = server.get("/api/v1/history?app=Planning&limit=100").json()["events"]

    messages = [event["message"] for event in events]
    assert failures.exists()
    assert f"error {pruned_day}" in messages
    assert f"ok {pruned_day}" not in messages
    assert not any(str(today - timedelta(days=5)) in m for m in messages if m)
    assert f"ok {today - timedelta(days=1)}" in messages
    assert {path: path.stat().st_mtime_ns for path in recent} == before


def row_event(domain: str, number: int) -> str:
    stamp = datetime(2026, 3, 1, 12, tzinfo=UTC).isoformat()
    return json.dumps(
        {
            "app": "Planning",
            "domain": domain,
            "status": "Loading",
            "timestamp": stamp,
            "received_at": stamp,
            "job_id": str(number),
        }
    )


def test_cap_rows_keeps_newest_events_per_row(tmp_path: Path) -> None:
    from store.history import HistoryLog

    history = tmp_path / "history"
    history.mkdir()
    older = [row_event("Busy", n) for n in range(6)] + [row_event("Quiet", 0)]
    newer = [row_event("Busy", n) for n in range(6, 10)]
    (history / "2026-02-28.jsonl").write_text("\n".join(older) + "\n")
    (history / "2026-03-01.jsonl").write_text("\n".join(newer) + "\n")
    log = HistoryLog(history)

    dropped = log.cap_rows(5)

    busy = log.read_recent("Planning", "Busy", limit=100)
    quiet = log.read_recent("Planning", "Quiet", limit=100)
    assert dropped == 5
    assert [event.job_id for event in busy] == ["9", "8", "7", "6", "5"]
    assert len(quiet) == 1


async def test_server_caps_history_of_a_runaway_row(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    task = RetentionTask(store, 90, max_per_row=20, cap_check=0.05)
    await task.start()
    try:
        now = datetime.now(UTC)
        from store.models import Status, Update

        for number in range(60):
            status = Status.LOADING if number % 2 else Status.OK
            await store.apply(
                [Update("Planning", "Busy", status, now, now, job_id=str(number))]
            )
            await asyncio.sleep(0.002)
        deadline = time.monotonic() + 5
        while True:
            events = await store.read_history("Planning", "Busy", limit=1000)
            if len(events) <= 30 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await task.stop()
        await store.close()

    assert len(events) <= 30
    assert events[0].job_id == "59"


async def test_overlapping_cap_calls_keep_history(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    task = RetentionTask(store, 90, max_per_row=20)
    try:
        now = datetime.now(UTC)
        from store.models import Status, Update

        for row, count in (("Busy", 40), ("Quiet", 5)):
            for number in range(count):
                await store.apply(
                    [Update("Planning", row, Status.OK, now, now, str(number))]
                )

        results = await asyncio.gather(task.cap_rows_once(), task.cap_rows_once())
        busy = await store.read_history("Planning", "Busy", limit=100)
        quiet = await store.read_history("Planning", "Quiet", limit=100)
    finally:
        await store.close()

    assert results == [20, 0]
    assert [event.job_id for event in busy] == [str(n) for n in range(39, 19, -1)]
    assert len(quiet) == 5
