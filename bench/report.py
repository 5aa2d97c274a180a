"""Turn measurements into verdicts and the markdown of docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import coalescing, growth, ingest
from bench.stats import percentile, spread

INGEST_RATIO_GOAL = 0.25
INGEST_P99_GOAL_MS = 25.0
SLASH_P99_GOAL_MS = 200.0
GROWTH_RATIO_GOAL = 1.5
RSS_GOAL_MB = 120.0
READY_GOAL_SECONDS = 1.5


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    goal: str
    met: bool | None  # None: reported without a goal, or not measured

    @property
    def result(self) -> str:
        if self.met is None:
            return "reported" if self.goal == "—" else "not measured"
        return "met" if self.met else "**not met**"


@dataclass
class Section:
    verdicts: list[Verdict] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ingest_section(rounds: Sequence[ingest.IngestRound], mode: str) -> Section:
    section = Section()
    ratio = spread([r.ratio for r in rounds])
    ratio_uvloop = spread([r.ratio_uvloop for r in rounds])
    p99 = spread([r.single.load.p99_ms for r in rounds])
    single = spread([r.single.load.per_second for r in rounds])
    bare = spread([r.bare.load.per_second for r in rounds])
    bare_uvloop = spread([r.bare_uvloop.load.per_second for r in rounds])
    batch = spread([r.batch_updates_per_second for r in rounds])
    section.verdicts += [
        Verdict(
            "1. Single-status POSTs, share of the bare aiohttp rate "
            f"({ingest.CONNECTIONS} connections; the bare handler on asyncio's "
            "loop, aiohttp's default)",
            f"{ratio.format_percent()} "
            f"(median rates {single.median:,.0f} and {bare.median:,.0f} requests/s)",
            f"≥ {INGEST_RATIO_GOAL:.0%}",
            ratio.median >= INGEST_RATIO_GOAL,
        ),
        Verdict(
            "1. The same share, of a bare aiohttp handler on uvloop (the event loop "
            "that EPMPulse runs on)",
            f"{ratio_uvloop.format_percent()} "
            f"(median bare rate {bare_uvloop.median:,.0f} requests/s)",
            "—",
            None,
        ),
        Verdict(
            "1. Single-status POST latency, p99",
            p99.format(1, " ms"),
            f"≤ {INGEST_P99_GOAL_MS:.0f} ms",
            p99.median <= INGEST_P99_GOAL_MS,
        ),
        Verdict(
            f"1. Batch ingest ({ingest.BATCH_SIZE} updates per POST, "
            f"{ingest.BATCH_CONNECTIONS} connections)",
            batch.format(0, " updates/s"),
            "—",
            None,
        ),
    ]
    rows = []
    for index, r in enumerate(rounds, start=1):
        rows.append(
            [
                str(index),
                f"{r.bare.load.per_second:,.0f}",
                f"{r.bare_uvloop.load.per_second:,.0f}",
                f"{r.single.load.per_second:,.0f}",
                f"{r.ratio:.1%} / {r.ratio_uvloop:.1%}",
                f"{r.single.load.p50_ms:.1f} / {r.single.load.p99_ms:.1f}",
                f"{r.bare.load.p50_ms:.1f} / {r.bare.load.p99_ms:.1f}",
                f"{r.batch_updates_per_second:,.0f}",
                f"{r.batch.load.p99_ms:.1f}",
                f"{r.single.cpu_us_per_request:.0f} / "
                f"{r.bare.cpu_us_per_request:.0f} / "
                f"{r.bare_uvloop.cpu_us_per_request:.0f}",
                f"{r.single.server_cpu:.0%} / {r.single.load.client_cpu:.0%}",
            ]
        )
    server_cpu = spread([r.single.cpu_us_per_request for r in rounds]).median
    bare_cpu = spread([r.bare.cpu_us_per_request for r in rounds]).median
    section.markdown += [
        "### 1. Ingest",
        "",
        f"Median server CPU per request: {server_cpu:.0f} µs for EPMPulse and "
        f"{bare_cpu:.0f} µs for the bare handler ({server_cpu / bare_cpu:.1f}×). A "
        f"{INGEST_RATIO_GOAL:.0%} share of the bare rate allows about "
        f"{1 / INGEST_RATIO_GOAL:.0f}×.",
        "",
        f"Server mode: {mode}. Per round, wrk runs "
        f"{rounds[0].single.load.seconds:.0f} s against each server after a "
        "warm-up: the bare handler on asyncio's loop, the bare handler on uvloop "
        "and EPMPulse, in reverse order every other round.",
        "",
        *_table(
            [
                "Round",
                "Bare aiohttp req/s",
                "Bare on uvloop req/s",
                "EPMPulse req/s",
                "Share (of bare / of bare on uvloop)",
                "EPMPulse p50 / p99 ms",
                "Bare p50 / p99 ms",
                "Batch updates/s",
                "Batch p99 ms",
                "Server CPU µs per request (EPMPulse / bare / bare on uvloop)",
                "Server / client CPU",
            ],
            rows,
        ),
        "",
        "Server / client CPU is the share of one core that the server process "
        "and the wrk client used during the single-status run. CPU per request "
        "varies less than rates when other work shares the machine.",
        "",
    ]
    return section


def slash_section(
    rounds: Sequence[ingest.IngestRound], delivered: int, sent: int
) -> Section:
    section = Section()
    probes = [r.slash for r in rounds if r.slash is not None]
    pooled = [value for probe in probes for value in probe.latencies_ms]
    if not pooled:
        section.verdicts.append(
            Verdict(
                "4. Slash command ack under ingest load, p99",
                "not measured: the server has no Slack app (HTTP mode) yet",
                f"< {SLASH_P99_GOAL_MS:.0f} ms",
                None,
            )
        )
        return section
    p99 = percentile(pooled, 0.99)
    section.verdicts.append(
        Verdict(
            "4. Slash command ack under ingest load, p99",
            f"{p99:.1f} ms (p50 {percentile(pooled, 0.5):.1f} ms, max "
            f"{max(pooled):.1f} ms, {len(pooled)} commands)",
            f"< {SLASH_P99_GOAL_MS:.0f} ms",
            p99 < SLASH_P99_GOAL_MS,
        )
    )
    rows = [
        [
            str(index),
            str(len(probe.latencies_ms)),
            f"{percentile(probe.latencies_ms, 0.5):.1f}",
            f"{percentile(probe.latencies_ms, 0.99):.1f}",
            f"{max(probe.latencies_ms):.1f}",
        ]
        for index, probe in enumerate(probes, start=1)
    ]
    section.markdown += [
        "### 4. Slash command under load",
        "",
        f"`/epmpulse status` as a signed HTTP-mode request, {ingest.SLASH_RATE:.0f} "
        "per second from a third process, during each round's single-status load. "
        "The time is from sending the request to its HTTP 200 (the ack); the "
        f"ephemeral reply reached the fake Slack's response_url for {delivered} of "
        f"{sent} commands.",
        "",
        *_table(["Round", "Commands", "p50 ms", "p99 ms", "max ms"], rows),
        "",
    ]
    return section


def coalescing_section(
    runs: Sequence[coalescing.CoalescingRun], debounce: float
) -> Section:
    section = Section()
    max_edits = int(coalescing.SECONDS / debounce) + 1
    edits = spread([run.edits for run in runs])
    gaps = [run.min_gap for run in runs if run.min_gap is not None]
    converge = [run.converge_seconds for run in runs]
    converged = [value for value in converge if value is not None]
    section.verdicts += [
        Verdict(
            f"2. canvases.edit calls for {coalescing.UPDATES:,} updates in "
            f"{coalescing.SECONDS:.0f} s",
            f"{edits.format(0)}; closest two {min(gaps):.2f} s apart"
            if gaps
            else edits.format(0),
            f"≤ {max_edits}, ≥ {debounce:g} s apart",
            edits.high <= max_edits
            and all(gap >= debounce - coalescing.GAP_TOLERANCE for gap in gaps),
        ),
        Verdict(
            "2. Last 200 to a canvas showing the final state",
            spread(converged).format(2, " s")
            if len(converged) == len(converge)
            else f"not reached in {sum(v is None for v in converge)} run(s)",
            f"≤ {debounce + 1:g} s",
            len(converged) == len(converge)
            and max(converged) <= debounce + 1
            and all(run.final_matches for run in runs),
        ),
    ]
    rows = [
        [
            str(index),
            str(run.edits),
            f"{run.min_gap:.2f}" if run.min_gap is not None else "—",
            f"{run.converge_seconds:.2f}" if run.converge_seconds is not None else "—",
            "yes" if run.final_matches else "no",
            f"{run.send_seconds:.2f}",
            f"{run.client_p99_ms:.1f}",
        ]
        for index, run in enumerate(runs, start=1)
    ]
    section.markdown += [
        "### 2. Canvas coalescing",
        "",
        f"Debounce window {debounce:g} s (the default). Edits are counted at the "
        "fake Slack from the first update until one window after the canvas "
        "showed the final state. Two edits may arrive up to "
        f"{coalescing.GAP_TOLERANCE:g} s closer than a window because each "
        "arrival includes its HTTP round trip.",
        "",
        *_table(
            [
                "Run",
                "Edits",
                "Closest edits s",
                "Final state after s",
                "Canvas ends on final state",
                "Send time s",
                "POST p99 ms",
            ],
            rows,
        ),
        "",
    ]
    return section


def growth_section(
    seeded: growth.Seeded,
    small: Sequence[growth.GrowthRun],
    large: Sequence[growth.GrowthRun],
    flapping: Sequence[tuple[growth.GrowthRun, growth.GrowthRun]],
    flapping_file_kib: float,
) -> Section:
    section = Section()
    small_p50 = spread([run.p50_ms for run in small])
    large_p50 = spread([run.p50_ms for run in large])
    ratio = large_p50.median / small_p50.median
    p99_ratio = (
        spread([run.p99_ms for run in large]).median
        / spread([run.p99_ms for run in small]).median
    )
    ready = spread([run.ready_seconds for run in large])
    rss = max([seeded.rss_mb] + [run.rss_mb for run in large])
    section.verdicts += [
        Verdict(
            "3. Write latency (p50), 100,000 vs 1,000 history events",
            f"{ratio:.2f}× ({large_p50.format(2, ' ms')} vs "
            f"{small_p50.format(2, ' ms')}; p99 ratio {p99_ratio:.2f}×)",
            f"≤ {GROWTH_RATIO_GOAL:g}×",
            ratio <= GROWTH_RATIO_GOAL,
        ),
        Verdict(
            "3. Memory (RSS) after 100,000 events",
            f"{rss:.0f} MB (peak {seeded.peak_rss_mb:.0f} MB while storing them)",
            f"≤ {RSS_GOAL_MB:.0f} MB",
            rss <= RSS_GOAL_MB,
        ),
        Verdict(
            "3. Start to ready with 100,000 events on disk",
            ready.format(2, " s"),
            f"≤ {READY_GOAL_SECONDS:g} s",
            ready.median <= READY_GOAL_SECONDS,
        ),
    ]
    if flapping:
        base = spread([pair[0].p50_ms for pair in flapping])
        flap = spread([pair[1].p50_ms for pair in flapping])
        section.verdicts.append(
            Verdict(
                f"3. Write latency (p50) after {growth.FLAPPING:,} updates in which "
                "every row fails every other run",
                f"{flap.median / base.median:.1f}× the 1,000-event latency "
                f"({flap.format(2, ' ms')} vs {base.format(2, ' ms')}); data file "
                f"{flapping_file_kib:,.0f} KiB",
                "—",
                None,
            )
        )
    rows = []
    for index, (a, b) in enumerate(zip(small, large, strict=True), start=1):
        rows.append(
            [
                str(index),
                f"{a.ready_seconds:.2f} / {b.ready_seconds:.2f}",
                f"{a.p50_ms:.2f} / {b.p50_ms:.2f}",
                f"{a.p99_ms:.2f} / {b.p99_ms:.2f}",
                f"{a.writes} / {b.writes}",
                f"{a.rss_mb:.0f} / {b.rss_mb:.0f}",
            ]
        )
    section.markdown += [
        "### 3. Growth",
        "",
        f"Seeding stored {growth.LARGE:,} events in batches of {growth.BATCH_SIZE} "
        f"at {seeded.updates_per_second:,.0f} updates/s "
        f"({growth.SEED_CONCURRENCY} connections); that process then used "
        f"{seeded.rss_mb:.0f} MB. Each cell is 1,000 / 100,000 events at start.",
        "",
        *_table(
            [
                "Run",
                "Start to ready s",
                "Write p50 ms",
                "Write p99 ms",
                "Writes measured",
                "RSS MB after",
            ],
            rows,
        ),
        "",
    ]
    return section


def summary_table(verdicts: Sequence[Verdict]) -> list[str]:
    # By target number; the sort is stable, so each target keeps its order.
    ordered = sorted(verdicts, key=lambda v: v.target.split(".", 1)[0])
    rows = [[v.target, v.measured, v.goal, v.result] for v in ordered]
    return _table(["Target", "Measured: median (min–max)", "Goal", "Result"], rows)
