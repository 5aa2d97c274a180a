"""The apps and domains that EPMPulse shows, read from ``apps.json``.

Without an apps.json the catalog is open: rows appear as they are reported.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from store.durations import parse_duration
from store.smoke import is_smoke_test_row

Board = Literal["main", "arcs"]
BOARDS: tuple[Board, ...] = ("main", "arcs")


class CatalogError(Exception):
    """apps.json is missing, unreadable or invalid. The message names the file.

    ``problems`` lists each invalid value of a file that failed validation, as
    "apps[0].board: must be 'main' or 'arcs'", so they can be shown one per line.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class DomainConfig(BaseModel):
    # Unknown keys are rejected, so a typo such as "max_runtme" is reported
    # instead of silently leaving the setting at its default.
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    max_runtime: float | None = None
    product: str | None = None

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _parse_runtime(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    display_name: str | None = None
    board: Board | None = None
    domains: tuple[DomainConfig, ...] = ()
    epm: dict[str, Any] | None = None

    @field_validator("domains", mode="before")
    @classmethod
    def _domain_names(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def home_board(self) -> Board:
        return self.board or default_board(self.name)

    def domain(self, name: str) -> DomainConfig | None:
        for domain in self.domains:
            if domain.name.casefold() == name.casefold():
                return domain
        return None


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apps: list[AppConfig]


def default_board(app_name: str) -> Board:
    """Put an app named ARCS on the ARCS board and every other app on the main one."""
    return "arcs" if app_name.casefold() == "arcs" else "main"


class UnknownRow(ValueError):
    """An update names an app or domain that apps.json does not list."""

    def __init__(self, field: str, value: str, known: list[str]) -> None:
        self.field = field
        self.value = value
        self.known = known
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(known) if known else "none"
        super().__init__(
            f"unknown {field} {value!r}.{hint} Known: {listed}. "
            "Fix the name in the EPM rule, or add it to apps.json and reload."
        )


class Catalog:
    """Apps in file order, each with its domains, board and optional EPM settings."""

    def __init__(self, apps: Iterable[AppConfig] = (), path: Path | None = None):
        self.apps: tuple[AppConfig, ...] = tuple(apps)
        self.path = path
        self._by_name = {app.name.casefold(): app for app in self.apps}

    @property
    def is_open(self) -> bool:
        """True when no apps.json was loaded, so any app and domain is accepted."""
        return self.path is None

    def app(self, name: str) -> AppConfig | None:
        return self._by_name.get(name.casefold())

    def resolve(self, app: str, domain: str) -> tuple[str, str]:
        """Return the configured spelling of an app and domain.

        Raises UnknownRow when apps.json lists the apps and this one is not there.
        The smoke-test row (store.smoke) is accepted either way.
        """
        if self.is_open or is_smoke_test_row(app, domain):
            return app, domain
        app_config = self.app(app)
        if app_config is None:
            raise UnknownRow("app", app, [a.name for a in self.apps])
        domain_config = app_config.domain(domain)
        if domain_config is None:
            raise UnknownRow("domain", domain, [d.name for d in app_config.domains])
        return app_config.name, domain_config.name

    def unusable_entries(self) -> list[str]:
        """Describe each part of a loaded apps.json for which every update would be
        rejected: an empty apps list, or an app without domains. Each entry
        includes the fix."""
        if self.is_open:
            return []
        if not self.apps:
            return [
                "apps is empty, so every update would be rejected: list your apps "
                "and their domains, or remove the file to accept any app and domain"
            ]
        return [
            f"apps[{index}] ({app.name}) has no domains, so every update for it would "
            'be rejected: list them, e.g. "domains": ["Actual", "Forecast"]'
            for index, app in enumerate(self.apps)
            if not app.domains
        ]

    def board_of(self, app: str) -> Board:
        app_config = self.app(app)
        return app_config.home_board if app_config else default_board(app)

    def title_of(self, app: str) -> str:
        app_config = self.app(app)
        return app_config.title if app_config else app

    def order_key(self, app: str) -> int:
        """Sort apps in apps.json order; unknown apps go last, in first-seen order."""
        for index, app_config in enumerate(self.apps):
            if app_config.name == app:
                return index
        return len(self.apps)

    def max_runtime(self, app: str, domain: str) -> float | None:
        app_config = self.app(app)
        domain_config = app_config.domain(domain) if app_config else None
        return domain_config.max_runtime if domain_config else None

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read apps.json. Raises CatalogError naming the file and what is wrong."""
        try:
            # utf-8-sig also accepts the byte order mark that Windows editors add.
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise CatalogError(
                f"apps config {path} not found: create it or unset EPMPULSE_APPS_CONFIG"
            ) from exc
        except OSError as exc:
            raise CatalogError(f"apps config {path} is unreadable: {exc}") from exc
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"apps config {path} is not valid JSON: {exc.msg} at line "
                f"{exc.lineno} column {exc.colno}"
            ) from exc
        try:
            parsed = _CatalogFile.model_validate(raw)
        except ValidationError as exc:
            problems = [_describe_error(error) for error in exc.errors()]
            raise CatalogError(
                f"apps config {path} is invalid: {'; '.join(problems)}", problems
            ) from exc
        names = [app.name.casefold() for app in parsed.apps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise CatalogError(
                f"apps config {path} lists an app more than once: "
                f"{', '.join(duplicates)}"
            )
        for app in parsed.apps:
            domains = [domain.name.casefold() for domain in app.domains]
            repeated = sorted({name for name in domains if domains.count(name) > 1})
            if repeated:
                raise CatalogError(
                    f"apps config {path}: app {app.name} lists a domain more than "
                    f"once: {', '.join(repeated)}"
                )
        return cls(parsed.apps, path)


# pydantic names the model class when a level of the file has the wrong type
# ("Input should be a valid dictionary or instance of _CatalogFile"). These
# describe what that level must be instead.
_EXPECTED_SHAPES = {
    "_CatalogFile": "the file must be a JSON object with an apps list",
    "AppConfig": "each app must be a JSON object with a name and domains",
    "DomainConfig": "each domain must be a name or a JSON object with a name",
}

# The model that validates each level of the file, by the keys on the way to it.
_MODELS_BY_KEYS: dict[tuple[str, ...], type[BaseModel]] = {
    (): _CatalogFile,
    ("apps",): AppConfig,
    ("apps", "domains"): DomainConfig,
}


def _describe_error(error: ErrorDetails) -> str:
    """Turn one pydantic error into "apps[0].board: must be 'main' or 'arcs'"."""
    loc = error["loc"]
    where = _json_path(loc)
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key{_key_hint(loc)}"
    if error["type"] == "model_type":
        class_name = str(error.get("ctx", {}).get("class_name", ""))
        message = _EXPECTED_SHAPES.get(class_name, error["msg"])
    elif error["type"] == "missing":
        message = "missing"
    else:
        message = error["msg"].removeprefix("Value error, ")
        message = message.replace("Input should be", "must be")
    return f"{where}: {message}" if where else message


def _json_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _key_hint(loc: Sequence[int | str]) -> str:
    keys = tuple(part for part in loc[:-1] if isinstance(part, str))
    model = _MODELS_BY_KEYS.get(keys)
    if model is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]).casefold(), known, n=1)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; the known keys are {', '.join(known)}"
