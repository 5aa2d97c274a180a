"""Target 2: a burst of updates becomes few canvas edits and ends on the last state.

The real ``epmpulse serve`` publishes to the fake Slack Web API. A client process
posts 1,000 single updates at an even pace over 10 s across 50 rows. The fake
records every ``canvases.edit`` with its arrival time and the markdown it sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.runclient import run_client
from bench.slackfake import slack_env
from bot.settings import Settings
from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID

UPDATES = 1000
SECONDS = 10.0
ROWS = 50
# Arrival times at the fake include the HTTP round trip, so two edits that the
# publisher started exactly one window apart may arrive a little closer.
GAP_TOLERANCE = 0.1


def default_debounce() -> float:
    return float(Settings.model_fields["canvas_debounce_seconds"].default)


@dataclass(frozen=True)
class CoalescingRun:
    edits: int
    min_gap: float | None  # seconds between consecutive edit arrivals
    converge_seconds: float | None  # last 200 → first edit showing the final state
    final_matches: bool  # the canvas at the end shows every row's last update
    client_p99_ms: float
    send_seconds: float


def rows_of(markdown: str) -> dict[str, tuple[str, str]]:
    """``"App/Domain"`` → (status, job id), read from the board's tables."""
    rows: dict[str, tuple[str, str]] = {}
    app = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            app = line[3:].strip()
            continue
        if app is None or not line.startswith("| ") or line.startswith("| ---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "Domain" or len(cells) < 4:
            continue
        status = cells[1].split(" ", 1)[-1]
        rows[f"{app}/{cells[0]}"] = (status, cells[3])
    return rows


def shows_final(markdown: str, final: dict[str, dict[str, str]]) -> bool:
    rows = rows_of(markdown)
    return all(
        rows.get(key) == (state["status"], state["job_id"])
        for key, state in final.items()
    )


def edit_markdown(call: Call) -> str:
    content = call.params["changes"][0]["document_content"]
    return str(content["markdown"])


def run_once(workdir: Path, index: int) -> CoalescingRun:
    debounce = default_debounce()
    with FakeSlack.in_thread() as fake:
        env = slack_env(fake, http_mode=False)
        with procs.epmpulse(workdir / f"coalescing-{index}", env) as server:
            # The start-up publish creates the channel canvas; wait for it, and a
            # window more, so the burst starts with a free window.
            found = fake.wait_for_sync(
                lambda: fake.channel_canvas(MAIN_CHANNEL_ID), timeout=15
            )
            assert found is not None
            canvas_id: str = found
            time.sleep(debounce + 0.2)
            load_start = time.monotonic()
            result = run_client(
                "paced",
                server.url,
                f"--count={UPDATES}",
                f"--seconds={SECONDS}",
                f"--rows={ROWS}",
                f"--prefix=c{index}",
                "--concurrency=50",
                timeout=SECONDS + 60,
            )
            final: dict[str, dict[str, str]] = result["final"]
            try:
                fake.wait_for_sync(
                    lambda: shows_final(fake.canvas_markdown(canvas_id), final),
                    timeout=debounce + 5,
                )
            except TimeoutError:
                pass
            # Stay a window longer, so a late extra edit would be counted.
            time.sleep(debounce + 0.5)
            edits = [
                call
                for call in fake.calls_to("canvases.edit")
                if call.timestamp >= load_start
            ]
            final_matches = shows_final(fake.canvas_markdown(canvas_id), final)
    return CoalescingRun(
        edits=len(edits),
        min_gap=_min_gap(edits),
        converge_seconds=_converged_after(edits, final, result["last_ack"]),
        final_matches=final_matches,
        client_p99_ms=result["p99_ms"],
        send_seconds=result["send_seconds"],
    )


def _min_gap(edits: list[Call]) -> float | None:
    times = sorted(call.timestamp for call in edits)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else None


def _converged_after(
    edits: list[Call], final: dict[str, dict[str, str]], last_ack: float
) -> float | None:
    for call in sorted(edits, key=lambda call: call.timestamp):
        if call.ok and call.responded_at is not None:
            if shows_final(edit_markdown(call), final):
                return max(0.0, call.responded_at - last_ack)
    return None


def passes(run: CoalescingRun, debounce: float) -> bool:
    max_edits = int(SECONDS / debounce) + 1
    spaced = run.min_gap is None or run.min_gap >= debounce - GAP_TOLERANCE
    converged = (
        run.converge_seconds is not None and run.converge_seconds <= debounce + 1
    )
    return run.edits <= max_edits and spaced and converged and run.final_matches
