"""Crash anywhere, resume anywhere: a cold `deploy-lb` on three balancers killed outright
(SIGKILL: no handler, no cleanup) at a command boundary, then one `--resume`, must end exactly
as a clean run does.

A recorded clean run gives the number N of remote commands a cold deploy-lb sends. Kill point
(k, sent) kills hadeploy right after command k went out, before its result is read; (k, read)
right after its exit status came back, before hadeploy acted on it. Each kill point starts from
fresh hosts. After the resume the hosts must hold what the clean run left (files with mode,
owner and checksum, packages, sysctl, daemons, boot links, backups, the VIP), no temp file,
and a clean `dpkg --audit`.

All 2N kill points take long (~20 s each), so `.ci/run` runs a fixed, seeded sample of them;
run every one with:

    HADEPLOY_KILL_POINTS=all python -m pytest tests/lab/test_kill_points.py -q -s

(`HADEPLOY_KILL_POINTS=10-15`: those of commands 10 to 15 only.)

Each run prints "k of N kill points survived" and the ones that did not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import write_lab_inventory
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    AUDIT,
    CTLS,
    FULL_STATE,
    LBS,
    NO_TEMP,
    KillPoint,
    asked_kill_points,
    both_kill_points,
    end_state,
    ended_before,
    fresh,
    fresh_inventory,
    hadeploy,
    journal,
    kill_tally,
    killable,
    seeded_sample,
    start_backends,
)

pytestmark = pytest.mark.lab

KILL_POINTS_ENV = "HADEPLOY_KILL_POINTS"
SAMPLE = 6  # kill points in a default run, drawn with a fixed seed
SEED = 15


@pytest.fixture(scope="module")
def clean(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]],
                                                                         list[dict[str, str]]]:
    """A clean run's end state, and its remote commands in the order they were sent."""
    fresh(lab, LBS + CTLS)
    start_backends(lab, CTLS, STAND_IN_PORTS)
    directory = tmp_path_factory.mktemp("clean")
    inventory = write_lab_inventory(lab, directory / "hosts.toml")
    record = directory / "commands.jsonl"
    run = killable("--record", str(record), "--", "deploy-lb", "--hosts", str(inventory),
                   "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    state = end_state(lab, LBS, FULL_STATE + "\n" + AUDIT)
    for host in LBS:
        assert NO_TEMP in state[host] and "dpkg audit: " in state[host], state[host]
    return state, [json.loads(line) for line in record.read_text().splitlines()]


def kill_points(total: int) -> list[KillPoint]:
    """Every (k, when) when asked for all, those of commands A to B when asked for `A-B`,
    else the seeded sample."""
    asked = asked_kill_points(os.environ.get(KILL_POINTS_ENV, ""), total)
    return asked if asked is not None else seeded_sample(
        both_kill_points(range(1, total + 1)), SAMPLE, SEED)


def survive(lab: Lab, directory: Path, k: int, when: str,
            clean_state: dict[str, list[str]]) -> tuple[str, bool]:
    """Kill a cold deploy at (k, when), resume once: what went wrong ("" if the end state
    is the clean one), and whether the point was reached (a run that ended before it is
    compared as it ended)."""
    directory.mkdir()
    inventory = fresh_inventory(lab, directory)
    killed = killable("--kill", str(k), "--at", when, "--", "deploy-lb", "--hosts",
                      str(inventory), "--yes")
    reached = killed.returncode == -9
    if not reached and not ended_before(killed, k, when):
        return f"not killed (exit {killed.returncode}): {killed.stdout[-400:]}", True
    if reached:
        # Killed before the run's journal existed: nothing to resume, the operator runs again.
        resume = ("--resume",) if journal(inventory) else ()
        again = hadeploy("deploy-lb", "--hosts", str(inventory), *resume, "--yes")
        if again.returncode != 0:
            return (f"resume exited {again.returncode}: "
                    f"{(again.stdout + again.stderr)[-1500:]}", reached)
    state = end_state(lab, LBS, FULL_STATE + "\n" + AUDIT)
    differ = {h: sorted(set(state[h]) ^ set(clean_state[h])) for h in LBS
              if state[h] != clean_state[h]}
    return (f"end state differs: {differ}" if differ else ""), reached


def test_every_kill_point_resumes_to_the_clean_end_state(
        lab: Lab, tmp_path: Path,
        clean: tuple[dict[str, list[str]], list[dict[str, str]]]) -> None:
    clean_state, commands = clean
    points = kill_points(len(commands))
    failed = {}
    past: list[KillPoint] = []
    for k, when in points:
        problem, reached = survive(lab, tmp_path / f"k{k}-{when}", k, when, clean_state)
        if problem:
            command = commands[k - 1]
            failed[f"{k} {when} ({command['host']}: {command['command'][:60]})"] = problem
        elif not reached:
            past.append((k, when))
    print(f"\ndeploy-lb: {kill_tally(len(points), len(failed), past)} ({len(commands)} "
          f"commands, {2 * len(commands)} kill points in all)")
    assert not failed, json.dumps(failed, indent=1)
