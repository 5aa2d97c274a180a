"""``epmpulse backup`` and ``epmpulse restore``: gzip'd tar archives of the data dir.

An archive contains ``data/`` (the data dir's files), ``config/apps.json`` when that
file exists, and ``epmpulse-backup.json``, a manifest with the size and SHA-256 of
every file. The secrets folder is added only on request.

A backup may run while the server runs, and stays consistent without stopping it:
the server replaces ``epmpulse.json`` by an atomic rename, so one read gets one
whole version. That file is a checkpoint that names the history position it
covers, and the history only grows past it. So reading ``epmpulse.json`` first and
the history after it gives every update up to the moment the history was read. The
server replays the part after the checkpoint when it starts on the restored files.
A history line that is still being appended is left out. Restore takes the data
dir's lock, so it never runs under a live server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from store.files import ensure_private_dir, fsync_directory, write_atomic
from store.lock import LOCK_FILE, DataDirLock
from store.store import DATA_DIR_MODE, DATA_FILE_MODE

log = logging.getLogger(__name__)

BACKUP_PREFIX = "epmpulse-backup-"
PRE_RESTORE_PREFIX = "epmpulse-pre-restore-"
ARCHIVE_SUFFIX = ".tar.gz"
MANIFEST_NAME = "epmpulse-backup.json"
DATA_PREFIX = "data"
CONFIG_NAME = "config/apps.json"
FORMAT_VERSION = 1
DEFAULT_KEEP = 30
SECRETS_DIR = "secrets"
SECRETS_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600
# The default archive folder inside the data dir; never archived or replaced.
BACKUPS_DIR = "backups"
STATUS_FILE = "epmpulse.json"
APPENDED_SUFFIXES = (".jsonl", ".log")
# Extraction and swap folders of a restore; their dot names keep them out of backups.
_STAGING_PREFIX = ".restore-"


class BackupError(Exception):
    """A backup or restore failed. The message names the file and what to do."""


@dataclass
class BackupResult:
    path: Path
    files: int
    size: int
    includes_secrets: bool
    removed: list[Path] = field(default_factory=list)


@dataclass
class RestoreResult:
    files: int
    pre_restore: Path | None
    config_restored: bool
    created_at: str


def default_backup_dir(data_dir: Path) -> Path:
    return data_dir / BACKUPS_DIR


# --- backup -----------------------------------------------------------------


def create_backup(
    data_dir: Path,
    out_dir: Path,
    *,
    apps_config: Path | None = None,
    include_secrets: bool = False,
    keep: int | None = DEFAULT_KEEP,
    exclude: Iterable[Path] = (),
    prefix: str = BACKUP_PREFIX,
    now: datetime | None = None,
) -> BackupResult:
    """Write ``<out_dir>/<prefix><UTC time>.tar.gz`` and prune old backups.

    ``exclude`` lists paths inside the data dir to leave out (a log file there).
    ``keep`` keeps the newest N archives of ``prefix`` in ``out_dir``; None keeps
    all. The archive appears under its final name only once it is complete and
    fsync'd. Raises BackupError when the data dir is missing, OSError on a write
    failure.
    """
    if not data_dir.is_dir():
        raise BackupError(
            f"data dir {data_dir} does not exist: check EPMPULSE_DATA_DIR"
        )
    _check_out_dir(data_dir, out_dir)
    now = now or datetime.now(UTC)
    if not out_dir.is_dir():
        ensure_private_dir(out_dir, DATA_DIR_MODE)
    skipped = _excluded_paths(data_dir, out_dir, exclude)
    files: dict[str, dict[str, Any]] = {}

    def fill(archive: tarfile.TarFile) -> None:
        # One file in memory at a time; the manifest goes last, once every
        # checksum is known.
        for path, name in _data_files(data_dir, include_secrets, skipped):
            read = _read_consistent(path)
            if read is not None:
                _add(archive, f"{DATA_PREFIX}/{name}", *read, files)
        if apps_config is not None:
            read = _read_consistent(apps_config)
            if read is not None:
                _add(archive, CONFIG_NAME, *read, files)
        manifest = _manifest(files, data_dir, apps_config, include_secrets, now)
        encoded = json.dumps(manifest, indent=2).encode() + b"\n"
        _add(archive, MANIFEST_NAME, encoded, now.timestamp(), {})

    target = out_dir / f"{prefix}{now:%Y%m%dT%H%M%S.%f}Z{ARCHIVE_SUFFIX}"
    size = _write_archive(target, fill, include_secrets)
    removed = prune_backups(out_dir, keep, prefix) if keep is not None else []
    log.info("backup %s written: %d file(s), %d bytes", target, len(files), size)
    return BackupResult(target, len(files), size, include_secrets, removed)


def prune_backups(out_dir: Path, keep: int, prefix: str = BACKUP_PREFIX) -> list[Path]:
    """Delete all but the newest ``keep`` archives named ``<prefix>*.tar.gz``."""
    archives = sorted(out_dir.glob(f"{prefix}*{ARCHIVE_SUFFIX}"))
    doomed = archives[: max(0, len(archives) - keep)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _check_out_dir(data_dir: Path, out_dir: Path) -> None:
    """Raise BackupError for an output folder in the data dir other than the
    default one: its archives would go into later backups (or leave its files
    out), and a restore, which replaces the data dir, would delete them."""
    data, out = data_dir.resolve(), out_dir.resolve()
    if out == default_backup_dir(data_dir).resolve():
        return
    if out == data or data in out.parents:
        raise BackupError(
            f"--out {out_dir} is inside the data dir {data_dir}: "
            f"write backups to {default_backup_dir(data_dir)} (the default) or to "
            "a folder outside the data dir, ideally on another disk"
        )


def _excluded_paths(data_dir: Path, out_dir: Path, extra: Iterable[Path]) -> set[Path]:
    paths = {data_dir / LOCK_FILE, default_backup_dir(data_dir), out_dir, *extra}
    return {path.resolve() for path in paths}


def _data_files(
    data_dir: Path, include_secrets: bool, skipped: set[Path]
) -> Iterator[tuple[Path, str]]:
    """Yield (path, archive name) of every regular file to back up.

    The status file comes first, because the history that follows must contain
    every update it reflects. Dot files are write_atomic's temporary files or a
    restore's work folders; symbolic links are not followed.
    """
    status = data_dir / STATUS_FILE
    if status.is_file() and not status.is_symlink():
        yield status, STATUS_FILE
    for root, dirs, files in os.walk(data_dir):
        folder = Path(root)
        dirs[:] = sorted(
            name
            for name in dirs
            if not name.startswith(".")
            and (folder / name).resolve() not in skipped
            and not (folder / name).is_symlink()
            and (include_secrets or folder / name != data_dir / SECRETS_DIR)
        )
        for name in sorted(files):
            path = folder / name
            relative = path.relative_to(data_dir).as_posix()
            if name.startswith(".") or relative == STATUS_FILE:
                continue
            if path.is_symlink() or not path.is_file():
                continue
            if path.resolve() in skipped:
                continue
            yield path, relative


def _read_consistent(path: Path) -> tuple[bytes, float] | None:
    """Read a file once and return its content and modification time.

    A line-per-event file (history, alerts log) loses a last line that is still
    being appended. Returns None for a file that is gone.
    """
    try:
        with open(path, "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            content = handle.read()
    except FileNotFoundError:
        # Retention or a rename removed it between the listing and the read.
        return None
    if path.suffix in APPENDED_SUFFIXES:
        content = content[: content.rfind(b"\n") + 1]
    return content, mtime


def _manifest(
    files: dict[str, dict[str, Any]],
    data_dir: Path,
    apps_config: Path | None,
    include_secrets: bool,
    now: datetime,
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "created_at": now.isoformat(),
        "epmpulse_version": _version(),
        "data_dir": str(data_dir.resolve()),
        "apps_config": str(apps_config.resolve()) if apps_config else None,
        "includes_secrets": include_secrets,
        "files": files,
    }


def _version() -> str:
    try:
        return metadata.version("epmpulse")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_archive(
    target: Path, fill: Callable[[tarfile.TarFile], None], include_secrets: bool
) -> int:
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        # An archive with secrets contains the API keys, so only the owner may read it.
        os.fchmod(fd, SECRET_FILE_MODE if include_secrets else DATA_FILE_MODE)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as archive:
                fill(archive)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return target.stat().st_size


def _add(
    archive: tarfile.TarFile,
    name: str,
    content: bytes,
    mtime: float,
    files: dict[str, dict[str, Any]],
) -> None:
    """Add a member and record its size and checksum in ``files``."""
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = int(mtime)
    info.mode = SECRET_FILE_MODE if _is_secret(name) else DATA_FILE_MODE
    archive.addfile(info, io.BytesIO(content))
    files[name] = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def _is_secret(name: str) -> bool:
    return name.startswith(f"{DATA_PREFIX}/{SECRETS_DIR}/")


# --- restore ----------------------------------------------------------------


def restore_backup(
    archive_path: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    apps_config: Path | None = None,
    restore_config: bool = False,
    exclude: Iterable[Path] = (),
) -> RestoreResult:
    """Replace the data dir's files with those of an archive.

    Takes the data dir's lock first (raises store.lock.DataDirLocked while a server
    runs), checks every file of the archive against its manifest, then saves the
    files it is about to replace as ``<out_dir>/epmpulse-pre-restore-*.tar.gz``.
    The secrets folder is replaced only when the archive contains one, and the
    apps config only with ``restore_config``. Raises BackupError for an invalid or
    damaged archive, before anything is changed.
    """
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=data_dir))
        try:
            manifest, config = _extract_verified(archive_path, staging)
            with_secrets = bool(manifest.get("includes_secrets"))
            pre_restore = _save_current(
                data_dir, out_dir, apps_config, with_secrets, exclude
            )
            files = _swap_in(
                staging / DATA_PREFIX, data_dir, out_dir, with_secrets, exclude
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        restored_config = False
        if restore_config and config is not None and apps_config is not None:
            write_atomic(apps_config, config, DATA_FILE_MODE)
            restored_config = True
    finally:
        lock.release()
    return RestoreResult(
        files, pre_restore, restored_config, str(manifest.get("created_at"))
    )


def _extract_verified(
    archive_path: Path, staging: Path
) -> tuple[dict[str, Any], bytes | None]:
    """Extract the data files into ``staging/data`` with the modes the server
    uses; return the manifest and the apps config bytes (None if absent)."""
    try:
        with tarfile.open(archive_path, mode="r:gz") as archive:
            return _extract_members(archive, archive_path, staging)
    except FileNotFoundError as exc:
        raise BackupError(f"backup {archive_path} not found") from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError(
            f"{archive_path} is not a readable .tar.gz archive or is damaged "
            f"({exc}); use another backup"
        ) from exc


def _extract_members(
    archive: tarfile.TarFile, archive_path: Path, staging: Path
) -> tuple[dict[str, Any], bytes | None]:
    members = archive.getmembers()
    manifest = _read_manifest(archive, members, archive_path)
    listed: dict[str, dict[str, Any]] = manifest.get("files") or {}

    config: bytes | None = None
    for member in members:
        if member.name == MANIFEST_NAME:
            continue
        name = _checked_name(member, archive_path)
        content = _member_bytes(archive, member)
        expected = listed.get(name)
        if expected is None:
            raise BackupError(f"{archive_path}: {name} is not in the manifest")
        if hashlib.sha256(content).hexdigest() != expected.get("sha256"):
            raise BackupError(
                f"{archive_path}: {name} does not match its checksum; the archive "
                "is damaged, use another backup"
            )
        if name == CONFIG_NAME:
            config = content
            continue
        target = staging.joinpath(*PurePosixPath(name).parts)
        _make_dirs(staging, target.parent)
        write_atomic(target, content, _file_mode(name))

    missing = sorted(set(listed) - {member.name for member in members})
    if missing:
        raise BackupError(
            f"{archive_path} lacks {', '.join(missing[:5])}, which its manifest "
            "lists; the archive is incomplete, use another backup"
        )
    (staging / DATA_PREFIX).mkdir(exist_ok=True)
    return manifest, config


def _read_manifest(
    archive: tarfile.TarFile, members: list[tarfile.TarInfo], archive_path: Path
) -> dict[str, Any]:
    found = [member for member in members if member.name == MANIFEST_NAME]
    if not found:
        raise BackupError(
            f"{archive_path} is not an EPMPulse backup: it has no {MANIFEST_NAME}"
        )
    try:
        manifest = json.loads(_member_bytes(archive, found[0]))
    except ValueError as exc:
        raise BackupError(
            f"{archive_path}: {MANIFEST_NAME} is invalid ({exc})"
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BackupError(
            f"{archive_path} has an unknown backup format; this EPMPulse reads "
            f"format {FORMAT_VERSION}. Restore it with the version that wrote it."
        )
    return manifest


def _checked_name(member: tarfile.TarInfo, archive_path: Path) -> str:
    """Accept only regular files under ``data/`` (without the lock file) and the
    apps config, so an archive cannot write outside the data dir."""
    name = member.name
    parts = PurePosixPath(name).parts
    unsafe = (
        not member.isfile()
        or name.startswith("/")
        or ".." in parts
        or "" in name.split("/")
        or "\\" in name
    )
    allowed = name == CONFIG_NAME or (
        len(parts) >= 2 and parts[0] == DATA_PREFIX and parts[1:] != (LOCK_FILE,)
    )
    if unsafe or not allowed:
        raise BackupError(
            f"{archive_path} contains {name!r}, which an EPMPulse backup never "
            "contains; it was not restored"
        )
    return name


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise BackupError(f"{member.name} in the archive is not a regular file")
    with handle:
        return handle.read()


def _file_mode(name: str) -> int:
    return SECRET_FILE_MODE if _is_secret(name) else DATA_FILE_MODE


def _make_dirs(staging: Path, directory: Path) -> None:
    current = staging
    for part in directory.relative_to(staging).parts:
        current = current / part
        current.mkdir(exist_ok=True)
        is_secrets = current.relative_to(staging).parts[:2] == (
            DATA_PREFIX,
            SECRETS_DIR,
        )
        os.chmod(current, SECRETS_DIR_MODE if is_secrets else DATA_DIR_MODE)


def _save_current(
    data_dir: Path,
    out_dir: Path,
    apps_config: Path | None,
    with_secrets: bool,
    exclude: Iterable[Path],
) -> Path | None:
    """Back up what a restore replaces; return None when the data dir is empty."""
    skipped = _excluded_paths(data_dir, out_dir, exclude)
    if not any(_data_files(data_dir, with_secrets, skipped)):
        return None
    result = create_backup(
        data_dir,
        out_dir,
        apps_config=apps_config,
        include_secrets=with_secrets,
        keep=None,
        exclude=exclude,
        prefix=PRE_RESTORE_PREFIX,
    )
    return result.path


def _swap_in(
    restored: Path,
    data_dir: Path,
    out_dir: Path,
    with_secrets: bool,
    exclude: Iterable[Path],
) -> int:
    """Move the current entries aside, move the restored ones in, then delete the
    old ones. On a failure the old entries are moved back."""
    untouched = _excluded_paths(data_dir, out_dir, exclude)
    current = [
        entry
        for entry in data_dir.iterdir()
        if not entry.name.startswith(".")
        and entry.resolve() not in untouched
        and (with_secrets or entry.name != SECRETS_DIR)
    ]
    aside = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=data_dir))
    moved_in: list[Path] = []
    try:
        for entry in current:
            entry.rename(aside / entry.name)
        for entry in sorted(restored.iterdir()):
            if entry.name == SECRETS_DIR and not with_secrets:
                continue
            target = data_dir / entry.name
            entry.rename(target)
            moved_in.append(target)
    except BaseException:
        for target in moved_in:
            _remove(target)
        for entry in aside.iterdir():
            entry.rename(data_dir / entry.name)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    _match_owner(data_dir, moved_in)
    fsync_directory(data_dir)
    return sum(1 for target in moved_in for _ in _files_under(target))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _files_under(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for root, _, files in os.walk(path):
        for name in files:
            yield Path(root) / name


def _match_owner(data_dir: Path, restored: list[Path]) -> None:
    """Give restored files the data dir's owner when root runs the restore, so the
    service user can still write them."""
    if os.geteuid() != 0:
        return
    owner = data_dir.stat()
    for top in restored:
        paths = [top] if top.is_file() else [top, *_all_under(top)]
        for path in paths:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _all_under(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            yield Path(root) / name
