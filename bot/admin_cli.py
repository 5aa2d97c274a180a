"""The ``backup``, ``restore`` and ``smoke-test`` commands of the ``epmpulse`` CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.backup import DEFAULT_KEEP, BackupError, default_backup_dir
from bot.cli import load_settings, print_problems
from bot.settings import Settings


def add_admin_commands(sub: Any) -> None:
    """Register the commands on the ``add_subparsers`` object of the CLI."""
    backup = sub.add_parser(
        "backup", help="archive the data dir and apps.json (safe while serving)"
    )
    backup.add_argument(
        "--out", type=Path, help="folder for the archives (default: <data dir>/backups)"
    )
    backup.add_argument(
        "--keep",
        type=_positive_int,
        default=DEFAULT_KEEP,
        help=f"how many archives to keep, the newest first (default {DEFAULT_KEEP})",
    )
    backup.add_argument(
        "--include-secrets",
        action="store_true",
        help="also archive the secrets folder (API keys): store such archives "
        "encrypted",
    )
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser(
        "restore", help="replace the data dir with a backup (stop the server first)"
    )
    restore.add_argument("file", type=Path, help="an epmpulse-backup-*.tar.gz file")
    restore.add_argument(
        "--out",
        type=Path,
        help="folder for the archive of the current data that restore writes "
        "first (default: <data dir>/backups)",
    )
    restore.add_argument(
        "--with-config",
        action="store_true",
        help="also write the archive's apps.json to the configured apps config path",
    )
    restore.set_defaults(func=cmd_restore)

    smoke = sub.add_parser(
        "smoke-test",
        help="check a deployed server: health, API key and a test update",
    )
    smoke.add_argument(
        "--url", required=True, help="public URL, e.g. https://epmpulse.example.com"
    )
    smoke.add_argument(
        "--key", help="API key (default: the first configured or generated key)"
    )
    smoke.set_defaults(func=cmd_smoke_test)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _settings_or_exit() -> Settings | None:
    settings, problems = load_settings()
    if settings is None:
        print_problems(problems)
    return settings


def _excluded(settings: Settings) -> list[Path]:
    # A log file in the data dir (as in the Docker set-up) is no data to restore.
    return [settings.log_file] if settings.log_file is not None else []


def cmd_backup(args: argparse.Namespace) -> int:
    from bot.backup import create_backup

    settings = _settings_or_exit()
    if settings is None:
        return 2
    out_dir = args.out or default_backup_dir(settings.data_dir)
    try:
        result = create_backup(
            settings.data_dir,
            out_dir,
            apps_config=settings.apps_config_path,
            include_secrets=args.include_secrets,
            keep=args.keep,
            exclude=_excluded(settings),
        )
    except (BackupError, OSError) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    secrets = ", secrets included" if result.includes_secrets else ""
    print(
        f"backup written: {result.path} ({result.files} files, {result.size} "
        f"bytes{secrets})"
    )
    for path in result.removed:
        print(f"removed old backup: {path}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from bot.backup import restore_backup
    from store.lock import DataDirLocked

    settings = _settings_or_exit()
    if settings is None:
        return 2
    out_dir = args.out or default_backup_dir(settings.data_dir)
    try:
        result = restore_backup(
            args.file,
            settings.data_dir,
            out_dir,
            apps_config=settings.apps_config_path,
            restore_config=args.with_config,
            exclude=_excluded(settings),
        )
    except DataDirLocked as exc:
        holder = f"process {exc.pid}" if exc.pid is not None else "another process"
        print(
            f"restore did not run: {holder} is using data dir {settings.data_dir}. "
            "Stop EPMPulse first (systemctl stop epmpulse), then run the restore "
            "again.",
            file=sys.stderr,
        )
        return 1
    except (BackupError, OSError) as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    if result.pre_restore is not None:
        print(f"saved the current data to {result.pre_restore}")
    print(
        f"restored {result.files} files from {args.file} (backup of "
        f"{result.created_at}) into {settings.data_dir}"
    )
    if result.config_restored:
        print(f"restored apps config {settings.apps_config_path}")
    elif args.with_config:
        print("the backup contains no apps.json; the apps config was not changed")
    return 0


def cmd_smoke_test(args: argparse.Namespace) -> int:
    from bot.keys import client_key
    from bot.smoke import run_smoke_test

    key = args.key
    if key is None:
        settings = _settings_or_exit()
        key = client_key(settings) if settings is not None else None
    if not key:
        print(
            "no API key: pass --key, or set EPMPULSE_API_KEY or EPMPULSE_API_KEYS_FILE",
            file=sys.stderr,
        )
        return 2
    checks = run_smoke_test(args.url, key)
    failed = [check.name for check in checks if not check.ok]
    if failed:
        print(f"smoke test failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"smoke test passed: {len(checks)} checks")
    return 0
