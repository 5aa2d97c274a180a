"""Hypothesis drives the webhook API of a real ``epmpulse serve`` with hostile input.

Whatever arrives (any JSON, wrong types, huge or binary bodies, unicode and control
characters, odd paths, query strings, content types and Authorization headers), the
server responds with a status below 500 and the JSON the OpenAPI file documents. It
stores nothing when it rejects a write, and a write it accepts is on disk. After
each run the server is still healthy and every board still publishes.
"""

from __future__ import annotations

import http.client
import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.openapi_spec import error_problems, response_problems
from tests.server_process import API_KEY, ServerProcess

EXAMPLES = 100
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUS_PATH = "/api/v1/status"
BATCH_PATH = "/api/v1/status/batch"
WRITE_PATHS = (STATUS_PATH, BATCH_PATH, "/api/v1/watch")
# The status reported when the server closed the connection without a response.
CLOSED = 0


class Fuzzer:
    """A running server and a raw HTTP client that can send anything."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.data_dir = server.data_dir

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, 10)
        try:
            sent = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
            try:
                if chunked and body is not None:
                    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
                    connection.request(
                        method, path, iter(chunks), sent, encode_chunked=True
                    )
                else:
                    connection.request(method, path, body, sent)
            except (BrokenPipeError, ConnectionResetError):
                # The server responded to a malformed request and closed the
                # connection while the body was still being sent.
                pass
            try:
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError):
                return CLOSED, {}, b""
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def stored(self) -> dict[str, int]:
        """The size of each history segment.

        Every stored update is a history line. The rows file is left out: it is a
        checkpoint of the history, written on its own schedule.
        """
        history = self.data_dir / "history"
        if not history.exists():
            return {}
        return {p.name: p.stat().st_size for p in history.glob("*.jsonl")}

    def events_since(self, before: dict[str, int]) -> list[dict[str, Any]]:
        """The history lines appended after ``stored()`` returned ``before``."""
        events = []
        for name in sorted(self.stored()):
            with open(self.data_dir / "history" / name, "rb") as segment:
                segment.seek(before.get(name, 0))
                events.extend(json.loads(line) for line in segment.read().splitlines())
        return events

    def check(
        self,
        method: str,
        template: str | None,
        sent: Callable[[], tuple[int, dict[str, str], bytes]],
    ) -> tuple[int, Any]:
        """Send, then check the status, the body against the spec, and the store.

        ``template`` is the documented path the request targets, or None for a
        path that may match no route.
        """
        before = self.stored()
        status, headers, raw = sent()
        after = self.stored()
        assert status < 500, f"{method} {template}: {status} {raw[:500]!r}"
        if not headers.get("Content-Type", "").startswith("application/json"):
            # aiohttp's HTTP parser rejects a malformed request (e.g. a control
            # character in a header) with a plain 400, or closes the connection,
            # before any handler runs.
            assert status in (400, CLOSED), (status, raw[:200])
            assert after == before, f"{method} {template}: rejected but stored"
            return status, None
        body = strict_json(raw)
        if template is not None:
            problems = response_problems(method, template, status, body)
        else:
            problems = error_problems(body) if status >= 400 else []
        assert problems == [], problems
        is_write = method == "POST" and template in WRITE_PATHS
        if status != 200 or not is_write:
            assert after == before, f"{method} {template} {status} changed the store"
        elif template != "/api/v1/watch":
            self.assert_on_disk(body, before)
        return status, body

    def assert_on_disk(self, body: dict[str, Any], before: dict[str, int]) -> None:
        """Every change in a 200 response is on disk as the response shows it."""
        fields = ("app", "domain", "status", "job_id", "message", "timestamp")
        results = body.get("results", [body])
        answered = [
            tuple(r["record"][name] for name in fields) for r in results if r["changed"]
        ]
        logged = [
            tuple(event[name] for name in fields)
            for event in self.events_since(before)
            if event["applied"]
        ]
        assert logged == answered, "the history differs from the 200 response"

    def assert_still_serving(self) -> None:
        status, _, raw = self.send("GET", "/health")
        assert status == 200, raw
        status, _, raw = self.send("POST", "/api/v1/canvas/sync")
        assert status == 200, raw
        published = json.loads(raw)["published"]
        failed = [board for board in published if not board["ok"]]
        assert failed == [], f"boards fail to publish after the fuzz: {failed}"


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    env = {
        "EPMPULSE_RATE_LIMIT_POST": "1000000 per minute",
        "EPMPULSE_RATE_LIMIT_GET": "1000000 per minute",
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2",
    }
    with ServerProcess(data_dir, env) as server:
        yield Fuzzer(server)


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"the response contains {name}, which is not JSON")


def strict_json(raw: bytes) -> Any:
    """Parse a response as RFC 8259 JSON, which has no NaN or Infinity."""
    return json.loads(raw, parse_constant=_reject_constant)


# --- strategies ----------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udc80", "\udfff", "a\udbff"])
CHARACTERS = st.characters(exclude_categories=())
TEXT = st.one_of(
    st.text(CHARACTERS, max_size=80),
    st.text(
        st.sampled_from("\x00\x01\x1b\x7f\n\r\t\u2028\u202e\ufeff|*_`<>&"), max_size=8
    ),
    SURROGATES,
    st.builds(lambda c, n: c * n, CHARACTERS, st.integers(60, 20_000)),
)
NAMES = st.one_of(
    st.sampled_from(["Planning", "FCCS", "ARCS", "Actual", "Forecast", " Plan "]),
    st.text(
        st.sampled_from(string.ascii_letters + "é漢😀 -_."), min_size=1, max_size=70
    ),
    TEXT,
)
STATUS_WORDS = st.sampled_from(
    [
        "OK",
        "Loading",
        "Error",
        "Warning",
        "Blank",
        "running",
        "COMPLETED",
        "in-progress",
    ]
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
TIMESTAMPS = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        ["2026-12-04T17:20:00Z", "9999-12-31T23:59:59+14:00", "0001-01-01"]
    ),
    TEXT,
)


def _or_any_json(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, JSON_VALUES)


UPDATES = st.fixed_dictionaries(
    {
        "app": _or_any_json(NAMES),
        "domain": _or_any_json(NAMES),
        "status": _or_any_json(STATUS_WORDS | TEXT),
    },
    optional={
        "job_id": _or_any_json(st.integers() | TEXT),
        "message": _or_any_json(TEXT),
        "timestamp": _or_any_json(TIMESTAMPS),
        "source": _or_any_json(TEXT),
        "extra": JSON_VALUES,
    },
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.epm+json",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "json",
            "application/json; charset=latin-1",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
)
RAW_BODIES = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda n: b"[" * n, st.integers(1, 20_000)),
    st.builds(
        lambda n: b'{"app":"A","domain":"D","status":"OK","job_id":' + b"9" * n + b"}",
        st.integers(1, 10_000),
    ),
    st.builds(
        lambda n: b"x" * n, st.sampled_from([16 * 1024, 16 * 1024 + 1, 64 * 1024 + 1])
    ),
    st.text(CHARACTERS, max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(CHARACTERS, max_size=300).map(lambda t: t.encode("utf-16")),
    st.just(b'{"app": "A", "domain": "D", "status": NaN}'),
    st.just(b'{"app": "A", "domain": "D", "status": "OK", "job_id": -Infinity}'),
    st.just(b'{"app": "A", "domain": "D", "status": "OK", "job_id": 1e999}'),
    st.just(b'{"app": "A", "app": "B", "domain": "D", "status": "OK"}'),
)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# --- tests -----------------------------------------------------------------------


def test_status_survives_any_json(fuzzer: Fuzzer) -> None:
    @FUZZ_SETTINGS
    @given(JSON_VALUES | UPDATES)
    def post(value: Any) -> None:
        body = _json_bytes(value)
        fuzzer.check(
            "POST",
            STATUS_PATH,
            lambda: fuzzer.send(
                "POST", STATUS_PATH, body, {"Content-Type": "application/json"}
            ),
        )

    post()
    fuzzer.assert_still_serving()


def test_batch_survives_any_updates(fuzzer: Fuzzer) -> None:
    batches = st.one_of(
        st.fixed_dictionaries(
            {"updates": st.lists(UPDATES | JSON_VALUES, max_size=120)}
        ),
        st.fixed_dictionaries({"updates": JSON_VALUES}),
        JSON_VALUES,
    )

    @FUZZ_SETTINGS
    @given(batches)
    def post(value: Any) -> None:
        body = _json_bytes(value)
        fuzzer.check(
            "POST",
            BATCH_PATH,
            lambda: fuzzer.send(
                "POST", BATCH_PATH, body, {"Content-Type": "application/json"}
            ),
        )

    post()
    fuzzer.assert_still_serving()


def test_writes_survive_any_body_and_content_type(fuzzer: Fuzzer) -> None:
    @FUZZ_SETTINGS
    @given(
        st.sampled_from(WRITE_PATHS),
        RAW_BODIES,
        CONTENT_TYPES,
        st.booleans(),
    )
    def post(path: str, body: bytes, content_type: str, chunked: bool) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        fuzzer.check(
            "POST",
            path,
            lambda: fuzzer.send("POST", path, body, headers, chunked=chunked),
        )

    post()
    fuzzer.assert_still_serving()


def test_watch_survives_any_json(fuzzer: Fuzzer) -> None:
    @FUZZ_SETTINGS
    @given(JSON_VALUES | UPDATES)
    def post(value: Any) -> None:
        body = _json_bytes(value)
        fuzzer.check(
            "POST",
            "/api/v1/watch",
            lambda: fuzzer.send(
                "POST", "/api/v1/watch", body, {"Content-Type": "application/json"}
            ),
        )

    post()


def _quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def test_app_path_survives_any_segment(fuzzer: Fuzzer) -> None:
    segments = st.one_of(
        TEXT.filter(bool).map(_quoted),
        st.sampled_from(
            ["%FF", "%ED%B2%80", "%00", "..", "%2E%2E", "a%2Fb", "%", "%zz"]
        ),
        NAMES.filter(lambda n: n.strip() != "").map(_quoted),
    )

    @FUZZ_SETTINGS
    @given(segments)
    def get(segment: str) -> None:
        path = f"{STATUS_PATH}/{segment}"
        fuzzer.check("GET", "/api/v1/status/{app}", lambda: fuzzer.send("GET", path))

    get()


def test_history_survives_any_query(fuzzer: Fuzzer) -> None:
    params = st.dictionaries(
        st.sampled_from(["app", "domain", "limit", "other", ""]),
        st.one_of(
            TEXT,
            st.integers().map(str),
            st.sampled_from(["0", "1", "1000", "1001", "-1", "1e3", " 5"]),
        ),
        max_size=4,
    )

    @FUZZ_SETTINGS
    @given(params, st.sampled_from(["", "&", "&&limit", "%FF=%FF", "limit=%00"]))
    def get(query: dict[str, str], tail: str) -> None:
        encoded = urlencode(
            {k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}
        )
        path = f"/api/v1/history?{encoded}{tail}"
        fuzzer.check("GET", "/api/v1/history", lambda: fuzzer.send("GET", path))

    get()


def test_any_api_path_and_method_gets_json_error(fuzzer: Fuzzer) -> None:
    paths = st.one_of(
        st.lists(TEXT.map(_quoted), min_size=1, max_size=4).map(
            lambda p: "/api/" + "/".join(p)
        ),
        st.sampled_from(
            [
                "/api/",
                "/api/v1",
                "/api/v1/status/",
                "/api/v1/status/batch/x",
                "/api/v2/status",
                "/api//v1/status",
                "/api/v1/canvas/sync/",
                "/api/v1/%2e%2e/status",
            ]
        ),
    )
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])

    @FUZZ_SETTINGS
    @given(methods, paths)
    def send(method: str, path: str) -> None:
        # Invalid as an update, so nothing is stored even if a path hits a route.
        body = b'{"app": "", "domain": "D", "status": "OK"}'
        headers = {"Content-Type": "application/json"}
        fuzzer.check(method, None, lambda: fuzzer.send(method, path, body, headers))

    send()


def test_wrong_methods_on_api_routes_get_405(fuzzer: Fuzzer) -> None:
    for method, path in [
        ("PUT", STATUS_PATH),
        ("DELETE", STATUS_PATH),
        ("GET", "/api/v1/canvas/sync"),
        ("PATCH", "/api/v1/history"),
        ("GET", "/api/v1/watch"),
    ]:
        status, _, raw = fuzzer.send(method, path)
        assert status == 405, (method, path, raw)
        assert error_problems(json.loads(raw)) == []


def test_non_finite_numbers_get_valid_json_errors(fuzzer: Fuzzer) -> None:
    for field in ("job_id", "status", "app", "message", "extra"):
        for token in ("NaN", "Infinity", "-Infinity", "1e999"):
            fields = {"app": '"A"', "domain": '"D"', "status": '"OK"', field: token}
            body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
            status, answer = fuzzer.check(
                "POST",
                STATUS_PATH,
                lambda body=body: fuzzer.send(
                    "POST",
                    STATUS_PATH,
                    body.encode(),
                    {"Content-Type": "application/json"},
                ),
            )
            assert status == 400, (body, answer)
            assert answer["error"]["code"] == "invalid_json", body


def test_any_authorization_header_is_rejected(fuzzer: Fuzzer) -> None:
    headers = st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200
    ) | st.sampled_from(
        [
            "Bearer",
            "Bearer ",
            f"Basic {API_KEY}",
            f"Bearer {API_KEY[:-1]}",
            f"Bearer {API_KEY}x",
        ]
    )

    @FUZZ_SETTINGS
    @given(headers)
    def post(authorization: str) -> None:
        body = b'{"app": "Auth", "domain": "D", "status": "OK"}'
        sent = {"Authorization": authorization, "Content-Type": "application/json"}
        status, body_json = fuzzer.check(
            "POST", STATUS_PATH, lambda: fuzzer.send("POST", STATUS_PATH, body, sent)
        )
        if API_KEY not in authorization:
            # 400: aiohttp's parser rejected the header itself.
            assert status in (400, 401), (authorization, body_json)

    post()
