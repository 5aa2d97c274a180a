import configparser
import json
import logging
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bot.logs import TEXT_FORMAT, JsonFormatter

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"

# fail2ban replaces <HOST> with its own address pattern. This stand-in accepts the
# IPv4 and IPv6 addresses that the tests use.
HOST_GROUP = r"(?P<host>[0-9A-Fa-f:.]+)"

REJECTED_TEXT = (
    "2026-12-04 17:20:01,123 WARNING handlers.auth auth rejected "
    "client=203.0.113.7 method=POST path=/api/v1/status reason=invalid_key"
)
ACCESS_TEXT = (
    "2026-12-04 17:20:01,123 INFO handlers.access access client=203.0.113.7 "
    "method=POST path=/api/v1/status status=200 ms=3.1 key=epm-prod"
)


def rejection(client: str, path: str = "/api/v1/status") -> str:
    return f"auth rejected client={client} method=POST path={path} reason=invalid_key"


def json_line(message: str) -> str:
    return json.dumps(
        {
            "time": "2026-12-04T17:20:01.123000+00:00",
            "level": "WARNING",
            "logger": "handlers.auth",
            "message": message,
        }
    )


def failregexes() -> list[re.Pattern[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEPLOY / "fail2ban" / "filter.d" / "epmpulse.conf", encoding="utf-8")
    lines = parser["Definition"]["failregex"].strip().splitlines()
    return [re.compile(line.strip().replace("<HOST>", HOST_GROUP)) for line in lines]


def banned_host(line: str) -> str | None:
    for pattern in failregexes():
        match = pattern.search(line)
        if match is not None:
            return match.group("host")
    return None


def strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def directives(path: Path) -> dict[str, list[str]]:
    """Read a systemd unit as name -> values, keeping repeated names."""
    found: dict[str, list[str]] = {}
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        name, _, value = line.partition("=")
        found.setdefault(name.strip(), []).append(value.strip())
    return found


def nginx_locations() -> dict[str, str]:
    text = strip_comments((DEPLOY / "nginx" / "epmpulse.conf").read_text("utf-8"))
    return {
        match.group(1).strip(): match.group(2)
        for match in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", text)
    }


# --- fail2ban ---------------------------------------------------------------


def test_filter_matches_text_rejection() -> None:
    assert banned_host(REJECTED_TEXT) == "203.0.113.7"


def test_filter_matches_json_rejection() -> None:
    line = json_line(rejection("203.0.113.7"))

    assert banned_host(line) == "203.0.113.7"


def test_filter_matches_line_without_date() -> None:
    # fail2ban cuts the date out before matching, and journal lines have none.
    assert banned_host(" WARNING handlers.auth " + rejection("203.0.113.7")) == (
        "203.0.113.7"
    )
    assert banned_host(rejection("203.0.113.7")) == "203.0.113.7"


def test_filter_matches_ipv6_client() -> None:
    assert banned_host(json_line(rejection("2001:db8::7"))) == "2001:db8::7"
    assert banned_host(f"WARNING handlers.auth {rejection('2001:db8::7')}") == (
        "2001:db8::7"
    )


def test_filter_ignores_access_line() -> None:
    assert banned_host(ACCESS_TEXT) is None


def test_filter_ignores_json_access_line() -> None:
    line = json_line(
        "access client=203.0.113.7 method=POST path=/api/v1/status status=200 "
        "ms=3.1 key=epm-prod"
    )

    assert banned_host(line) is None


def test_filter_ignores_other_warnings() -> None:
    line = (
        "2026-12-04 17:20:01,123 WARNING handlers.webhook request from "
        "client=203.0.113.7 rejected: auth rejected client=198.51.100.1"
    )

    assert banned_host(line) is None


def test_filter_bans_sender_not_spoofed_path() -> None:
    # A path that imitates a rejection must not get another address banned.
    spoofed = "/api/x " + rejection("198.51.100.1", "/y")
    text = "2026-12-04 17:20:01,123 WARNING handlers.auth " + rejection(
        "203.0.113.7", spoofed
    )
    json_path = '/api/x", "message": "' + rejection("198.51.100.1")

    assert banned_host(text) == "203.0.113.7"
    assert banned_host(json_line(rejection("203.0.113.7", json_path))) == (
        "203.0.113.7"
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_filter_matches_epmpulse_log_format(fmt: str) -> None:
    record = logging.LogRecord(
        "handlers.auth",
        logging.WARNING,
        __file__,
        1,
        "auth rejected client=%s method=%s path=%s reason=%s",
        ("203.0.113.7", "GET", "/api/v1/status", "missing_key"),
        None,
    )
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)

    assert banned_host(formatter.format(record)) == "203.0.113.7"


def test_jail_uses_filter_and_log_file() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEPLOY / "fail2ban" / "jail.d" / "epmpulse.conf", encoding="utf-8")
    jail = parser["epmpulse"]

    assert jail["filter"] == "epmpulse"
    assert jail["logpath"] == "/var/log/epmpulse/epmpulse.log"
    assert "127.0.0.1/8" in jail["ignoreip"].split()
    assert int(jail["maxretry"]) >= 5


