"""`invoke status`: the runs in the journal and the latest one's steps, from disk only."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from hadeploy.journal import RunStore


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def print_status(console: Console, store: RunStore) -> None:
    """Print a table of runs and the latest run's steps and hosts."""
    journals = store.all()
    if not journals:
        console.print(f"No runs yet in {store.runs}.")
        return
    runs = Table(title="Runs", show_lines=False)
    for column in ("run", "phase", "kind", "status", "started", "rolled back by"):
        runs.add_column(column)
    for j in journals:
        runs.add_row(j.run_id, j.phase, j.kind, j.status, _when(j.started),
                     j.rolled_back_by or "")
    console.print(runs)
    latest = journals[-1]
    steps = Table(title=f"Latest run {latest.run_id} ({latest.status})")
    for column in ("step", "host", "state", "seconds", "error"):
        steps.add_column(column)
    for step in latest.steps:
        for host, entry in step.hosts.items():
            seconds = (f"{entry.finished - entry.started:.2f}"
                       if entry.started and entry.finished else "")
            steps.add_row(step.id, host, entry.state, seconds,
                          (entry.error or "").splitlines()[0] if entry.error else "")
    console.print(steps)
