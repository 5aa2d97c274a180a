"""The access log: one line per API and Slack request, logged in batches."""

from __future__ import annotations

import asyncio
import logging

access_log = logging.getLogger("handlers.access")
# The record attribute that marks a record as several access lines, one per
# request. The formatters in bot.logs write each line as a log line of its own.
ACCESS_BATCH = "access_batch"


class AccessLines:
    """Logs the access lines of one event-loop iteration as one record.

    Building, filtering and formatting a log record took about a sixth of the
    server's time per webhook request, so a burst of requests shares one record.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(line)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            access_log.info("%s", "\n".join(lines), extra={ACCESS_BATCH: True})