# --- systemd ------------------------------------------------------------------


def test_unit_runs_serve_as_dedicated_user() -> None:
    unit = directives(DEPLOY / "epmpulse.service")

    assert unit["User"] == ["epmpulse"]
    assert unit["EnvironmentFile"] == ["/opt/epmpulse/.env"]
    assert unit["ExecStart"] == ["/opt/epmpulse/venv/bin/epmpulse serve"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert int(unit["TimeoutStopSec"][0]) >= 30


def test_unit_is_hardened() -> None:
    unit = directives(DEPLOY / "epmpulse.service")

    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"][0].split() == [
        "/opt/epmpulse/data",
        "/var/log/epmpulse",
    ]
    assert unit["ProtectHome"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["PrivateDevices"] == ["yes"]
    assert unit["UMask"] == ["0027"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert set(unit["RestrictAddressFamilies"][0].split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
    }


# --- nginx --------------------------------------------------------------------


def test_nginx_body_limits_per_location() -> None:
    locations = nginx_locations()

    assert "client_max_body_size 16k;" in locations["/api/"]
    assert "client_max_body_size 64k;" in locations["= /api/v1/status/batch"]
    assert "client_max_body_size 1m;" in locations["/slack/events"]


def test_nginx_proxies_api_and_health() -> None:
    locations = nginx_locations()

    for location in ("/api/", "= /api/v1/status/batch", "/slack/events", "= /health"):
        assert "proxy_pass http://epmpulse;" in locations[location], location
    assert "server 127.0.0.1:18800;" in (DEPLOY / "nginx" / "epmpulse.conf").read_text(
        "utf-8"
    )


def test_nginx_denies_metrics() -> None:
    locations = nginx_locations()

    assert "deny all;" in locations["/metrics"]
    assert "proxy_pass" not in locations["/metrics"]
    assert "return 404;" in locations["/"]


def test_nginx_has_no_address_rate_limit() -> None:
    text = strip_comments((DEPLOY / "nginx" / "epmpulse.conf").read_text("utf-8"))

    assert "limit_req" not in text


def test_nginx_forwards_client_address() -> None:
    text = strip_comments((DEPLOY / "nginx" / "epmpulse.conf").read_text("utf-8"))

    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert "return 301 https://" in text


# --- logrotate ----------------------------------------------------------------


def test_logrotate_covers_log_dir() -> None:
    text = (DEPLOY / "logrotate" / "epmpulse").read_text("utf-8")

    assert "/var/log/epmpulse/*.log {" in text
    assert re.search(r"^\s*copytruncate\s*$", text, re.MULTILINE)


# --- Docker -------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_runs_serve_as_non_root() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[
        max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :
    ]

    assert final_stage[0] == ("FROM", "python:3.11-slim")
    assert ("USER", "epmpulse") in final_stage
    assert ("CMD", '["epmpulse", "serve"]') in final_stage
    env = " ".join(rest for keyword, rest in final_stage if keyword == "ENV")
    assert "EPMPULSE_HOST=0.0.0.0" in env.split()
    assert "EPMPULSE_DATA_DIR=/data" in env.split()


class _HealthHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck_code() -> str:
    (healthcheck,) = [
        rest for keyword, rest in dockerfile_instructions() if keyword == "HEALTHCHECK"
    ]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    code: str = command[2]
    return code


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1), (204, 1)])
def test_healthcheck_passes_only_on_200(
    health_server: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    exit_code: int,
) -> None:
    monkeypatch.setattr(_HealthHandler, "status", status)
    port = str(health_server.server_address[1])

    result = subprocess.run(
        [sys.executable, "-c", healthcheck_code()],
        env={"EPMPULSE_PORT": port},
        capture_output=True,
        timeout=20,
    )

    assert result.returncode == exit_code, shlex.join(result.args)


def test_compose_publishes_on_loopback_only() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8"))
    service = compose["services"]["epmpulse"]
    gateway = compose["networks"]["default"]["ipam"]["config"][0]["gateway"]

    assert service["ports"] == ["127.0.0.1:18800:18800"]
    assert service["environment"]["EPMPULSE_HOST"] == "0.0.0.0"
    assert service["environment"]["EPMPULSE_DATA_DIR"] == "/data"
    assert service["environment"]["EPMPULSE_TRUSTED_PROXIES"] == gateway
    assert "epmpulse-data:/data" in service["volumes"]


def test_dockerignore_keeps_secrets_out() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text("utf-8").split()

    assert ".env" in ignored
    assert "data/" in ignored
    assert ".git" in ignored
