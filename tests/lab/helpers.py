"""Helpers for lab tests: run hadeploy as an operator would, and look at hosts directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hadeploy.lab import Lab
from hadeploy.lab.standins import http_get, start_backends, vip_holders

ROOT = Path(__file__).resolve().parents[2]
STATS_PASSWORD = "stats-Secret-4711"
__all__ = ["http_get", "start_backends", "vip_holders"]  # shared with the demo


def hadeploy(*args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m hadeploy ARGS` like an operator (no terminal), capturing output."""
    full_env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD, **(env or {})}
    full_env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "hadeploy", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def events(stdout: str) -> list[dict[str, object]]:
    """The JSON events of a `--json` run."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def wait_for(check, what: str, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def pidfile_pid(lab: Lab, host: str, path: str) -> int | None:
    """The pid in a pid file on a host, or None."""
    out = lab.hosts[host].exec(["sh", "-c", f"cat {path} 2>/dev/null || true"]).stdout.split()
    return int(out[0]) if out else None


def snapshot(lab: Lab, host: str, paths: Sequence[str]) -> dict[str, str]:
    """sha256, mode, owner and mtime of each path (or 'absent') on a host."""
    result = {}
    for path in paths:
        out = lab.hosts[host].exec(
            ["sh", "-c", f"[ -e {path} ] && stat -c '%a %U %G %Y' {path} && sha256sum < {path}"
             " || echo absent"]).stdout
        result[path] = " ".join(out.split())
    return result


def installed(lab: Lab, host: str, package: str) -> bool:
    """Whether dpkg says `package` is installed on `host`."""
    out = lab.hosts[host].exec(["sh", "-c", f"dpkg-query -W -f='${{db:Status-Abbrev}}' {package}"
                                " 2>/dev/null || true"]).stdout
    return out.startswith("ii")
