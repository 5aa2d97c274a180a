"""Run every benchmark and write docs/benchmarks.md.

Usage::

    python -m bench              # full run, about 5 minutes; writes docs/benchmarks.md
    python -m bench --quick      # short run to try the harness; prints the report
    python -m bench --only growth --output /tmp/growth.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import coalescing, growth, ingest, machine
from bench.procs import RATE_LIMIT, REPO
from bench.report import (
    Section,
    coalescing_section,
    growth_section,
    ingest_section,
    slash_section,
    summary_table,
)
from bench.slackfake import slack_app_available, slack_env
from bench.wrk import WrkMissing, wrk_path

TARGETS = ("ingest", "coalescing", "growth")
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
FINDINGS = Path(__file__).resolve().parent / "findings.md"


@dataclass(frozen=True)
class Plan:
    ingest_rounds: int
    ingest_seconds: int
    coalescing_runs: int
    growth_runs: int
    growth_slices: int  # 1 s slices per side and run
    warmup: int = 1


FULL = Plan(
    ingest_rounds=5,
    ingest_seconds=5,
    coalescing_runs=3,
    growth_runs=5,
    growth_slices=4,
)
QUICK = Plan(
    ingest_rounds=2,
    ingest_seconds=2,
    coalescing_runs=1,
    growth_runs=2,
    growth_slices=2,
)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class CpuMeter:
    """Share of the whole machine's CPU time that was busy, from /proc/stat."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def busy(self) -> float:
        busy, total = self._read()
        return (busy - self.start[0]) / max(1, total - self.start[1])


def run_ingest(workdir: Path, plan: Plan) -> list[Section]:
    from tests.fakes.slack_api import FakeSlack

    http_mode = slack_app_available()
    mode = (
        "HTTP mode (signing secret set) against the fake Slack Web API"
        if http_mode
        else "publish-only (bot token, no Slack app yet) against the fake Slack"
    )
    with FakeSlack.in_thread() as fake, ExitStack() as stack:
        bares, server = ingest.start_servers(
            workdir, slack_env(fake, http_mode=http_mode), stack
        )
        rounds = ingest.run_rounds(
            bares,
            server,
            rounds=plan.ingest_rounds,
            seconds=plan.ingest_seconds,
            warmup=plan.warmup,
            response_url=fake.response_url("") if http_mode else None,
            on_round=lambda index: progress(f"ingest round {index + 1} done"),
        )
        stack.close()
        names = [name for r in rounds if r.slash for name in r.slash.names]
        delivered = sum(1 for name in names if fake.responses(name))
    return [ingest_section(rounds, mode), slash_section(rounds, delivered, len(names))]


def run_coalescing(workdir: Path, plan: Plan) -> Section:
    runs = []
    for index in range(plan.coalescing_runs):
        runs.append(coalescing.run_once(workdir, index))
        progress(f"coalescing run {index + 1}: {runs[-1].edits} edits")
    return coalescing_section(runs, coalescing.default_debounce())


def run_growth(workdir: Path, plan: Plan) -> Section:
    progress(f"growth: storing {growth.LARGE:,} events")
    seeded = growth.seed(workdir / "growth")
    small, large = [], []
    for index in range(plan.growth_runs):
        a, b = growth.run_pair(
            (seeded.small_dir, seeded.large_dir),
            workdir / "growth" / "run",
            slices=plan.growth_slices,
            warmup=plan.warmup,
        )
        small.append(a)
        large.append(b)
        progress(f"growth run {index + 1} done")

    progress(f"growth: storing {growth.FLAPPING:,} updates of failing rows")
    flapping_dir = growth.seed_flapping(workdir / "growth")
    flapping = [
        growth.run_pair(
            (seeded.small_dir, flapping_dir),
            workdir / "growth" / "run",
            slices=plan.growth_slices,
            warmup=plan.warmup,
        )
        for _ in range(min(2, plan.growth_runs))
    ]
    return growth_section(
        seeded, small, large, flapping, growth.data_file_kib(flapping_dir)
    )


