"""Child processes as the benchmark runs them: timed (wall time, exit, output, peak RSS),
stopping the benchmark when one fails, and progress lines on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timed:
    """One timed child process."""

    seconds: float
    exit: int
    stdout: str
    stderr: str
    max_rss_kb: int
    started: float = 0.0  # Unix time just before the child was started
    cpu_seconds: float = 0.0  # the child's user + system CPU time


def timed(argv: Sequence[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Timed:
    """Run argv, returning its wall time, exit code, output and peak memory (ru_maxrss)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_at = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd)
        # wait4, not proc.wait: only it reports the child's own peak memory.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(seconds, proc.returncode, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"), usage.ru_maxrss, started_at,
                     usage.ru_utime + usage.ru_stime)


def must(result: Timed, what: str) -> Timed:
    """`result`, or stop the benchmark showing the failing command's output."""
    if result.exit != 0:
        raise SystemExit(f"{what} failed (exit {result.exit}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return result
