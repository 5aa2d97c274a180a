"""The ``epmpulse`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from bot.config_check import Problem, check_settings, problems_from_validation
from bot.settings import Settings


def load_settings() -> tuple[Settings | None, list[Problem]]:
    """Read the settings; on invalid values return the problems instead."""
    try:
        settings = Settings()
    except ValidationError as exc:
        return None, problems_from_validation(exc)
    return settings, check_settings(settings)


def print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, problems = load_settings()
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
        f"data dir {settings.data_dir}{checked})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings, problems = load_settings()
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

    redactor = configure_logging(
        settings.effective_log_level,
        settings.log_format,
        settings.log_file,
        settings.secret_values(),
    )
    print_problems(problems)
    try:
        service = Service(settings)
        # Keys from the keys file (read again on SIGHUP) and the generated local
        # key are not among the settings' secrets. The keyring hands each new set
        # of keys to the redaction filter.
        service.keyring.on_replace = lambda keys: redactor.set_secrets(
            [*settings.secret_values(), *(key.secret for key in keys)]
        )
        asyncio.run(service.run())
    except (StoreCorruptError, DataDirLocked) as exc:
        print(f"EPMPulse did not start: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"EPMPulse did not start: {exc}", file=sys.stderr)
        return 3
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import requests

    from bot.keys import client_key

    settings, problems = load_settings()
    if settings is None:
        print_problems(problems)
        return 2
    url = args.url or f"http://{_client_host(settings.host)}:{settings.port}"
    key = args.key or client_key(settings)
    if key is None:
        print(
            "no API key: set EPMPULSE_API_KEY, or start 'epmpulse serve' once in "
            "local mode so it generates one",
            file=sys.stderr,
        )
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


def _is_json(response: object) -> bool:
    content_type = getattr(response, "headers", {}).get("Content-Type", "")
    return "json" in content_type


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return asyncio.run(run_demo(speed=args.speed))


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

    send = sub.add_parser("send", help="post one status update to a running server")
    send.add_argument("--app", required=True, help="EPM application, e.g. Planning")
    send.add_argument("--domain", required=True, help="domain, e.g. Actual")
    send.add_argument("--status", required=True, help="e.g. Loading, OK, Error")
    send.add_argument("--job-id", help="EPM job id")
    send.add_argument("--message", help="details shown on the board")
    send.add_argument(
        "--url", help="server URL (default: the configured host and port)"
    )
    send.add_argument(
        "--key", help="API key (default: the configured or generated key)"
    )
    send.set_defaults(func=cmd_send)

    demo = sub.add_parser("demo", help="replay a sample month-end close locally")
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed factor (2 = twice as fast)",
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
