"""One `deploy-lb` run of hadeploy in the lab, as an operator starts it, with what its JSON
events say about round trips and connections."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lab_setup import Setup
from bench.paths import ROOT
from bench.process import must, timed


@dataclass(frozen=True)
class HadeployRun:
    """The figures of one run; the per-host ones are None when the run reported none."""

    seconds: float
    rss_mb: float
    round_trips: float | None  # mean over the hosts
    round_trips_max: int | None
    connections_max: int | None
    changed: int  # host-steps changed
    first_connection: float | None = None  # s from starting the process to its first dial
    cpu_seconds: float = 0.0  # the process's user + system CPU time


def compile_bytecode(src: Path) -> None:
    """Compile hadeploy's modules in `src` as pip does when it installs the wheel: a run then
    loads bytecode even where PYTHONDONTWRITEBYTECODE keeps Python from caching its own."""
    must(timed([sys.executable, "-m", "compileall", "-q", str(src / "hadeploy")]),
         "compiling hadeploy's bytecode")


def run_finished(stdout: str) -> dict[str, Any]:
    """The last `run-finished` event of a `--json` run's output ({} if it has none)."""
    finished = [json.loads(line) for line in stdout.splitlines()
                if line.startswith("{") and '"run-finished"' in line]
    return finished[-1] if finished else {}


def run_hadeploy(setup: Setup, what: str) -> HadeployRun:
    """One `deploy-lb --yes --json`: wall time, memory, round trips and connections per host."""
    env = setup.env if setup.src == ROOT else {**setup.env, "PYTHONPATH": str(setup.src)}
    result = must(timed([sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts",
                         str(setup.inventory), "--yes", "--json"], env, setup.src),
                  f"hadeploy {what}")
    finished = run_finished(result.stdout)
    trips: dict[str, int] = finished.get("round_trips", {})
    connections: dict[str, int] = finished.get("connections", {})
    first: float | None = finished.get("first_connection")
    return HadeployRun(
        seconds=result.seconds, rss_mb=result.max_rss_kb / 1024,
        round_trips=statistics.mean(trips.values()) if trips else None,
        round_trips_max=max(trips.values()) if trips else None,
        connections_max=max(connections.values()) if connections else None,
        changed=result.stdout.count('"event": "host-changed"'),
        first_connection=None if first is None else first - result.started,
        cpu_seconds=result.cpu_seconds)
