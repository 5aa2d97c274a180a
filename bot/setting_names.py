"""Warnings about names that look like EPMPulse settings but are not, such as
``EPMPULSE_TIMEZON``: pydantic-settings ignores unknown names, so a typo would
otherwise leave the setting at its default without any warning."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import AliasChoices

from bot.config_check import Problem
from bot.settings import Settings

# Prefixes of the names EPMPulse reads. Other names with these prefixes are likely
# typos.
SETTING_PREFIXES = ("EPMPULSE_", "SLACK_", "EPM_")


def known_setting_names() -> set[str]:
    """Return the names of every setting that Settings reads, in upper case."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
    return names


def check_setting_names(
    environ: Mapping[str, str], env_file: Path | None
) -> list[Problem]:
    """Warn about names that look like EPMPulse settings but are not, with the
    closest known name.

    Every unknown ``EPMPULSE_*`` name is listed, and every unknown name of the
    three prefixes in ``env_file``. An unknown ``SLACK_*`` or ``EPM_*`` variable
    of the environment is listed only when it is close to a known name, because
    other programs use those prefixes too.
    """
    known = known_setting_names()
    in_file: Iterable[str] = ()
    if env_file is not None and env_file.is_file():
        in_file = dotenv_values(env_file).keys()
    sources = {name: str(env_file) for name in in_file}
    for name in environ:
        sources.setdefault(name, "the environment")
    problems: list[Problem] = []
    for name, source in sorted(sources.items()):
        upper = name.upper()
        if not upper.startswith(SETTING_PREFIXES) or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        from_environment = source == "the environment"
        if not close and from_environment and not upper.startswith("EPMPULSE_"):
            continue
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(
            Problem(
                "warning",
                name,
                f"is not an EPMPulse setting, so it is ignored (set in {source}){hint}",
            )
        )
    return problems
