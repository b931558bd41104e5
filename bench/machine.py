"""What the numbers were measured on: the machine, and the versions of every tool measured."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hadeploy import __version__ as HADEPLOY_VERSION


@dataclass(frozen=True)
class Machine:
    """The workstation the benchmark ran on (the lab hosts share it)."""

    cpus: str
    cpu: str
    memory: str
    kernel: str
    os: str


def machine() -> Machine:
    """This machine, from /proc and the platform module."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    debian = Path("/etc/debian_version")
    return Machine(
        cpus=str(os.cpu_count()),
        cpu=cpu,
        memory=f"{mem_kb / 1024 / 1024:.1f} GiB",
        kernel=platform.release(),
        os=f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
    )


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              timeout=60)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def versions(playbook: Path | None) -> dict[str, str]:
    """Versions of everything measured, by what it is."""
    # Imported here, not at the top: a child's peak RSS (ru_maxrss) counts the pages it shares
    # with this process when forked, so the benchmark's own process stays as small as it was.
    import fabric
    import paramiko

    found = {
        "hadeploy": HADEPLOY_VERSION,
        "Python (workstation)": platform.python_version(),
        "paramiko": paramiko.__version__,
        "fabric": str(fabric.__version__),
        "OpenSSH client": _first_line(["ssh", "-V"]),
        "haproxy / keepalived (hosts)": " / ".join(
            _first_line(["dpkg-query", "-W", "-f", "${Version}", p])
            for p in ("haproxy", "keepalived")),
    }
    if playbook is not None:
        found["ansible-core"] = _first_line([str(playbook), "--version"])
    return found
