"""The development tasks (`invoke demo`, `invoke lab-up`, `invoke lab-down`): the repository's
`tasks.py` adds them to the operator's collection; the `hadeploy` wheel does not ship them."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from hadeploy.console import make_console
from hadeploy.tasks import guard


@task(help={"hosts": "number of hosts", "names": "comma-separated host names",
            "state_dir": "where the lab keeps its state"})
def lab_up(c: Context, hosts: int = 6, names: str = "", state_dir: str = "") -> None:
    """Bring up simulated hosts in network namespaces (198.18.0.0/24) for demos and tests."""
    from lab.__main__ import main as lab_main

    argv = ["up", "--hosts", str(hosts)]
    argv += ["--names", names] if names else []
    argv += ["--state-dir", state_dir] if state_dir else []
    raise Exit(code=lab_main(argv))


@task(help={"state_dir": "where the lab keeps its state"})
def lab_down(c: Context, state_dir: str = "") -> None:
    """Remove the simulated hosts (by PID, nothing else is touched)."""
    from lab.__main__ import main as lab_main

    raise Exit(code=lab_main(["down"] + (["--state-dir", state_dir] if state_dir else [])))


@task(help={"keep": "leave the lab up afterwards and print how to ssh in",
            "state_dir": "where the demo's lab keeps its state"})
def demo(c: Context, keep: bool = False, state_dir: str = "/var/tmp/hadeploy-demo") -> None:
    """The lab demo: both phases for real on simulated hosts, verify, VIP failover."""
    from lab.demo import run_demo

    guard(lambda: run_demo(make_console(), Path(state_dir), keep))


DEV_TASKS = (demo, lab_up, lab_down)
