"""The status store: current rows in TinyDB, every update in the history log.

Writes from concurrent callers are grouped: while one group is being written by the
single writer thread, the next requests queue up and go to disk together in the
following write. ``apply`` returns only after its group is on disk, so a caller may
acknowledge an update as soon as ``apply`` returns.

An update is on disk once its history line is fsync'd. The rows file is a
checkpoint that records the history position it covers. It is rewritten about once
per ``checkpoint_seconds`` while updates arrive, with every meta write, and at
close. ``open`` replays the history written after that position. So a group costs
one append, not a rewrite of the whole rows file.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinydb import Query, TinyDB

from store.files import ensure_private_dir, write_atomic
from store.history import HistoryEvent, HistoryLog, HistoryPosition
from store.models import Change, Record, RowKey, Snapshot, Status, Update, iso
from store.rules import apply_update
from store.tinydb_storage import AtomicJSONStorage, StoreCorruptError

log = logging.getLogger(__name__)

Listener = Callable[[Snapshot, Sequence[Change]], None]

DATA_DIR_MODE = 0o750
DATA_FILE_MODE = 0o640
# How far the rows file may lag the history. A crash costs at most this much
# history to replay at the next start; nothing acknowledged is lost.
CHECKPOINT_SECONDS = 1.0


class StoreUnavailable(Exception):
    """The update could not be written (disk full, read-only, I/O error)."""


class _MetaNotSaved(Exception):
    """The group's history is on disk, but the rows file with its meta is not."""


class TooManyRows(ValueError):
    """A new app/domain would pass the configured maximum number of rows."""

    def __init__(self, app: str, domain: str, limit: int) -> None:
        self.app = app
        self.domain = domain
        self.limit = limit
        super().__init__(
            f"row {app}/{domain} is new and the board already has {limit} rows, the "
            "maximum. List the apps in apps.json or raise EPMPULSE_MAX_ROWS."
        )


@dataclass
class _Pending:
    updates: Sequence[Update]
    meta: dict[str, Any]
    future: asyncio.Future[list[Change]]