def render(
    command: str,
    described: dict[str, str],
    conditions: dict[str, str],
    sections: Sequence[Section],
    quick: bool,
) -> str:
    verdicts = [v for section in sections for v in section.verdicts]
    lines = [
        "# Benchmarks",
        "",
        "Throughput, latency, canvas coalescing and growth of EPMPulse, measured "
        "with real `epmpulse serve` processes on loopback. This page is written "
        "by the benchmark command; rerun it instead of editing the page.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick run**: few and short runs to try the harness. These numbers "
            "are not results.",
            "",
        ]
    lines += [
        "## Results",
        "",
        *summary_table(verdicts),
        "",
        "Medians over the runs, with the lowest and highest run in brackets.",
        "",
        "## How this was measured",
        "",
        "```sh",
        command,
        "```",
        "",
        "Needs `wrk` from the Debian or Ubuntu packages (`apt-get install wrk`) and "
        "the project installed with its test extras (`pip install -e '.[test]'`): "
        "the fake Slack Web API and the slash command payloads come from "
        "`tests/fakes/`. The benchmarks are not part of the test suite or CI.",
        "",
        "- Servers: `epmpulse serve` subprocesses on 127.0.0.1 with a fresh data "
        "directory each, logging at INFO (one access-log line per request) to a "
        "file. Target 1 and 4 run in Slack HTTP mode and target 2 in publish-only "
        "mode, both against the fake Slack Web API in the harness process; target "
        "3 runs in local mode.",
        f"- Rate limits: `EPMPULSE_RATE_LIMIT_POST` and `EPMPULSE_RATE_LIMIT_GET` "
        f"are raised to `{RATE_LIMIT}` per API key, as an operator would for a "
        "load test. With the defaults (1200 POSTs and 600 GETs per minute per "
        "key) most of this load would get 429 responses.",
        "- Load: wrk (one thread, C) for throughput and write latency; a Python "
        "aiohttp client process for the paced burst of target 2 and for seeding "
        "target 3; a third process for the slash commands of target 4. Every "
        "load is bounded by a duration or a count.",
        "- Updates: 50 rows (apps App0–App4, domains D0–D9), statuses alternate "
        "Loading and OK with a new job id each time, so every update changes its "
        "row and is stored durably. None is a failure, so no alert is sent.",
        "- Baseline: a bare aiohttp handler that returns 200 "
        "(`bench/bare_server.py`), driven by the same wrk command in the same "
        "round. The goal of target 1 is judged against it on asyncio's own event "
        "loop, aiohttp's default. `epmpulse serve` runs on uvloop, so the share "
        "of the same handler on uvloop is shown beside it.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {label} | {value} |" for label, value in described.items()],
        *[f"| {label} | {value} |" for label, value in conditions.items()],
        "",
        "The machine is shared: other work (such as test suites) may have run "
        "at the same time, which the load averages and the busy share show. "
        "Ratios from the same round are steadier than absolute numbers.",
        "",
        "## Details",
        "",
    ]
    for section in sections:
        lines += section.markdown
    if FINDINGS.exists():
        lines += ["## Findings", "", FINDINGS.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="few, short runs; prints the report"
    )
    parser.add_argument(
        "--only",
        choices=TARGETS,
        action="append",
        help="run only this target (repeatable)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"report file (default: {DEFAULT_OUTPUT.relative_to(REPO)} for a full "
        "run, standard output for --quick)",
    )
    args = parser.parse_args(argv)
    try:
        wrk_path()
    except WrkMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    targets = args.only or list(TARGETS)
    command = shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])])

    started = time.monotonic()
    meter = CpuMeter()
    load_before = machine.load_average()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="epmpulse-bench-") as tmp:
        workdir = Path(tmp)
        described = machine.describe(workdir)
        if "ingest" in targets:
            sections += run_ingest(workdir / "ingest", plan)
        if "coalescing" in targets:
            sections.append(run_coalescing(workdir / "coalescing", plan))
        if "growth" in targets:
            sections.append(run_growth(workdir, plan))
    conditions = {
        "Load average (1 / 5 / 15 min) at start": load_before,
        "Load average at end": machine.load_average(),
        "Whole-machine CPU busy during the run": f"{meter.busy():.0%}",
        "Run time": f"{time.monotonic() - started:.0f} s",
    }
    text = render(command, described, conditions, sections, args.quick)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        progress(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
