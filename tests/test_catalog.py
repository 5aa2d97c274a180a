"""apps.json: loading, boards, order, name resolution and problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.config_check import load_catalog
from bot.settings import Settings
from store.catalog import Catalog, CatalogError, UnknownRow

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "apps.json.example"


def load(tmp_path: Path, apps: Any) -> Catalog:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": apps}), encoding="utf-8")
    return Catalog.load(path)


def test_shipped_example_loads() -> None:
    catalog = Catalog.load(EXAMPLE)

    assert catalog.is_open is False
    assert [app.name for app in catalog.apps][:2] == ["Planning", "FCCS"]


def test_domains_may_be_names_or_objects(tmp_path: Path) -> None:
    catalog = load(
        tmp_path,
        [{"name": "Planning", "domains": ["Actual", {"name": "Forecast"}, "Budget"]}],
    )

    app = catalog.app("Planning")
    assert app is not None
    assert [d.name for d in app.domains] == ["Actual", "Forecast", "Budget"]


def test_apps_keep_file_order(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "FCCS"}, {"name": "ARCS"}, {"name": "Planning"}])

    assert [catalog.order_key(n) for n in ("FCCS", "ARCS", "Planning", "X")] == [
        0,
        1,
        2,
        3,
    ]


@pytest.mark.parametrize(
    ("app", "board"),
    [
        ({"name": "ARCS"}, "arcs"),
        ({"name": "arcs"}, "arcs"),
        ({"name": "Planning"}, "main"),
        ({"name": "ARCS", "board": "main"}, "main"),
        ({"name": "Recon", "board": "arcs"}, "arcs"),
    ],
)
def test_board_defaults_by_name(
    tmp_path: Path, app: dict[str, Any], board: str
) -> None:
    catalog = load(tmp_path, [app])

    assert catalog.board_of(app["name"]) == board


def test_display_name_is_title(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "FCCS", "display_name": "Consolidation"}])

    assert catalog.title_of("FCCS") == "Consolidation"
    assert catalog.title_of("Other") == "Other"


@pytest.mark.parametrize(
    ("raw", "seconds"), [("45m", 2700), (1800, 1800), ("2h", 7200)]
)
def test_max_runtime_is_parsed(tmp_path: Path, raw: Any, seconds: float) -> None:
    catalog = load(
        tmp_path, [{"name": "P", "domains": [{"name": "A", "max_runtime": raw}]}]
    )

    assert catalog.max_runtime("P", "a") == seconds


def test_resolve_returns_configured_spelling(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "Planning", "domains": ["Actual"]}])

    assert catalog.resolve("PLANNING", "actual") == ("Planning", "Actual")


def test_resolve_rejects_unknown_app_with_hint(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "Planning"}, {"name": "FCCS"}])

    with pytest.raises(UnknownRow) as caught:
        catalog.resolve("Planing", "Actual")

    assert caught.value.field == "app"
    assert caught.value.known == ["Planning", "FCCS"]
    assert "Did you mean 'Planning'?" in str(caught.value)


def test_resolve_without_close_match_has_no_hint(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "Planning"}])

    with pytest.raises(UnknownRow) as caught:
        catalog.resolve("HCM", "Actual")

    assert "Did you mean" not in str(caught.value)
    assert "Known: Planning" in str(caught.value)


def test_resolve_rejects_unknown_domain(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "Planning", "domains": ["Actual"]}])

    with pytest.raises(UnknownRow) as caught:
        catalog.resolve("Planning", "Actuals")

    assert caught.value.field == "domain"
    assert "Did you mean 'Actual'?" in str(caught.value)


def test_open_catalog_accepts_anything() -> None:
    catalog = Catalog()

    assert catalog.is_open is True
    assert catalog.resolve("Anything", "Goes") == ("Anything", "Goes")


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found") as caught:
        Catalog.load(tmp_path / "apps.json")

    assert str(tmp_path / "apps.json") in str(caught.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    path.write_text('{"apps": [\n  {"name": "A",}\n]}', encoding="utf-8")

    with pytest.raises(CatalogError, match="line 2"):
        Catalog.load(path)


@pytest.mark.parametrize(
    ("apps", "words"),
    [
        ([{"name": ""}], "apps[0].name"),
        ([{"name": "A", "board": "side"}], "apps[0].board"),
        ([{"name": "A", "domains": [{"name": "D", "max_runtime": "soon"}]}], "soon"),
        ([{"name": "A", "domains": [{"name": "D", "max_runtime": 0}]}], "greater"),
        ([{"name": "A"}, {"name": "a"}], "more than once: a"),
        ([{"name": "A", "domains": ["D", {"name": "d"}]}], "domain more than once: d"),
    ],
)
def test_invalid_catalog_names_problem(tmp_path: Path, apps: Any, words: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load(tmp_path, apps)

    assert words in str(caught.value)


def test_apps_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    path.write_text('{"apps": {"name": "A"}}', encoding="utf-8")

    with pytest.raises(CatalogError, match="invalid"):
        Catalog.load(path)


def test_default_path_may_be_absent(clean_env: None) -> None:
    assert load_catalog(Settings(_env_file=None)).is_open is True


def test_configured_path_must_exist(clean_env: None, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, apps_config=tmp_path / "apps.json")

    with pytest.raises(CatalogError):
        load_catalog(settings)


def test_default_path_is_used_when_present(clean_env: None, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "apps.json").write_text(
        json.dumps({"apps": [{"name": "Planning"}]}), encoding="utf-8"
    )

    catalog = load_catalog(Settings(_env_file=None))

    assert catalog.is_open is False
    assert catalog.app("planning") is not None


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    text = json.dumps({"apps": [{"name": "Planning", "domains": ["Actual"]}]})
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    catalog = Catalog.load(path)

    assert [app.name for app in catalog.apps] == ["Planning"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            {"apps": [{"name": "P", "dispaly_name": "Plan"}]},
            "apps[0].dispaly_name: unknown key; did you mean display_name?",
        ),
        (
            {"apps": [{"name": "P", "domains": [{"name": "A", "max_runtme": 60}]}]},
            "apps[0].domains[0].max_runtme: unknown key; did you mean max_runtime?",
        ),
        ({"Apps": []}, "Apps: unknown key; did you mean apps?"),
        ({"apps": [], "comment": "x"}, "comment: unknown key; the known keys"),
    ],
)
def test_unknown_key_is_rejected_with_hint(
    tmp_path: Path, content: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps(content), encoding="utf-8")

    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)

    assert any(item.startswith(problem) for item in caught.value.problems)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", "the file must be a JSON object with an apps list"),
        ('{"apps": ["Planning"]}', "apps[0]: each app must be a JSON object"),
        (
            '{"apps": [{"name": "P", "domains": [7]}]}',
            "apps[0].domains[0]: each domain must be a name or a JSON object",
        ),
        ('{"apps": [{"name": "P", "board": "side"}]}', "must be 'main' or 'arcs'"),
        (
            '{"apps": [{"name": "P", "domains": [{"name": "A", "max_runtime": "x"}]}]}',
            "apps[0].domains[0].max_runtime: invalid duration 'x'",
        ),
    ],
)
def test_invalid_value_message_is_readable(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "apps.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)

    assert problem in str(caught.value)
    assert "Value error" not in str(caught.value)
    assert "_CatalogFile" not in str(caught.value)
    assert "Config" not in str(caught.value)
    assert "Input should be" not in str(caught.value)


def test_unusable_entries_name_empty_apps(tmp_path: Path) -> None:
    catalog = load(tmp_path, [])

    assert catalog.unusable_entries()[0].startswith("apps is empty")


def test_unusable_entries_name_app_without_domains(tmp_path: Path) -> None:
    catalog = load(tmp_path, [{"name": "A", "domains": ["D"]}, {"name": "B"}])

    entries = catalog.unusable_entries()

    assert len(entries) == 1
    assert entries[0].startswith("apps[1] (B) has no domains")


def test_open_catalog_has_no_unusable_entries() -> None:
    assert Catalog().unusable_entries() == []
