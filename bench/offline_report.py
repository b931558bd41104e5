"""The offline plan's section of RESULTS.md: one row per source tree measured, the target,
and how it was measured; written in place of its earlier version, the rest left alone."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from bench.machine import machine
from bench.offline_plan import OfflinePlanFigures
from bench.sections import write_section
from hadeploy import __version__ as HADEPLOY_VERSION

OFFLINE_SECTION = "## Offline plan of a generated inventory (no lab)"
OFFLINE_TARGET = 1.0  # issue 8: the offline plan of a 200-host inventory builds in under 1 s


def offline_section(rows: list[tuple[str, OfflinePlanFigures]], command: str, when: float) -> str:
    """The RESULTS.md section of an offline plan measurement: one row per source tree
    measured (label, figures), the tree being measured first."""
    info = machine()
    found = rows[0][1]
    met = found.whole < OFFLINE_TARGET
    table = [
        "| hadeploy | planned LB hosts | runs | whole process, median (min–max) | "
        "load inventory | build runbook + plan | print plan | load + plan | peak RSS | "
        "lines printed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, f in rows:
        table.append(
            f"| {label} | {f.lbs} | {f.runs} | {f.whole:.3f} s "
            f"({f.whole_min:.3f}–{f.whole_max:.3f}) | {f.load:.3f} s | "
            f"{f.plan:.3f} s | {f.printing:.3f} s | {f.load + f.plan:.3f} s | "
            f"{f.rss_mb:.1f} MB | {f.lines} |")
    return "\n".join([
        OFFLINE_SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))} with `{command}` "
        f"on {info.cpus} CPUs ({info.cpu}), {info.os}, Python "
        f"{platform.python_version()}, hadeploy {HADEPLOY_VERSION}; load average (1 min) "
        f"{found.load_avg:.1f} at the end (the machine is shared). No lab: the inventory "
        f"({found.lbs} load balancers and 3 controllers, addresses in 198.18.0.0/15) is "
        "generated and never connected to.",
        "",
        *table,
        "",
        f"Target (issue 8): the offline plan of a 200-host inventory in under "
        f"{OFFLINE_TARGET:g} s: {found.whole:.3f} s, "
        f"{'met' if met else 'NOT met'}{'' if found.lbs == 200 else ' (not 200 hosts)'}.",
        "",
        "- whole process: `python -m hadeploy deploy-lb --hosts INV --dry-run --offline` with "
        "NO_COLOR=1 and stdout to a file, wall time from start to exit (interpreter start-up "
        "and imports included); peak RSS is the child's ru_maxrss.",
        "- the phases: a fresh `python -c` that imports hadeploy (median "
        f"{found.imports:.3f} s), then times `Deployment(INV)` (load and validate the "
        "inventory), `Deployment.plan('lb', offline=True)` (build the runbook, plan every "
        "host) and `print_plan` to /dev/null with `time.perf_counter`; medians of the runs.",
        *(["- a baseline row is the same measurement of another source tree "
           "(`--baseline-src`), in the same session."] if len(rows) > 1 else []),
        "",
    ])


def write_offline_section(path: Path, section: str) -> None:
    """Put `section` into `path` in place of its earlier version (or at the end)."""
    write_section(path, OFFLINE_SECTION, section)
