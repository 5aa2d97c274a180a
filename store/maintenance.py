"""EPM's daily maintenance window, as ``EPMPULSE_MAINTENANCE`` sets it.

The window is written in the wall-clock time of a named zone, for example
``22:00-23:00 America/New_York``, and may cross midnight (``23:30-00:30 UTC``). Each
day's occurrence starts when the local clock first reads the start time and ends
when it first reads the end time, so the window follows daylight-saving changes:

- a reading that occurs twice (clocks go back) counts at its first occurrence;
- a reading that does not exist (clocks go forward) counts at the moment the clocks
  jump, so an occurrence that spans the jump is shorter by the skipped time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WINDOW = re.compile(
    r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s+(\S+)\s*$",
)
_EXAMPLE = "e.g. 22:00-23:00 America/New_York"


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A daily window from ``start`` to ``end`` in the wall-clock time of ``zone``."""

    start: time
    end: time
    zone: ZoneInfo

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def occurrence(self, day: date) -> tuple[datetime, datetime]:
        """Return the UTC start and end of the occurrence starting on local ``day``."""
        end_day = day + timedelta(days=1) if self.crosses_midnight else day
        start = _instant(day, self.start, self.zone)
        return start, _instant(end_day, self.end, self.zone)

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """Return the occurrence that contains ``now`` (aware), or None."""
        today = now.astimezone(self.zone).date()
        # Yesterday's occurrence is still open after midnight when the window
        # crosses it.
        for day in (today - timedelta(days=1), today):
            start, end = self.occurrence(day)
            if start <= now < end:
                return start, end
        return None

    def contains(self, now: datetime) -> bool:
        return self.current(now) is not None

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


def parse_maintenance(text: str) -> MaintenanceWindow:
    """Parse ``HH:MM-HH:MM Zone``. Raises ValueError naming the value and the fix."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(
            f"invalid maintenance window {text!r}: write start-end and an IANA time "
            f"zone ({_EXAMPLE})"
        )
    start_h, start_m, end_h, end_m, zone_name = match.groups()
    try:
        start = time(int(start_h), int(start_m))
        end = time(int(end_h), int(end_m))
    except ValueError as exc:
        raise ValueError(
            f"invalid maintenance window {text!r}: hours are 0-23 and minutes 0-59 "
            f"({_EXAMPLE})"
        ) from exc
    if start == end:
        raise ValueError(
            f"invalid maintenance window {text!r}: start and end are equal, so "
            f"the window has no length ({_EXAMPLE})"
        )
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"invalid maintenance window {text!r}: unknown time zone {zone_name!r}. "
            "Use an IANA name such as America/New_York or UTC"
        ) from exc
    return MaintenanceWindow(start, end, zone)


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant at which the clocks of ``zone`` first read ``wall`` on
    ``day``, or the moment they jump past it when they skip it."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _local(first, zone) == naive:
        return first

    # fold=1 maps a skipped reading with the offset after the jump, so it lands
    # before the jump, and fold=0 uses the offset before it and lands after. The
    # jump is on a whole second between the two.
    low = int(naive.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _local(datetime.fromtimestamp(middle, UTC), zone) >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


class Maintenance:
    """EPM's maintenance state: inside the configured daily window, or while the
    pods return their maintenance page to pull mode.

    Usage::

        maintenance = Maintenance(parse_maintenance("22:00-23:00 America/New_York"))
        maintenance.active()                   # by the injected clock
        maintenance.set_epm_maintenance(True)  # the EPM pods return 503
    """

    def __init__(
        self,
        window: MaintenanceWindow | None,
        *,
        epm_maintenance: Callable[[], bool] = lambda: False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.window = window
        self.epm_maintenance = epm_maintenance
        self.clock = clock
        self._epm_reported = False

    def set_epm_maintenance(self, active: bool) -> None:
        self._epm_reported = active

    @property
    def epm_reports_maintenance(self) -> bool:
        return self._epm_reported or self.epm_maintenance()

    def active(self, now: datetime | None = None) -> bool:
        now = now or self.clock()
        if self.epm_reports_maintenance:
            return True
        return self.window is not None and self.window.contains(now)

    def notice(self, tz: tzinfo, now: datetime | None = None) -> str | None:
        """Return the line the boards show during maintenance, or None outside it."""
        now = now or self.clock()
        current = self.window.current(now) if self.window is not None else None
        if current is not None:
            start, end = current
            return (
                f":construction: EPM maintenance {_clock(start, tz)}-"
                f"{_clock(end, tz)} (the daily window): jobs may pause, and stuck-job "
                "alerts wait until it ends."
            )
        if self.epm_reports_maintenance:
            return (
                ":construction: EPM maintenance: the pods return their maintenance "
                "page, so jobs may pause and stuck-job alerts wait until it ends."
            )
        return None


def _clock(instant: datetime, tz: tzinfo) -> str:
    local = instant.astimezone(tz)
    return f"{local:%H:%M} {local.tzname() or 'UTC'}"
