"""The event history: append-only JSON-lines segments, one file per UTC day.

Appending costs the same however long the history is, because a write touches only
the newest segment. Retention deletes whole segments, and keeps the failures of the
older ones in a smaller ``.failures.jsonl`` file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from store.files import ensure_private_dir, fsync_directory, write_atomic

log = logging.getLogger(__name__)

_FAILURE_STATUSES = {"Error", "Warning"}
# Longer than any event line: a 2000-character message escapes to at most 12 KB.
_MAX_LINE_BYTES = 32 * 1024
# Segments are read and copied beside the event loop. Each read or write gives up
# the interpreter lock and takes it back at once, which restarts the loop's wait
# for it. With 8 KiB buffers the loop waited up to 60 ms while a cap counted
# rows, and with 1 MiB buffers up to 9 ms, as for any busy thread.
_READ_BUFFER = 1024 * 1024
_PACE_LINES = 1000
_PACE_SECONDS = 0.001


# For each segment, how many of the oldest events of each row to drop.
CapPlan = dict[Path, dict[bytes, int]]
# The name of a cap's copy of a segment starts with this. It is no segment name,
# so readers and replays skip it, and no other file in the folder starts with it.
_CAP_COPY_PREFIX = ".cap-"


@dataclass(frozen=True, slots=True)
class CapCopy:
    """A copy of a segment without the events that the cap drops, made beside it.
    It covers the segment's first ``copied`` bytes, and ``line_hash`` is the hash
    of the line that ends there."""

    path: Path
    temporary: Path
    copied: int
    line_hash: str
    dropped: int


@dataclass(frozen=True, slots=True)
class HistoryPosition:
    """A place in the history: a day segment's file name, a byte offset, and a
    hash of the line that ends there. The hash shows whether retention rewrote
    the segment since."""

    segment: str
    offset: int
    line_hash: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One update as received, whether or not it changed the current status."""

    app: str
    domain: str
    status: str
    timestamp: str
    received_at: str
    job_id: str | None = None
    message: str | None = None
    source: str = "webhook"
    applied: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "domain": self.domain,
            "status": self.status,
            "timestamp": self.timestamp,
            "received_at": self.received_at,
            "job_id": self.job_id,
            "message": self.message,
            "source": self.source,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEvent:
        return cls(
            app=str(data["app"]),
            domain=str(data["domain"]),
            status=str(data["status"]),
            timestamp=str(data["timestamp"]),
            received_at=str(data["received_at"]),
            job_id=data.get("job_id"),
            message=data.get("message"),
            source=str(data.get("source", "webhook")),
            applied=bool(data.get("applied", True)),
        )


