"""The history log: newest-first reads, damaged tails, retention, append cost."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from store import history as history_module
from store.history import HistoryEvent, HistoryLog

DAY = date(2026, 1, 31)


def event(
    status: str = "OK", domain: str = "Actual", message: str | None = None
) -> HistoryEvent:
    return HistoryEvent(
        app="Planning",
        domain=domain,
        status=status,
        timestamp="2026-01-31T17:00:00+00:00",
        received_at="2026-01-31T17:00:00+00:00",
        message=message,
    )


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def write_segment(directory: Path, name: str, events: list[HistoryEvent]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        "".join(json.dumps(e.to_json()) + "\n" for e in events), encoding="utf-8"
    )
    return path


@pytest.fixture
def log(tmp_path: Path) -> Iterator[HistoryLog]:
    opened = HistoryLog(tmp_path / "history")
    yield opened
    opened.close()


def test_read_recent_is_newest_first(log: HistoryLog) -> None:
    log.append([event(message="1"), event(message="2")], noon(DAY))
    log.append([event(message="3")], noon(DAY + timedelta(days=1)))

    messages = [e.message for e in log.read_recent()]

    assert messages == ["3", "2", "1"]


def test_read_recent_filters_one_row(log: HistoryLog) -> None:
    log.append(
        [
            event(domain="Actual", message="a1"),
            event(domain="Forecast", message="f1"),
            event(domain="Actual", message="a2"),
        ],
        noon(DAY),
    )

    actual = log.read_recent("Planning", "Actual")
    other_app = log.read_recent("FCCS")

    assert [e.message for e in actual] == ["a2", "a1"]
    assert other_app == []


def test_read_recent_stops_at_limit(log: HistoryLog) -> None:
    log.append([event(message=str(i)) for i in range(10)], noon(DAY))

    messages = [e.message for e in log.read_recent(limit=3)]

    assert messages == ["9", "8", "7"]


def test_segment_per_utc_day(log: HistoryLog) -> None:
    log.append([event()], datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
    log.append([event()], datetime(2026, 2, 1, 0, 30, tzinfo=UTC))

    assert [p.name for p in log.segments()] == ["2026-01-31.jsonl", "2026-02-01.jsonl"]


def test_partial_trailing_line_is_skipped(log: HistoryLog) -> None:
    path = write_segment(log.directory, "2026-01-31.jsonl", [event(message="whole")])
    with path.open("ab") as segment:
        segment.write(b'{"app": "Planning", "domain": "Act')

    messages = [e.message for e in log.read_recent()]

    assert messages == ["whole"]


def test_append_after_partial_line_is_readable(log: HistoryLog) -> None:
    path = write_segment(log.directory, "2026-01-31.jsonl", [event(message="before")])
    with path.open("ab") as segment:
        segment.write(b'{"app": "Planning", "domain": "Act')

    log.append([event(message="after crash")], noon(DAY))

    messages = [e.message for e in log.read_recent()]
    assert messages == ["after crash", "before"]


def test_failed_append_trims_partial_line(
    log: HistoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append([event(message="kept")], noon(DAY))
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        log.append([event(message="lost")], noon(DAY))
    monkeypatch.setattr(os, "fsync", real_fsync)
    log.append([event(message="next")], noon(DAY))

    messages = [e.message for e in log.read_recent()]
    assert messages[0] == "next"
    assert "kept" in messages


def test_prune_keeps_failures_for_twice_the_days(tmp_path: Path) -> None:
    log = HistoryLog(tmp_path / "history")
    events = [event("OK", message="ok"), event("Error", message="err")]
    for age in (1, 3, 5):
        day = DAY - timedelta(days=age)
        write_segment(log.directory, f"{day.isoformat()}.jsonl", events)

    changed = log.prune(keep_days=2, today=DAY)

    names = [p.name for p in log.segments()]
    assert changed == 2
    assert names == ["2026-01-28.failures.jsonl", "2026-01-30.jsonl"]
    failures = history_module._read_segment(log.directory / names[0])
    assert [e.message for e in failures] == ["err"]


def test_prune_deletes_failures_after_twice_the_days(tmp_path: Path) -> None:
    log = HistoryLog(tmp_path / "history")
    old = DAY - timedelta(days=5)
    write_segment(log.directory, f"{old.isoformat()}.failures.jsonl", [event("Error")])
    kept = DAY - timedelta(days=4)
    write_segment(log.directory, f"{kept.isoformat()}.failures.jsonl", [event("Error")])

    log.prune(keep_days=2, today=DAY)

    assert [p.name for p in log.segments()] == ["2026-01-27.failures.jsonl"]


def test_prune_keeps_warnings(tmp_path: Path) -> None:
    log = HistoryLog(tmp_path / "history")
    day = DAY - timedelta(days=3)
    write_segment(log.directory, f"{day.isoformat()}.jsonl", [event("Warning")])

    log.prune(keep_days=2, today=DAY)

    assert [e.status for e in log.read_recent()] == ["Warning"]


def test_append_touches_only_newest_segment(
    log: HistoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long history: many old segments, one of them large.
    for age in range(1, 31):
        day = DAY - timedelta(days=age)
        write_segment(log.directory, f"{day.isoformat()}.jsonl", [event()] * 50)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in log.segments()}
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    def no_reading(path: Path) -> None:
        raise AssertionError(f"append read the segment {path}")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(history_module, "_read_segment", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)

    log.append([event(message="new")], noon(DAY))
    log.append([event(message="newer")], noon(DAY))

    newest = str(log.directory / "2026-01-31.jsonl")
    assert [p for p in opened if p != str(log.directory)] == [newest]
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in before}
    assert after == before


def test_clock_step_back_keeps_newer_segment(tmp_path: Path) -> None:
    log = HistoryLog(tmp_path / "history")
    log.append([event("Loading")], noon(DAY + timedelta(days=1)))
    log.close()

    log.append([event("OK")], noon(DAY))  # the clock went back over midnight
    log.close()

    assert [p.name for p in log.segments()] == ["2026-02-01.jsonl"]
    assert [e.status for e in log.read_recent()] == ["OK", "Loading"]


def test_read_recent_skips_damaged_line(log: HistoryLog) -> None:
    log.append([event("Loading"), event("Error"), event("OK")], noon(DAY))
    (segment,) = log.segments()
    lines = segment.read_bytes().split(b"\n")
    lines[1] = b'{"app": "Planning", "dom'
    segment.write_bytes(b"\n".join(lines))

    assert [e.status for e in log.read_recent()] == ["OK", "Loading"]


def test_cap_keeps_appends_after_copy(log: HistoryLog) -> None:
    log.append([event("Loading", message=str(n)) for n in range(5)], noon(DAY))
    plan = log.plan_cap(2)
    log.append([event("OK", message="after plan")], noon(DAY))
    copies = log.prepare_cap(plan)

    log.append([event("OK", message="after copy")], noon(DAY))
    dropped = log.apply_cap(copies)
    log.append([event("OK", message="after swap")], noon(DAY))

    assert dropped == 3
    messages = [e.message for e in log.read_recent()]
    assert messages == ["after swap", "after copy", "after plan", "4", "3"]
    assert [p.name for p in sorted(log.directory.iterdir())] == ["2026-01-31.jsonl"]


def test_cap_skips_segment_changed_since_copy(log: HistoryLog) -> None:
    log.append([event("Loading", message=str(n)) for n in range(5)], noon(DAY))
    copies = log.prepare_cap(log.plan_cap(2))
    log.close()
    (segment,) = log.segments()
    segment.write_bytes(segment.read_bytes().split(b"\n", 1)[1])  # rewritten

    assert log.apply_cap(copies) == 0
    assert [e.message for e in log.read_recent()] == ["4", "3", "2", "1"]
    assert [p.name for p in sorted(log.directory.iterdir())] == ["2026-01-31.jsonl"]


@pytest.mark.parametrize("block", [2, 7, 64, 4096])
def test_newest_first_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(history_module, "_READ_BUFFER", block)
    path = tmp_path / "segment.jsonl"
    lines = [b"first", b"", b"a longer line than a block of seven", b"last"]
    path.write_bytes(b"\n".join(lines) + b"\npartial")

    assert list(history_module._lines_newest_first(path)) == lines[::-1]
    assert list(history_module._lines(path)) == lines
    path.write_bytes(b"")
    assert list(history_module._lines_newest_first(path)) == []


def test_cap_removes_copy_left_by_crash(log: HistoryLog) -> None:
    log.append([event("Loading", message=str(n)) for n in range(5)], noon(DAY))
    plan = log.plan_cap(2)
    left = log.prepare_cap(plan)  # the process stopped before apply_cap

    assert log.apply_cap(log.prepare_cap(plan)) == 3
    assert not left[0].temporary.exists()
    assert [p.name for p in sorted(log.directory.iterdir())] == ["2026-01-31.jsonl"]


def test_cap_skips_removed_copy(log: HistoryLog) -> None:
    log.append([event("Loading", message=str(n)) for n in range(5)], noon(DAY))
    log.append([event("OK", domain="Quiet")], noon(DAY))
    plan = log.plan_cap(2)
    first = log.prepare_cap(plan)
    second = log.prepare_cap(plan)  # removes the first cap's copy

    assert log.apply_cap(first) == 0
    assert log.apply_cap(second) == 3
    assert [e.message for e in log.read_recent(domain="Actual")] == ["4", "3"]
    assert len(log.read_recent(domain="Quiet")) == 1


def test_failed_cap_removes_its_copies(
    log: HistoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append([event(message=str(n)) for n in range(5)], noon(DAY))
    log.close()
    log.append([event(message=str(n)) for n in range(5)], noon(DAY + timedelta(1)))
    plan = log.plan_cap(2)
    copies = 0
    real_fsync = os.fsync

    def fsync_fails_second(fd: int) -> None:
        nonlocal copies
        copies += 1
        if copies == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_second)
    with pytest.raises(OSError):
        log.prepare_cap(plan)

    assert [p.name for p in sorted(log.directory.iterdir())] == [
        "2026-01-31.jsonl",
        "2026-02-01.jsonl",
    ]


def test_cap_removes_every_leftover_copy(log: HistoryLog) -> None:
    log.append([event(message="kept")], noon(DAY))
    leftover = log.directory / ".cap-2025-12-01.jsonl.abc123"  # of a pruned day
    leftover.write_bytes(b"")

    assert log.apply_cap(log.prepare_cap(log.plan_cap(2))) == 0
    assert not leftover.exists()


def test_cap_copies_oldest_segment_first(log: HistoryLog) -> None:
    for day in (DAY + timedelta(1), DAY):
        write_segment(log.directory, f"{day.isoformat()}.jsonl", [event()] * 3)

    copies = log.prepare_cap(log.plan_cap(1))

    assert [c.path.name for c in copies] == ["2026-01-31.jsonl", "2026-02-01.jsonl"]


def test_long_reads_pause_for_other_threads(
    log: HistoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append([event(message=str(n)) for n in range(2500)], noon(DAY))
    pauses: list[float] = []
    monkeypatch.setattr(history_module.time, "sleep", pauses.append)

    log.plan_cap(10_000)
    counted = len(pauses)
    log.read_recent(domain="Elsewhere")

    assert counted == 2
    assert pauses == [0.001] * 4
