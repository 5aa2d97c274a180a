"""The ``epmpulse`` command line."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.config_check import Problem, check_settings, problems_from_validation
from bot.loop import loop_factory
from bot.setting_names import check_setting_names
from bot.settings import Settings


def load_settings(
    *, on_this_machine: bool = False
) -> tuple[Settings | None, list[Problem]]:
    """Read the settings; on invalid values return the problems instead.

    ``on_this_machine`` adds the checks of ``check-config`` and ``serve``: setting
    names that look like typos, and the data dir, log file and host (see
    bot.runtime_check).
    """
    names: list[Problem] = []
    if on_this_machine:
        env_file = Settings.model_config.get("env_file")
        names = check_setting_names(
            os.environ, Path(env_file) if isinstance(env_file, str) else None
        )
    try:
        settings = Settings()
    except ValidationError as exc:
        return None, problems_from_validation(exc) + names
    problems = check_settings(settings) + names
    if on_this_machine:
        from bot.runtime_check import check_runtime

        problems += check_runtime(settings)
    return settings, problems


def print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    from bot.runtime_check import check_port

    settings, problems = load_settings(on_this_machine=True)
    if settings is not None:
        problems += check_port(settings)
    print_problems(problems)
    if args.slack and settings is not None:
        from bot.slack_check import check_slack

        slack_problems = asyncio.run(check_slack(settings))
        print_problems(slack_problems)
        problems += slack_problems
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        print(
            f"{len(errors)} error(s): fix them and run 'epmpulse check-config' again",
            file=sys.stderr,
        )
        return 1
    assert settings is not None
    checked = ", Slack checks passed" if args.slack else ""
    print(
        f"configuration OK (mode {settings.mode}, env {settings.env}, "
        f"data dir {os.path.abspath(settings.data_dir)}{checked})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings, problems = load_settings(on_this_machine=True)
    errors = [p for p in problems if p.severity == "error"]
    if settings is None or errors:
        print(
            "EPMPulse did not start because of these configuration problems:",
            file=sys.stderr,
        )
        print_problems(problems)
        return 2
    from bot.logs import configure_logging
    from bot.service import Service
    from store.lock import DataDirLocked
    from store.tinydb_storage import StoreCorruptError

    # An absolute data dir makes the start-up log line and every error about its
    # files name the real place, wherever serve was started from.
    settings = settings.model_copy(
        update={"data_dir": Path(os.path.abspath(settings.data_dir))}
    )
    try:
        redactor = configure_logging(
            settings.effective_log_level,
            settings.log_format,
            settings.log_file,
            settings.secret_values(),
        )
    except OSError as exc:
        print(
            f"EPMPulse did not start: EPMPULSE_LOG_FILE: {settings.log_file} cannot "
            f"be opened for writing ({exc.strerror}): give the user that runs "
            "EPMPulse write access to its folder, or unset EPMPULSE_LOG_FILE to log "
            "to stderr only",
            file=sys.stderr,
        )
        return 3
    print_problems(problems)
    try:
        service = Service(settings)
        # Keys from the keys file (read again on SIGHUP) and the generated local
        # key are not among the settings' secrets. The keyring hands each new set
        # of keys to the redaction filter.
        service.keyring.on_replace = lambda keys: redactor.set_secrets(
            [*settings.secret_values(), *(key.secret for key in keys)]
        )
        factory = loop_factory(
            settings.event_loop, requested="event_loop" in settings.model_fields_set
        )
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(service.run())
    except (StoreCorruptError, DataDirLocked) as exc:
        print(f"EPMPulse did not start: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"EPMPulse did not start: {start_error(exc, settings)}", file=sys.stderr)
        return 3
    return 0


def start_error(exc: OSError, settings: Settings) -> str:
    """Name the setting behind an OSError at start-up, and its fix."""
    from bot.runtime_check import HOST_FIX, bind_error

    if isinstance(exc, socket.gaierror):
        return f"EPMPULSE_HOST: {settings.host!r} cannot be resolved: {HOST_FIX}"
    if exc.filename is None and exc.errno in (
        errno.EADDRINUSE,
        errno.EADDRNOTAVAIL,
        errno.EACCES,
    ):
        setting, message = bind_error(exc, settings.host, settings.port)
        return f"{setting}: {message}"
    if isinstance(exc.filename, str) and Path(exc.filename).is_relative_to(
        settings.data_dir
    ):
        return (
            f"EPMPULSE_DATA_DIR: {exc.filename}: {exc.strerror}. Give the user that "
            "runs EPMPulse ownership of the data dir, or set EPMPULSE_DATA_DIR to "
            "another folder."
        )
    return str(exc)


def cmd_send(args: argparse.Namespace) -> int:
    import requests

    settings, problems = load_settings()
    if settings is None:
        print_problems(problems)
        return 2
    url = args.url or f"http://{_client_host(settings.host)}:{settings.port}"
    url_problem = _send_url_problem(url)
    if url_problem is not None:
        print(f"error: --url: {url_problem}", file=sys.stderr)
        return 2
    key = _send_key(args, settings)
    if key is None:
        return 2
    body = {"app": args.app, "domain": args.domain, "status": args.status}
    if args.job_id:
        body["job_id"] = args.job_id
    if args.message:
        body["message"] = args.message
    try:
        response = requests.post(
            url.rstrip("/") + "/api/v1/status",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
    except requests.RequestException as exc:
        print(
            f"cannot reach EPMPulse at {url}: {exc}. Is 'epmpulse serve' running?",
            file=sys.stderr,
        )
        return 1
    print(
        json.dumps(response.json() if _is_json(response) else response.text, indent=2)
    )
    return 0 if response.ok else 1


def _send_url_problem(url: str) -> str | None:
    """Check the server URL of ``send``. The text never repeats a password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"cannot be parsed ({exc}); use the form http://127.0.0.1:18800"
    if parts.username is not None or parts.password is not None:
        return (
            "contains a user name or password, which send never uses: remove the "
            "'user:password@' part (the API key is sent as a bearer token)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL such as http://127.0.0.1:18800"
    return None


def _send_key(args: argparse.Namespace, settings: Settings) -> str | None:
    """Return the key for ``send``, or print why there is none and return None."""
    from bot.keys import KeyConfigError, client_key, key_search_report

    if args.key:
        return str(args.key)
    if args.key_env:
        from_env = os.environ.get(args.key_env, "").strip()
        if not from_env:
            print(
                f"no API key: the environment variable {args.key_env} (from "
                "--key-env) is not set or empty",
                file=sys.stderr,
            )
            return None
        return from_env
    try:
        key = client_key(settings)
    except KeyConfigError as exc:
        print(f"no API key: {exc}", file=sys.stderr)
        return None
    if key is None:
        print("no API key found. Looked in:", file=sys.stderr)
        for place in key_search_report(settings):
            print(f"  {place}", file=sys.stderr)
        print(
            "Run send where 'epmpulse serve' runs, set EPMPULSE_DATA_DIR to the "
            "server's data dir, or name a variable that holds the key with "
            "--key-env.",
            file=sys.stderr,
        )
    return key


def _is_json(response: object) -> bool:
    content_type = getattr(response, "headers", {}).get("Content-Type", "")
    return "json" in content_type


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def cmd_demo(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bot.demo import run_demo

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(run_demo(speed=args.speed))
    except ValidationError as exc:
        # The demo reads the environment too, for settings it does not set.
        print_problems(problems_from_validation(exc))
        return 2


def cmd_manifest(args: argparse.Namespace) -> int:
    from bot.manifest import render_manifest

    try:
        print(render_manifest(args.http_url), end="")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_epm_login(args: argparse.Namespace) -> int:
    from bot.pull import epm_auth_settings, token_store
    from epm.auth import DeviceAuthorization, device_login
    from epm.errors import EpmError

    settings, problems = load_settings()
    if settings is None:
        print_problems(problems)
        return 2

    def show(device: DeviceAuthorization) -> None:
        print(f"Open {device.verification_uri} and enter the code {device.user_code}")
        print("Waiting for the sign-in to finish...")

    try:
        asyncio.run(
            device_login(epm_auth_settings(settings), token_store(settings), show)
        )
    except (ValueError, EpmError, OSError) as exc:
        print(f"EPM sign-in failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"Signed in. The refresh token is stored in {settings.secrets_dir}; "
        "pull mode uses it from now on."
    )
    return 0


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    # Only a finite number above 0 is a speed: nan made the replay wait forever,
    # and 0 or less slowed it a hundredfold.
    if not math.isfinite(speed) or speed <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: use a number above 0, such as 2 for twice as "
            "fast or 0.5 for half speed"
        )
    return speed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="epmpulse",
        description="Oracle EPM Cloud job status in Slack.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook server (and Slack app)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="list every configuration problem")
    check.add_argument(
        "--slack",
        action="store_true",
        help="also ask Slack: token, scopes, channels, canvases",
    )
    check.set_defaults(func=cmd_check_config)

    send = sub.add_parser(
        "send",
        help="post one status update to a running server",
        description="Post one status update to a running server. The API key is "
        "the first of EPMPULSE_API_KEY, the keys file (EPMPULSE_API_KEYS_FILE) and "
        "the key that local mode generated in <data dir>/secrets/api_key, unless "
        "--key-env or --key names another.",
    )
    send.add_argument("--app", required=True, help="EPM application, e.g. Planning")
    send.add_argument("--domain", required=True, help="domain, e.g. Actual")
    send.add_argument("--status", required=True, help="e.g. Loading, OK, Error")
    send.add_argument("--job-id", help="EPM job id")
    send.add_argument("--message", help="details shown on the board")
    send.add_argument(
        "--url", help="server URL (default: the configured host and port)"
    )
    send.add_argument(
        "--key-env",
        metavar="NAME",
        help="read the API key from the environment variable NAME, for a key that "
        "is not the first configured one",
    )
    send.add_argument(
        "--key",
        help="API key, for testing only: other users of this machine can see "
        "command-line arguments. Use --key-env instead",
    )
    send.set_defaults(func=cmd_send)

    demo = sub.add_parser("demo", help="replay a sample month-end close locally")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="replay speed factor above 0 (2 = twice as fast)",
    )
    demo.set_defaults(func=cmd_demo)

    manifest = sub.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument(
        "--http-url",
        help="public https URL for HTTP mode (default: Socket Mode manifest)",
    )
    manifest.set_defaults(func=cmd_manifest)
    login = sub.add_parser(
        "epm-login",
        help="sign in to Oracle EPM with the OAuth device-code flow and store "
        "the refresh token for pull mode",
    )
    login.set_defaults(func=cmd_epm_login)

    from bot.admin_cli import add_admin_commands

    add_admin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