class HistoryLog:
    """The writer thread alone appends, rewrites and closes. ``read_recent`` and
    ``plan_cap`` only read files, so they may run on another thread."""

    def __init__(
        self, directory: Path, file_mode: int = 0o640, dir_mode: int = 0o750
    ) -> None:
        self.directory = directory
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._handle: IO[bytes] | None = None
        self._handle_day: date | None = None

    def append(self, events: Sequence[HistoryEvent], now: datetime) -> None:
        """Append events and fsync them. Raises OSError and leaves the segment as
        it was before the call, so no event of a failed append stays behind."""
        if not events:
            return
        day = self._append_day(now)
        handle = self._segment_for(day)
        payload = b"".join(_line(event) for event in events)
        start = handle.tell()
        try:
            view = memoryview(payload)
            while view:
                view = view[handle.write(view) :]
            os.fsync(handle.fileno())
        except OSError:
            self._undo_append(handle, start, day)
            raise

    def _append_day(self, now: datetime) -> date:
        day = now.astimezone(UTC).date()
        newest = self._handle_day or self._newest_day_on_disk()
        # After the clock stepped back over midnight, the newer segment goes on,
        # so the order of the segments stays the order of the writes.
        return max(day, newest) if newest is not None else day

    def _newest_day_on_disk(self) -> date | None:
        days = [_segment_day(path) for path in self.segments()]
        return max((day for day in days if day is not None), default=None)

    def _undo_append(self, handle: IO[bytes], start: int, day: date) -> None:
        # The caller gets a 503 response, so none of its lines may stay in the
        # log. Close the handle either way, so the next append starts on a new line.
        try:
            os.ftruncate(handle.fileno(), start)
            os.fsync(handle.fileno())
        except OSError:
            log.warning("could not remove a failed append from %s", self.directory)
        self.close()
        self._repair_tail(day)

    def position(self) -> HistoryPosition | None:
        """Where the next event will go: the newest day segment and its size."""
        if self._handle is not None and self._handle_day is not None:
            path = self.directory / _day_name(self._handle_day)
            offset = self._handle.tell()
        else:
            days = [path for path in self.segments() if _is_day_segment(path)]
            if not days:
                return None
            path, offset = days[-1], days[-1].stat().st_size
        return HistoryPosition(path.name, offset, _hash_line_before(path, offset))

    def read_after(
        self, position: HistoryPosition | None, damaged: list[Path] | None = None
    ) -> Iterator[HistoryEvent]:
        """Yield the events written after ``position``, oldest first; from the
        start of the oldest day segment when ``position`` is None. Each line that
        cannot be read adds its segment to ``damaged``."""
        for path in self.segments():
            if not _is_day_segment(path):
                continue
            offset = 0
            if position is not None and path.name < position.segment:
                continue
            if position is not None and path.name == position.segment:
                offset = position.offset
                if _hash_line_before(path, offset) != position.line_hash:
                    # Rewritten since. Replaying the whole day again, in order,
                    # costs time but skips no update.
                    log.warning("history %s changed since the checkpoint", path)
                    offset = 0
            for line in _lines(path, offset):
                event = _parse(line)
                if event is not None:
                    yield event
                elif line and damaged is not None:
                    damaged.append(path)

    def _segment_for(self, day: date) -> IO[bytes]:
        if self._handle is not None and self._handle_day == day:
            return self._handle
        self.close()
        ensure_private_dir(self.directory, self.dir_mode)
        path = self.directory / _day_name(day)
        is_new = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, self.file_mode)
        # The umask narrows the mode of a new file, and an old file may have another.
        os.fchmod(fd, self.file_mode)
        # A crash mid-append can leave a partial last line. End it, so the next
        # event starts a line of its own instead of joining the broken one.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
        # Unbuffered, so a failed append leaves no bytes behind to be written later.
        self._handle = os.fdopen(fd, "ab", buffering=0)
        self._handle_day = day
        if is_new:
            fsync_directory(self.directory)
        return self._handle

    def _repair_tail(self, day: date) -> None:
        path = self.directory / _day_name(day)
        try:
            with open(path, "rb+") as segment:
                data = segment.read()
                cut = data.rfind(b"\n") + 1
                if cut != len(data):
                    segment.truncate(cut)
        except OSError:
            log.warning("could not trim a partial line from %s", path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None
        self._handle_day = None

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    def read_recent(
        self, app: str | None = None, domain: str | None = None, limit: int = 50
    ) -> list[HistoryEvent]:
        """Return up to ``limit`` events, newest first, optionally of one row.

        Lines are parsed from the newest back, only until ``limit`` events are
        found, and a line without the row's names in it is not parsed at all.
        """
        names = [_ENCODE(name).encode() for name in (app, domain) if name is not None]
        found: list[HistoryEvent] = []
        for path in reversed(self.segments()):
            for line in _paced(_lines_newest_first(path)):
                if not all(name in line for name in names):
                    continue
                event = _parse(line)
                if event is None:
                    continue
                if app is not None and event.app != app:
                    continue
                if domain is not None and event.domain != domain:
                    continue
                found.append(event)
                if len(found) >= limit:
                    return found
        return found

    def prune(self, keep_days: int, today: date) -> int:
        """Apply retention and return how many segments were removed or shrunk.

        Segments older than ``keep_days`` keep only failures; failures are deleted
        after twice as long.
        """
        changed = 0
        for path in self.segments():
            day = _segment_day(path)
            if day is None:
                continue
            age = (today - day).days
            if age > 2 * keep_days:
                path.unlink()
                changed += 1
            elif age > keep_days and not path.name.endswith(".failures.jsonl"):
                events = _read_segment(path)
                failures = [e for e in events if e.status in _FAILURE_STATUSES]
                target = path.with_name(f"{day.isoformat()}.failures.jsonl")
                data = b"".join(_line(e) for e in failures)
                write_atomic(target, data, self.file_mode)
                path.unlink()
                changed += 1
        if changed:
            fsync_directory(self.directory)
        return changed

    def cap_rows(self, max_per_row: int) -> int:
        """Drop the oldest events of rows that have more than ``max_per_row``, and
        return how many events were dropped."""
        return self.apply_cap(self.prepare_cap(self.plan_cap(max_per_row)))

    def plan_cap(self, max_per_row: int) -> CapPlan:
        """Count the events of each row, newest segment first, and return how many
        of the oldest events of each row to drop from each segment.

        Only reads, so it may run beside appends: they add newer events only.
        """
        newer: dict[bytes, int] = {}
        plan: CapPlan = {}
        for path in reversed(self.segments()):
            counts: dict[bytes, int] = {}
            for line in _paced(_lines(path)):
                key = _row_key(line)
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
            drops = {}
            for key, count in counts.items():
                excess = newer.get(key, 0) + count - max_per_row
                if excess > 0:
                    drops[key] = min(count, excess)
                newer[key] = newer.get(key, 0) + count
            if drops:
                plan[path] = drops
        return plan

    def prepare_cap(self, plan: CapPlan) -> list[CapCopy]:
        """Copy each segment of ``plan`` without the events it drops, beside it,
        oldest segment first.

        Only reads the segments, so it may run beside appends, but not beside
        another cap: it first removes every copy left by an earlier cap, which a
        crash or a failure can leave. ``apply_cap`` adds what was appended since
        and puts the copies in place.
        """
        for stale in self.directory.glob(f"{_CAP_COPY_PREFIX}*"):
            stale.unlink(missing_ok=True)
        copies: list[CapCopy] = []
        try:
            for path in sorted(plan):
                copies.append(self._copy_without(path, dict(plan[path])))
        except BaseException:
            for copy in copies:
                copy.temporary.unlink(missing_ok=True)
            raise
        return copies

    def _copy_without(self, path: Path, drops: dict[bytes, int]) -> CapCopy:
        dropped = 0
        copied = 0
        fd, name = tempfile.mkstemp(
            prefix=f"{_CAP_COPY_PREFIX}{path.name}.", dir=path.parent
        )
        try:
            os.fchmod(fd, self.file_mode)
            with os.fdopen(fd, "wb", buffering=_READ_BUFFER) as copy:
                for line in _paced(_lines(path)):
                    copied += len(line) + 1
                    key = _row_key(line)
                    if key is not None and drops.get(key, 0) > 0:
                        drops[key] -= 1
                        dropped += 1
                    else:
                        copy.write(line + b"\n")
                copy.flush()
                os.fsync(copy.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        line_hash = _hash_line_before(path, copied)
        return CapCopy(path, Path(name), copied, line_hash, dropped)

    def apply_cap(self, copies: Sequence[CapCopy]) -> int:
        """Put the copies of ``prepare_cap`` in place of their segments, with the
        events appended since, and return how many events were dropped.

        Not thread-safe, like append. It reads only what was appended since the
        copy, so appends wait for little. A segment that changed otherwise since
        (pruned or rewritten) keeps its events until the next cap. The oldest
        segment goes first, so a crash between two leaves the newer events.
        """
        dropped = 0
        for index, copy in enumerate(copies):
            try:
                unchanged = copy.path.exists() and (
                    _hash_line_before(copy.path, copy.copied) == copy.line_hash
                )
                if not unchanged:
                    copy.temporary.unlink(missing_ok=True)
                    continue
                with open(copy.path, "rb") as segment:
                    segment.seek(copy.copied)
                    appended = segment.read()
                try:
                    # Not created when missing: a copy that another cap removed
                    # must not become an empty segment.
                    fd = os.open(copy.temporary, os.O_WRONLY | os.O_APPEND)
                except FileNotFoundError:
                    continue
                with os.fdopen(fd, "ab") as target:
                    target.write(appended)
                    target.flush()
                    os.fsync(target.fileno())
                if copy.path.name == self._current_name():
                    # The open handle appends to the old inode after a replace.
                    self.close()
                os.replace(copy.temporary, copy.path)
            except BaseException:
                for left in copies[index:]:
                    left.temporary.unlink(missing_ok=True)
                raise
            dropped += copy.dropped
        if copies:
            fsync_directory(self.directory)
        return dropped

    def _current_name(self) -> str | None:
        if self._handle_day is None:
            return None
        return _day_name(self._handle_day)


# One encoder for every line: json.dumps builds a new one for each call with options.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


# The start of a line as _line writes it: the app and the domain as JSON strings.
_ROW_PREFIX = re.compile(rb'\{"app":("(?:[^"\\]|\\.)*"),"domain":("(?:[^"\\]|\\.)*"),')


def _row_key(line: bytes) -> bytes | None:
    """Return a key for the row of a history line, or None for a damaged line.

    Retention counts every line of the history, so the usual line is read with a
    regular expression instead of being parsed.
    """
    match = _ROW_PREFIX.match(line)
    if match is not None:
        return match.group(1) + b"," + match.group(2)
    event = _parse(line)
    if event is None:
        return None
    return _ENCODE(event.app).encode() + b"," + _ENCODE(event.domain).encode()


def _line(event: HistoryEvent) -> bytes:
    return _ENCODE(event.to_json()).encode() + b"\n"


def _day_name(day: date) -> str:
    return f"{day.isoformat()}.jsonl"


def _is_day_segment(path: Path) -> bool:
    return _segment_day(path) is not None and not path.name.endswith(".failures.jsonl")


def _segment_day(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.name[:10])
    except ValueError:
        return None


def _hash_line_before(path: Path, offset: int) -> str:
    """Hash the line that ends at ``offset``: "" at the start or past the end."""
    try:
        with open(path, "rb") as segment:
            size = segment.seek(0, os.SEEK_END)
            if offset == 0 or offset > size:
                return ""
            start = max(0, offset - _MAX_LINE_BYTES)
            segment.seek(start)
            before = segment.read(offset - start)
    except FileNotFoundError:
        return ""
    line = before[before.rfind(b"\n", 0, len(before) - 1) + 1 :]
    return hashlib.sha256(line).hexdigest()[:32]


def _lines(path: Path, offset: int = 0) -> Iterator[bytes]:
    """Yield the lines of a segment from ``offset`` that end in a newline, without
    it, read a buffer at a time.

    A last line without a newline was cut short by a crash before its update was
    acknowledged. A segment can hold hundreds of thousands of lines, and one
    split of the whole file would hold the interpreter lock for all of it.
    """
    try:
        segment = open(path, "rb", buffering=_READ_BUFFER)
    except FileNotFoundError:
        return
    with segment:
        segment.seek(offset)
        for line in segment:
            if not line.endswith(b"\n"):
                return
            yield line[:-1]


def _paced(lines: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``lines``, pausing 1 ms after every 1,000 for the other threads.

    While the event loop and a long read on this thread take turns with the
    interpreter lock, the store's writer thread waits long for it. A waiting
    thread claims the lock only after a switch interval in which no other
    thread took it. Under load, a group's write took 23 ms at the median and
    up to 60 ms while a cap counted rows (2 ms otherwise), and 10 and 21 ms
    with these pauses.
    """
    for count, line in enumerate(lines, start=1):
        yield line
        if count % _PACE_LINES == 0:
            time.sleep(_PACE_SECONDS)


def _lines_newest_first(path: Path) -> Iterator[bytes]:
    """Yield the complete lines of a segment from the last to the first."""
    try:
        segment = open(path, "rb")
    except FileNotFoundError:
        return
    with segment:
        end = segment.seek(0, os.SEEK_END)
        # ``carry`` is what was read before its first newline: the end of a line
        # that starts in an earlier block. Until a newline is found, it is the
        # text after the file's last newline, which is no complete line.
        carry = b""
        complete = False
        while end > 0:
            start = max(0, end - _READ_BUFFER)
            segment.seek(start)
            pieces = (segment.read(end - start) + carry).split(b"\n")
            end = start
            carry = pieces.pop(0)
            if pieces and not complete:
                pieces.pop()
                complete = True
            yield from reversed(pieces)
        if complete:
            yield carry


def _parse(line: bytes) -> HistoryEvent | None:
    try:
        return HistoryEvent.from_json(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _read_segment(path: Path, offset: int = 0) -> Iterator[HistoryEvent]:
    for line in _lines(path, offset):
        event = _parse(line)
        if event is not None:
            yield event
