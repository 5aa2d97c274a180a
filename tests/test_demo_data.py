import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from epm.config import EpmBlock
from store.catalog import Catalog
from store.models import Status, parse_status

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS_EXAMPLE = REPO_ROOT / "config" / "apps.json.example"

# A duration is whole seconds (a number, or digits in a string) or digits with a
# unit of s, m or h.
DURATION = re.compile(r"\d+[smh]?")


@pytest.fixture(scope="module")
def apps() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(APPS_EXAMPLE.read_text("utf-8"))["apps"]
    return loaded


@pytest.fixture(scope="module")
def steps() -> list[dict[str, Any]]:
    text = (files("bot") / "data" / "demo_close.json").read_text("utf-8")
    loaded: list[dict[str, Any]] = json.loads(text)["steps"]
    return loaded


def domain_name(domain: str | dict[str, Any]) -> str:
    return domain if isinstance(domain, str) else str(domain["name"])


def configured_rows(apps: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(app["name"], domain_name(d)) for app in apps for d in app["domains"]}


def test_apps_example_lists_the_three_products(apps: list[dict[str, Any]]) -> None:
    names = [app["name"] for app in apps]

    assert names == ["Planning", "FCCS", "ARCS"]
    assert {app["name"]: app["board"] for app in apps} == {
        "Planning": "main",
        "FCCS": "main",
        "ARCS": "arcs",
    }


def test_apps_example_loads_as_catalog() -> None:
    catalog = Catalog.load(APPS_EXAMPLE)

    assert [app.name for app in catalog.apps] == ["Planning", "FCCS", "ARCS"]
    assert catalog.max_runtime("Planning", "Forecast") == 7200
    assert catalog.max_runtime("FCCS", "Translation") == 1800
    assert catalog.board_of("ARCS") == "arcs"


def test_apps_example_epm_blocks_are_valid(apps: list[dict[str, Any]]) -> None:
    for app in apps:
        block = EpmBlock.model_validate(app["epm"])
        assert block.application, app["name"]


def test_apps_example_entries_are_complete(apps: list[dict[str, Any]]) -> None:
    for app in apps:
        assert app["display_name"], app["name"]
        assert app["domains"], app["name"]
        assert app["epm"]["url"].startswith("https://"), app["name"]
        assert app["epm"]["product"], app["name"]
        assert app["epm"]["application"], app["name"]


def test_apps_example_domain_names_unique(apps: list[dict[str, Any]]) -> None:
    for app in apps:
        names = [domain_name(d) for d in app["domains"]]
        assert len(names) == len(set(names)), app["name"]


def test_apps_example_max_runtime_is_duration(apps: list[dict[str, Any]]) -> None:
    runtimes = [
        domain["max_runtime"]
        for app in apps
        for domain in app["domains"]
        if isinstance(domain, dict) and "max_runtime" in domain
    ]

    assert runtimes
    for runtime in runtimes:
        if isinstance(runtime, int):
            assert runtime > 0
        else:
            assert DURATION.fullmatch(runtime), runtime


def test_demo_steps_use_configured_rows(
    apps: list[dict[str, Any]], steps: list[dict[str, Any]]
) -> None:
    rows = configured_rows(apps)

    for number, step in enumerate(steps):
        assert (step["app"], step["domain"]) in rows, (number, step)


def test_demo_covers_every_app(
    apps: list[dict[str, Any]], steps: list[dict[str, Any]]
) -> None:
    assert {step["app"] for step in steps} == {app["name"] for app in apps}


def test_demo_statuses_are_accepted(steps: list[dict[str, Any]]) -> None:
    for number, step in enumerate(steps):
        assert parse_status(step["status"]) is not None, (number, step["status"])


def test_demo_uses_varied_spellings(steps: list[dict[str, Any]]) -> None:
    spellings = {step["status"] for step in steps}
    statuses = {parse_status(spelling) for spelling in spellings}

    assert len(spellings) >= 8
    assert {Status.LOADING, Status.OK, Status.ERROR} <= statuses


def test_demo_step_fields_are_valid(steps: list[dict[str, Any]]) -> None:
    for number, step in enumerate(steps):
        assert re.fullmatch(r"\d+", step["job_id"]), (number, step["job_id"])
        assert step["message"].strip(), number
        assert 0 < step["delay"] <= 0.5, (number, step["delay"])


def test_demo_total_delay_under_five_seconds(steps: list[dict[str, Any]]) -> None:
    assert sum(step["delay"] for step in steps) < 5


def test_demo_failure_recovers_later(steps: list[dict[str, Any]]) -> None:
    statuses = [parse_status(step["status"]) for step in steps]
    failures = [i for i, status in enumerate(statuses) if status is Status.ERROR]

    assert failures
    for index in failures:
        row = (steps[index]["app"], steps[index]["domain"])
        later = [
            statuses[i]
            for i in range(index + 1, len(steps))
            if (steps[i]["app"], steps[i]["domain"]) == row
        ]
        assert Status.LOADING in later, row
        assert later[-1] is Status.OK, row


def test_demo_retry_uses_new_job_id(steps: list[dict[str, Any]]) -> None:
    jobs_by_row: dict[tuple[str, str], list[str]] = {}
    for step in steps:
        row = (step["app"], step["domain"])
        jobs = jobs_by_row.setdefault(row, [])
        if step["job_id"] not in jobs:
            jobs.append(step["job_id"])

    assert any(len(jobs) > 1 for jobs in jobs_by_row.values())


def test_demo_ends_with_every_row_final(steps: list[dict[str, Any]]) -> None:
    final: dict[tuple[str, str], Status | None] = {}
    for step in steps:
        final[(step["app"], step["domain"])] = parse_status(step["status"])

    for row, status in final.items():
        assert status is not None, row
        assert status.is_terminal, (row, status)


def test_demo_job_starts_before_it_ends(steps: list[dict[str, Any]]) -> None:
    seen_jobs: set[tuple[str, str, str]] = set()
    for number, step in enumerate(steps):
        job = (step["app"], step["domain"], step["job_id"])
        status = parse_status(step["status"])
        if job not in seen_jobs:
            assert status is Status.LOADING, (number, job)
        seen_jobs.add(job)


def test_apps_example_epm_hosts_are_reserved(apps: list[dict[str, Any]]) -> None:
    # example.com is reserved for documentation (RFC 2606), so a copied example
    # never sends requests to a real EPM pod.
    for app in apps:
        host = urlsplit(app["epm"]["url"]).hostname or ""
        assert host.endswith(".example.com"), app["name"]


def test_demo_timestamps_end_now_and_keep_order() -> None:
    from datetime import UTC, datetime

    from bot.demo import close_timestamps, load_demo_close

    end = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    steps = load_demo_close()["steps"]

    stamps = [datetime.fromisoformat(s) for s in close_timestamps(steps, end)]

    assert len(stamps) == len(steps)
    assert stamps[-1] == end
    assert stamps == sorted(stamps)
    assert (stamps[-1] - stamps[0]).total_seconds() > 600
