"""The lab benchmark of one host count: a lab of N load balancers and the backends, then
rounds of hadeploy cold and no-op, ansible cold and no-op, the SSH floor and apt alone, on
the same hosts, the tools taking turns to go first."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bench.ansible_runner import run_ansible
from bench.floors import run_apt_alone, run_floor
from bench.hadeploy_runner import compile_bytecode, run_hadeploy
from bench.lab_setup import BACKENDS, Setup, reset_hosts, write_setup
from bench.paths import ROOT
from bench.process import log
from bench.samples import Samples
from lab import LAB_LOCK, Lab, lab_lock

# The samples the progress line shows after each round.
SHOWN = ("hadeploy_cold", "hadeploy_noop", "ansible_cold", "ansible_noop", "floor", "apt")


def measure(count: int, runs: int, playbook: Path | None, state_dir: Path,
            src: Path = ROOT, progress: Callable[[Samples], None] | None = None) -> Samples:
    """Bring up a lab for `count` LB hosts, measure `runs` rounds, take the lab down.

    The machine's one lab: this waits for the lab lock while a test session holds it."""
    with lab_lock(LAB_LOCK, waiting=lambda: log(f"{count} LB hosts: waiting for the lab lock "
                                                f"{LAB_LOCK}")):
        return _measure_in_lab(count, runs, playbook, state_dir, src, progress)


def _measure_in_lab(count: int, runs: int, playbook: Path | None, state_dir: Path,
                    src: Path, progress: Callable[[Samples], None] | None) -> Samples:
    lbs = tuple(f"lb{i}" for i in range(1, count + 1))
    samples = Samples(count, runs)
    lab: Lab | None = None
    setup: Setup | None = None
    try:
        log(f"{count} LB hosts: lab up ({count} + {len(BACKENDS)} hosts)")
        lab = Lab.up(lbs + BACKENDS, state_dir / "lab")
        job = setup = write_setup(lab, lbs, state_dir / f"work-{count}", src)
        compile_bytecode(src)
        for round_no in range(1, runs + 1):
            tools: list[Callable[[], None]] = [
                lambda: _round_hadeploy(job, samples),
                lambda: _round_ansible(job, samples, playbook),
            ]
            if round_no % 2 == 0:  # alternate which tool goes first
                tools.reverse()
            for tool in tools:
                tool()
            samples.add("floor", run_floor(job))
            samples.add("apt", run_apt_alone(job))
            samples.add("load", os.getloadavg()[0])
            if progress is not None:
                progress(samples)
            log(f"{count} LB hosts: round {round_no}/{runs}: " + ", ".join(
                f"{k} {v[-1]:.2f}" for k, v in samples.data.items() if k in SHOWN))
    finally:
        if lab is not None:
            log(f"{count} LB hosts: lab down")
            lab.down()
        if setup is not None:
            shutil.rmtree(setup.cp_root, ignore_errors=True)
            shutil.rmtree(setup.work, ignore_errors=True)
    return samples


def _round_hadeploy(setup: Setup, samples: Samples) -> None:
    reset_hosts(setup)
    cold = run_hadeploy(setup, "cold")
    noop = run_hadeploy(setup, "no-op")
    if noop.changed:
        raise SystemExit(f"hadeploy's re-run changed {noop.changed} host steps: not a no-op")
    for kind, result in (("cold", cold), ("noop", noop)):
        samples.add(f"hadeploy_{kind}", result.seconds)
        samples.add(f"hadeploy_{kind}_rss", result.rss_mb)
        samples.add(f"hadeploy_{kind}_rt", result.round_trips)
        samples.add(f"hadeploy_{kind}_rt_max", result.round_trips_max)
        samples.add(f"hadeploy_{kind}_conn", result.connections_max)
        samples.add(f"hadeploy_{kind}_first_conn", result.first_connection)
        samples.add(f"hadeploy_{kind}_cpu", result.cpu_seconds)


def _round_ansible(setup: Setup, samples: Samples, playbook: Path | None) -> None:
    if playbook is None:
        return
    reset_hosts(setup)
    cold = run_ansible(setup, playbook, "cold")
    noop = run_ansible(setup, playbook, "no-op")
    samples.add("ansible_cold", cold.seconds)
    samples.add("ansible_noop", noop.seconds)
    samples.add("ansible_noop_changed", noop.changed)
