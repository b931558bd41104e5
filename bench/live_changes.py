"""`python bench/run.py --live-changes`, the bench mode of issue 13: run the lab test that
asserts the requests failed through the VIP while a live control plane changes
(tests/lab/test_live_changes.py: (1) haproxy.cfg, (2) keepalived.conf, (3) a key that
restarts Glance on the original, (3b) an operator's restart of Keystone, (4) a controller
added bare, (5) removed again, (6) the controllers phase rolled back), so that the
benchmark and the test never measure two different things; then write the figures it
hands over (HADEPLOY_LIVE_FIGURES) with the machine to bench/LIVE-CHANGES.md. Needs root;
HADEPLOY_LAB_SLOT=N for another lab slot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.paths import BENCH, ROOT

TEST = "tests/lab/test_live_changes.py"
FIGURES_VARIABLE = "HADEPLOY_LIVE_FIGURES"


BENCH_SOURCE = "one run of `python bench/run.py --live-changes`"


def render(figures: Mapping[str, Mapping[str, Any]], measured: str, minutes: float,
           source: str = BENCH_SOURCE) -> str:
    """The markdown page of one run's figures; `source`: the run they come from (this
    bench mode, or a test session that set HADEPLOY_LIVE_FIGURES)."""
    m = machine()
    lines = [
        "# Benchmark: requests failed while a live control plane changes",
        "",
        f"Measured {measured} in {source} ({minutes:.1f} min), from `{TEST}`: these are the "
        "figures that test asserts. Three clients open a new "
        "TCP connection per request through the VIP (Keystone `GET /v3`, Glance "
        "`GET /healthcheck`), one client keeps its connections alive. "
        "`python bench/run.py --live-changes` measures them again.",
        "",
        f"**Machine:** {m.cpus} CPUs ({m.cpu}), {m.memory} memory, kernel {m.kernel}, {m.os}. "
        "The lab hosts are network namespaces on this machine.",
        "",
        "| change | new connections: failed of sent | kept-alive client: failed of sent |",
        "|---|---:|---:|",
    ]
    for name, row in figures.items():
        sent, failed = row["new connections"]
        kept_sent, kept_failed = row["keep-alive"]
        lines.append(f"| {name} | {failed:,} of {sent:,} | {kept_failed:,} of {kept_sent:,} |")
    lines += ["", "Every change must fail 0 requests on new connections (the test asserts "
              "it); the kept-alive client's figure is reported.", ""]
    return "\n".join(lines)


def main() -> int:
    """Run the test with a figures file, then write bench/LIVE-CHANGES.md from it."""
    if os.geteuid() != 0:
        print("bench/run.py --live-changes needs root (it builds the lab)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        figures = Path(work) / "figures.json"
        started = time.monotonic()
        measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
             TEST], cwd=ROOT, env={**os.environ, FIGURES_VARIABLE: str(figures)},
            stdin=subprocess.DEVNULL, check=False)
        minutes = (time.monotonic() - started) / 60
        if done.returncode != 0 or not figures.exists():
            print(f"{TEST} failed (exit {done.returncode}); nothing written", file=sys.stderr)
            return 1
        table = json.loads(figures.read_text())
    out = BENCH / "LIVE-CHANGES.md"
    out.write_text(render(table, measured, minutes))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0