class StatusStore:
    """Usage::

    store = StatusStore(Path("data"))
    await store.open()
    changes = await store.apply([update])   # on disk when this returns
    store.snapshot.get("Planning", "Actual")
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_rows: int | None = None,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "epmpulse.json"
        self.history = HistoryLog(data_dir / "history", DATA_FILE_MODE)
        self.clock = clock
        self.max_rows = max_rows
        self.checkpoint_seconds = checkpoint_seconds
        self.last_write_error: str | None = None
        self.last_write_seconds: float | None = None
        self.write_observer: Callable[[float], None] | None = None
        # History events per row since the per-row cap last ran (writer thread).
        self.appended_since_cap: dict[RowKey, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        # History reads scan files, so they get their own thread: on the writer's,
        # a long read would hold up every write queued behind it.
        self._reader = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="history-reader"
        )
        self._storage: AtomicJSONStorage | None = None
        self._db: TinyDB | None = None
        self._rows: dict[RowKey, Record] = {}
        self._doc_ids: dict[RowKey, int] = {}
        self._meta: dict[str, Any] = {}
        self._snapshot = Snapshot()
        self._listeners: list[Listener] = []
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        # Used on the writer thread only. _unsaved lists the rows changed since
        # the rows file was written at _saved_at. _position_stale is set when a
        # history rewrite was not followed by a checkpoint.
        self._latest_rows: dict[RowKey, Record] = {}
        self._unsaved: dict[RowKey, None] = {}  # a set that keeps order
        self._saved_at = -math.inf
        self._position_stale = False

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Load the data file. Raises StoreCorruptError naming a damaged file."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        self._snapshot = self._make_snapshot()

    def _open(self) -> None:
        ensure_private_dir(self.data_dir, DATA_DIR_MODE)
        self._storage = AtomicJSONStorage(self.db_path, DATA_FILE_MODE)
        self._db = TinyDB(storage=lambda: self._storage)
        try:
            self._load_tables()
        except (TypeError, ValueError, AttributeError) as exc:
            # TinyDB's own errors for a table that is not an object of objects
            # with numeric ids.
            raise StoreCorruptError(
                f"data file {self.db_path} has a damaged table ({exc}). Restore it "
                "from a backup or move it away, and EPMPulse rebuilds the board "
                "from the history."
            ) from exc
        self._replay()
        self._latest_rows = dict(self._rows)

    def _load_tables(self) -> None:
        assert self._db is not None
        for doc in self._db.table("rows").all():
            try:
                record = record_from_doc(doc)
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreCorruptError(
                    f"data file {self.db_path} has an invalid row {dict(doc)!r} "
                    f"({exc}). Restore it from a backup or move it away."
                ) from exc
            key = (record.app, record.domain)
            self._rows[key] = record
            self._doc_ids[key] = doc.doc_id
        for doc in self._db.table("meta").all():
            if "key" not in doc or "value" not in doc:
                raise StoreCorruptError(
                    f"data file {self.db_path} has an invalid meta entry "
                    f"{dict(doc)!r}. Restore it from a backup or move it away."
                )
            self._meta[str(doc["key"])] = doc["value"]
        # Read here too, so that a damaged checkpoint table fails like the others.
        self._db.table(_CHECKPOINT_TABLE).all()

    def _replay(self) -> None:
        """Apply the history written after the rows file's checkpoint."""
        assert self._db is not None
        saved = self._db.table(_CHECKPOINT_TABLE).all()
        position: HistoryPosition | None = None

        if saved:
            try:
                position = _position_from_doc(saved[0])
            except ValueError as exc:
                raise StoreCorruptError(
                    f"data file {self.db_path} has an invalid checkpoint "
                    f"{saved[0]!r} ({exc}). Restore it from a backup or move it "
                    "away."
                ) from exc
        elif self.db_path.exists():
            # NOTE: taken as a rows file written before checkpoints, which is
            # current. A checkpoint table deleted by hand looks the same.
            return
        # Without a rows file, the whole history is replayed: the first write
        # may have failed or crashed after its history line was on disk.
        if (
            position is not None
            and not (self.history.directory / position.segment).exists()
        ):
            log.warning(
                "history segment %s, where the rows file's checkpoint ends, is "
                "missing; replaying the segments after it",
                position.segment,
            )

        replayed = 0
        damaged: list[Path] = []
        for event in self.history.read_after(position, damaged):
            try:
                update = update_from_event(event)
            except ValueError:
                log.warning("invalid history event %r skipped in the replay", event)
                continue

            key = (update.app, update.domain)
            change, _ = apply_update(self._rows.get(key), update)
            if change.changed and change.after is not None:
                self._rows[key] = change.after
                self._unsaved[key] = None
            replayed += 1

        if damaged:
            log.warning(
                "skipped %d history line(s) that cannot be read, in %s: damaged, "
                "or cut short by a crash before their update was acknowledged",
                len(damaged),
                ", ".join(sorted({path.name for path in damaged})),
            )
        if not replayed:
            return
        log.info(
            "replayed %d history event(s) into %s",
            replayed,
            self.db_path,
        )
        self._checkpoint_or_warn(self._rows, "after the replay")

    def _checkpoint_or_warn(self, rows: dict[RowKey, Record], when: str) -> None:
        try:
            self._checkpoint(rows, {})
        except OSError as exc:
            log.warning(
                "the rows file could not be written %s (%s). The history contains "
                "every update and is replayed at the next start.",
                when,
                exc,
            )

    async def drain(self) -> None:
        """Wait until every queued write has finished."""
        while self._pending or not self._idle.is_set():
            await self._idle.wait()

    async def close(self) -> None:
        """Finish queued writes and stop the writer thread. A second call does
        nothing."""
        if self._closed:
            return
        await self.drain()
        if self._checkpoint_timer is not None:
            # _close_files writes the rows file instead.
            self._checkpoint_timer.cancel()
            self._checkpoint_timer = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_files)
        self._executor.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._closed = True

    def _close_files(self) -> None:
        if self._db is not None and (self._unsaved or self._position_stale):
            self._checkpoint_or_warn(self._latest_rows, "at shutdown")
        self.history.close()

    # --- reading -------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self._meta.get(key, default)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(snapshot, changes)`` on the event loop after each write."""
        self._listeners.append(listener)

    async def read_history(
        self, app: str | None = None, domain: str | None = None, limit: int = 50
    ) -> list[HistoryEvent]:
        """Return up to ``limit`` history events, newest first."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, self.history.read_recent, app, domain, limit
        )

    async def probe_writable(self) -> str | None:
        """Write a small file in the data dir the way data is written; return the
        error, or None when the data dir can be written."""
        probe = self.data_dir / ".health-probe"

        def write() -> None:
            write_atomic(probe, b"ok\n", DATA_FILE_MODE)

        try:
            await self.run_in_writer(write)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def run_in_reader(self, func: Callable[[], Any]) -> Any:
        """Run a read of the history files beside the writes, on the reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, func)

    async def run_in_writer(self, func: Callable[[], Any]) -> Any:
        """Run file work on the writer thread, after the writes queued so far."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def rewrite_history(self, rewrite: Callable[[HistoryLog], int]) -> int:
        """Run ``rewrite`` (retention) on the history and return its result.

        The rows file is brought up to date first, because a rewrite moves the
        history position that the rows file records. Raises OSError, without
        running ``rewrite``, when the rows file cannot be written.
        """

        def run() -> int:
            if self._unsaved or self._position_stale:
                self._checkpoint(self._latest_rows, {})
            changed = rewrite(self.history)
            if changed:
                self._position_stale = True
                try:
                    self._checkpoint(self._latest_rows, {})
                except OSError as exc:
                    # Every write now checkpoints before it appends, or fails.
                    log.warning("rows file not written after retention: %s", exc)
            return changed

        result: int = await self.run_in_writer(run)
        return result

    # --- writing -------------------------------------------------------------

    async def apply(self, updates: Sequence[Update]) -> list[Change]:
        """Apply updates in order and return once they are on disk.

        Raises StoreUnavailable when the write fails (nothing of the group is kept)
        and TooManyRows when a new row would pass ``max_rows``.
        """
        self._check_row_limit(updates)
        return await self._enqueue(updates, {})

    async def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON value (a canvas id, a message ts) durably.

        Raises StoreUnavailable when the write fails.
        """
        await self._enqueue((), {key: value})

    async def _enqueue(
        self, updates: Sequence[Update], meta: dict[str, Any]
    ) -> list[Change]:
        future: asyncio.Future[list[Change]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append(_Pending(updates, meta, future))
        self._kick()
        return await future

    def _check_row_limit(self, updates: Sequence[Update]) -> None:
        # NOTE: checked before the update is queued, so concurrent requests for
        # new rows can pass max_rows by a few.
        if self.max_rows is None:
            return
        rows = self._rows
        if len(updates) == 1 and (updates[0].app, updates[0].domain) in rows:
            return  # The usual case, without building a generator.
        new_keys = {(u.app, u.domain) for u in updates} - rows.keys()
        if new_keys and len(self._rows) + len(new_keys) > self.max_rows:
            app, domain = sorted(new_keys)[0]
            raise TooManyRows(app, domain, self.max_rows)

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._idle.clear()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write_group(loop, batch)
        finally:
            self._idle.set()

    async def _write_group(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Pending],
    ) -> None:
        now = self.clock()
        meta = {k: v for pending in batch for k, v in pending.meta.items()}
        rows = dict(self._rows)
        results: list[list[Change]] = []
        events: list[HistoryEvent] = []
        for pending in batch:
            changes = []
            for update in pending.updates:
                key = (update.app, update.domain)
                change, event = apply_update(rows.get(key), update)
                if change.changed and change.after is not None:
                    rows[key] = change.after
                if event is not None:
                    events.append(event)
                changes.append(change)
            results.append(changes)
        changed_keys = [key for key in rows if rows[key] is not self._rows.get(key)]

        started = time.perf_counter()
        meta_error: StoreUnavailable | None = None
        try:
            unsaved = await loop.run_in_executor(
                self._executor, self._write, rows, changed_keys, events, meta, now
            )
        except _MetaNotSaved as exc:
            # The group's updates are safe in the history, so only the callers
            # of set_meta get StoreUnavailable.
            unsaved = True
            meta_error = StoreUnavailable(f"{type(exc.__cause__).__name__}: {exc}")
            log.error("store write failed, meta not stored: %s", meta_error)
        except OSError as exc:
            self.last_write_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "store write failed, %d update(s) not stored: %s",
                sum(len(p.updates) for p in batch),
                self.last_write_error,
            )
            self._fail(batch, StoreUnavailable(self.last_write_error))
            return
        except Exception as exc:
            # A bug such as a meta value that JSON cannot encode. The callers get
            # the error instead of waiting forever, and the writer keeps running.
            log.exception("store write failed with an unexpected error")
            self._fail(batch, exc)
            return
        self.last_write_seconds = time.perf_counter() - started
        self.last_write_error = None if meta_error is None else str(meta_error)
        if self.write_observer is not None:
            self.write_observer(self.last_write_seconds)

        self._rows = rows
        if meta_error is None:
            self._meta.update(meta)
        all_changes = [change for changes in results for change in changes]
        if changed_keys:
            self._snapshot = self._make_snapshot(now)
        for pending, changes in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if pending.meta and meta_error is not None:
                pending.future.set_exception(meta_error)
            else:
                pending.future.set_result(changes)
        if unsaved:
            self._schedule_checkpoint()
        if changed_keys:
            self._notify(all_changes)

    def _schedule_checkpoint(self) -> None:
        """Write the rows file soon, so it does not lag when updates stop."""
        if self._checkpoint_timer is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._checkpoint_timer = loop.call_later(
            self.checkpoint_seconds, self._checkpoint_due
        )

    def _checkpoint_due(self) -> None:
        self._checkpoint_timer = None
        self._checkpoint_task = asyncio.get_running_loop().create_task(
            self._write_checkpoint()
        )

    async def _write_checkpoint(self) -> None:
        # An empty group: _write finds the checkpoint due and writes the rows file.
        try:
            await self._enqueue((), {})
        except Exception as exc:
            # _write_group has logged the failure at its level already.
            log.debug("checkpoint write failed (%s); the next write retries it", exc)

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _write(
        self,
        rows: dict[RowKey, Record],
        changed_keys: list[RowKey],
        events: list[HistoryEvent],
        meta: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Write a group on the writer thread; return whether rows wait for a
        checkpoint. Raises OSError when nothing of the group is stored, and
        _MetaNotSaved when the history contains the group but ``meta`` is lost."""
        if self._position_stale:
            # The rows file's history position predates a rewrite, so an
            # append now could be missed by a replay. Fix the position first.
            self._checkpoint(self._latest_rows, {})
        self.history.append(events, now)
        self._latest_rows = rows
        for event in events:
            key = (event.app, event.domain)
            self.appended_since_cap[key] = self.appended_since_cap.get(key, 0) + 1
        self._unsaved.update(dict.fromkeys(changed_keys))
        due = time.monotonic() - self._saved_at >= self.checkpoint_seconds
        if meta or (self._unsaved and due):
            try:
                self._checkpoint(rows, meta)
            except OSError as exc:
                if meta:
                    raise _MetaNotSaved(str(exc)) from exc
                log.warning(
                    "rows file not written (%s: %s); the updates are in the "
                    "history and the write is retried",
                    type(exc).__name__,
                    exc,
                )
        return bool(self._unsaved)

    def _checkpoint(self, rows: dict[RowKey, Record], meta: dict[str, Any]) -> None:
        """Write the unsaved rows, ``meta`` and the history position, atomically."""
        assert self._db is not None and self._storage is not None
        table = self._db.table("rows")
        new_ids: dict[RowKey, int] = {}
        updated: dict[RowKey, dict[str, Any]] = {}
        try:
            for key in self._unsaved:
                doc = record_to_doc(rows[key])
                if key in self._doc_ids:
                    updated[key] = doc
                else:
                    new_ids[key] = table.insert(doc)
            if updated:
                # One update() for the whole group, because TinyDB copies the
                # whole table on every call.
                def merge(stored: MutableMapping[str, Any]) -> None:
                    stored.update(updated[(stored["app"], stored["domain"])])

                table.update(merge, doc_ids=[self._doc_ids[key] for key in updated])
            meta_table = self._db.table("meta")
            for name, value in meta.items():
                meta_table.upsert({"key": name, "value": value}, Query().key == name)
            checkpoint = self._db.table(_CHECKPOINT_TABLE)
            checkpoint.truncate()
            checkpoint.insert(_position_to_doc(self.history.position()))
            self._storage.flush()
        except BaseException:
            self._storage.rollback()
            self._db.clear_cache()
            raise
        self._doc_ids.update(new_ids)
        self._unsaved.clear()
        self._saved_at = time.monotonic()
        self._position_stale = False

    def _make_snapshot(self, now: datetime | None = None) -> Snapshot:
        updated = max((r.received_at for r in self._rows.values()), default=None)
        return Snapshot(MappingProxyType(dict(self._rows)), updated or now)

    def _notify(self, changes: Sequence[Change]) -> None:
        for listener in self._listeners:
            try:
                listener(self._snapshot, changes)
            except Exception:
                log.exception("store listener %r failed", listener)


_CHECKPOINT_TABLE = "checkpoint"


def _position_to_doc(position: HistoryPosition | None) -> dict[str, Any]:
    if position is None:
        return {"segment": None, "offset": 0, "line_hash": ""}
    return {
        "segment": position.segment,
        "offset": position.offset,
        "line_hash": position.line_hash,
    }


def _position_from_doc(doc: dict[str, Any]) -> HistoryPosition | None:
    segment, offset = doc.get("segment"), doc.get("offset")
    line_hash = doc.get("line_hash", "")
    if segment is None:
        return None
    if (
        not isinstance(segment, str)
        or not isinstance(offset, int)
        or offset < 0
        or not isinstance(line_hash, str)
    ):
        raise ValueError(
            "segment must be a file name, offset a byte count, line_hash a string"
        )
    return HistoryPosition(segment, offset, line_hash)


def update_from_event(event: HistoryEvent) -> Update:
    """Rebuild the update that a history event records; raise ValueError."""
    return Update(
        app=event.app,
        domain=event.domain,
        status=Status(event.status),
        received_at=datetime.fromisoformat(event.received_at),
        timestamp=datetime.fromisoformat(event.timestamp),
        job_id=event.job_id,
        message=event.message,
        source=event.source,
    )


def _iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_to_doc(record: Record) -> dict[str, Any]:
    return {
        "app": record.app,
        "domain": record.domain,
        "status": record.status.value,
        "timestamp": _iso(record.timestamp),
        "received_at": _iso(record.received_at),
        "since": _iso(record.since),
        "job_id": record.job_id,
        "message": record.message,
        "source": record.source,
        "run_first_seen_at": _iso(record.run_first_seen_at),
        "run_started_at": _iso(record.run_started_at),
        "run_finished_at": _iso(record.run_finished_at),
    }


def record_from_doc(doc: dict[str, Any]) -> Record:
    timestamp = _parse(doc["timestamp"])
    received = _parse(doc["received_at"])
    if timestamp is None or received is None:
        raise ValueError("timestamp and received_at must be set")
    return Record(
        app=doc["app"],
        domain=doc["domain"],
        status=Status(doc["status"]),
        timestamp=timestamp,
        received_at=received,
        since=_parse(doc.get("since")) or timestamp,
        job_id=doc.get("job_id"),
        message=doc.get("message"),
        source=doc.get("source", "webhook"),
        run_first_seen_at=_parse(doc.get("run_first_seen_at")),
        run_started_at=_parse(doc.get("run_started_at")),
        run_finished_at=_parse(doc.get("run_finished_at")),
    )
