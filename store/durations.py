"""Durations written as seconds or as a number with ``s``, ``m`` or ``h``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Return the seconds in ``90``, ``"90"``, ``"5s"``, ``"10m"`` or ``"2h"``.

    Raises ValueError naming the value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use seconds or e.g. 5s, 10m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use seconds or a number with s, m or h "
                "(e.g. 90, 5s, 10m, 2h)"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: it must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds for people: ``45s``, ``12m``, ``1h 05m``, ``2d 3h``."""
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
