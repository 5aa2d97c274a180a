"""The apps and domains that EPMPulse shows, read from ``apps.json``.

Without an apps.json the catalog is open: rows appear as they are reported.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from store.durations import parse_duration
from store.smoke import is_smoke_test_row

Board = Literal["main", "arcs"]
BOARDS: tuple[Board, ...] = ("main", "arcs")


class CatalogError(Exception):
    """apps.json is missing, unreadable or invalid. The message names the file."""


class DomainConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    max_runtime: float | None = None
    product: str | None = None

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _parse_runtime(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

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
    model_config = ConfigDict(extra="allow")

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
            text = path.read_text(encoding="utf-8")
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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise CatalogError(f"apps config {path} is invalid: {problems}") from exc
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
