"""Crash anywhere, resume anywhere, phase 2: `deploy-controllers` on the Keystone + Glance
original killed outright (SIGKILL: no handler, no cleanup) at a command boundary, then one
`--resume`, must end exactly as a clean run does; `rollback --phase controllers` must then
give the original back as it was before any deploy.

The module's fixture provisions the original on ctl1, runs a clean deploy-lb once, then a
clean deploy-controllers through tests/lab/killable.py, which records the N remote commands
it sends in order (each command's step comes from the run's `--json` events), and keeps its
end state; a rollback brings the original back. A kill point (k, sent) kills hadeploy right
after command k went out, before its result is read; (k, read) right after its exit status
came back. Every point starts from bare new controllers (ctl2 and ctl3 reset; the original
as the last rollback left it), is resumed once (or run again, if it died before its journal
existed), and compared with the clean run: the trees /etc/keystone and /etc/glance on each
controller (owner, mode, link, sha256), the admin rc file, /etc/default files and
policy-rc.d, every package's status and version, the daemons and their boot links, `dpkg
--audit`, no hadeploy temp file, the run's backups (the run id taken out), every balancer's
view of every server (no server left drained) and the VIP, and the Keystone catalog's URLs.
Then it is rolled back, and the original must be as before the first deploy (a finding too
if not: that rollback is the next point's start).

A point takes minutes (a resumed deploy plus a rollback of real daemons), and its setup (the
original, a clean deploy, a rollback) a few more, so `.ci/run` runs a fixed, seeded sample of
one point of the spread below (the default, or `HADEPLOY_CTL_KILL_POINTS=sample`). The
spread, a deterministic choice of 16 commands that covers every step installing packages,
copying a tree, starting services or moving the endpoints, and those editing the original's
files (both kill points of each, 32 in all):

    HADEPLOY_CTL_KILL_POINTS=spread python -m pytest -s tests/lab/test_controller_kill_points.py

`HADEPLOY_CTL_KILL_POINTS=spread:A-B`: the spread's points of commands A to B;
`HADEPLOY_CTL_KILL_POINTS=all`: every kill point; `=A-B`: those of commands A to B. Each run
prints one line per point as it ends, then "deploy-controllers: k of M kill points survived".
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.openstack import OriginalController, provision_original
from tests.lab.helpers import (
    AUDIT,
    CTLS,
    IN_TMP,
    LBS,
    MANIFEST,
    RC,
    TEMP_FILES,
    KillPoint,
    asked_kill_points,
    both_kill_points,
    ended_before,
    events,
    fresh,
    hadeploy,
    journal,
    kill_tally,
    killable,
    openstack_cli,
    seeded_sample,
    vip_holders,
)

KILL_POINTS_ENV = "HADEPLOY_CTL_KILL_POINTS"

pytestmark = [
    pytest.mark.lab, pytest.mark.openstack]

SAMPLE = 1  # points of a default run (or =sample), drawn with a fixed seed from the spread
SEED = 15
ORIGINAL = "ctl1"
NEW = ("ctl2", "ctl3")
DAEMONS = ("keystone", "glance-api")
FILES = (RC, "/etc/default/keystone", "/etc/default/glance-api", "/usr/sbin/policy-rc.d")
BACKUP_ROOT = "/var/lib/hadeploy/backup"
DEPLOY_TIMEOUT = 1200.0

# One tagged line per fact on a controller, so that comparisons can pick sections.
CONTROLLER_STATE = "\n".join([
    *(f"( {MANIFEST.format(path=t)} ) | sed 's|^|tree {t} |'" for t in ("/etc/keystone",
                                                                         "/etc/glance")),
    *(f"if [ -e {f} ]; then echo \"file {f} $(stat -c '%a %U %G' {f}) "
      f"$(sha256sum < {f} | cut -d' ' -f1)\"; else echo 'file {f} absent'; fi" for f in FILES),
    "dpkg-query -W -f='pkg ${Package} ${db:Status-Abbrev} ${Version}\\n'",
    *(f"echo \"daemon {d} $(service {d} status >/dev/null 2>&1 && echo running || "
      "echo stopped)\"" for d in DAEMONS),
    "echo \"boot $(ls /etc/rc2.d | grep -E 'keystone|glance' | tr '\\n' ' ')\"",
    AUDIT, TEMP_FILES, IN_TMP,
    f"if [ -d {BACKUP_ROOT} ]; then ( cd {BACKUP_ROOT} && find . -type f -exec sha256sum "
    "{} + ) | sed 's|^|backup |' | sort; fi",
])
# Every balancer's view of every server: backend, server, operational and admin state (a
# server left in `drain` has admin state 8 or 32).
SERVERS = ("echo 'show servers state' | socat -t 5 - UNIX-CONNECT:/var/lib/haproxy/stats | "
           "awk 'NF > 7 && $1 !~ /^#/ {print \"server\", $2, $4, $6, $7}' | sort")
BACKUP = re.compile(r"backup (\S+)  \./([^/]+)/(.*)")

State = dict[str, list[str]]


def plane_state(lab: Lab, runs: Sequence[str]) -> State:
    """Everything the controllers phase leaves (see the module docstring), per host, plus the
    catalog's URLs and the VIP's holders; backups only of `runs`, with the run id taken out."""
    state: State = {}
    for host in CTLS:
        lines = lab.hosts[host].exec(["sh", "-c", CONTROLLER_STATE]).stdout.splitlines()
        state[host] = sorted(_without_run(line) for line in lines
                             if (m := BACKUP.fullmatch(line)) is None or m.group(2) in runs)
    for host in LBS:
        state[host] = lab.hosts[host].exec(["sh", "-c", SERVERS]).stdout.splitlines()
    state["endpoints"] = sorted(openstack_cli(
        lab, ORIGINAL, "endpoint list -f value -c 'Service Type' -c Interface -c URL",
    ).splitlines())
    state["vip"] = vip_holders(lab, LBS, LAB_VIP)
    return state


def _without_run(line: str) -> str:
    """A backup's line with its run id taken out (runs compare); any other line as it is."""
    match = BACKUP.fullmatch(line)
    return f"backup {match.group(1)}  RUN/{match.group(3)}" if match else line


def before_deploy(state: State) -> State:
    """What a rollback must give back: the original's state but its backups (they stay),
    and on the new controllers all but the backups, with the names of the packages present
    (dpkg may keep a record of a package purged; one the install upgraded as a dependency,
    systemd's libraries, stays upgraded): every package the deploy installed, a dead
    attempt's too, must be gone again; the catalog."""
    kept: State = {"endpoints": state["endpoints"]}
    for host in CTLS:
        kept[host] = [_present_name(line) if host != ORIGINAL else line
                      for line in state[host] if not line.startswith("backup ") and (
                          host == ORIGINAL or not line.startswith("pkg ")
                          or line.split()[2][1:2] not in ("n", "c"))]
    return kept


def _present_name(line: str) -> str:
    """A package's line without its status and version (`pkg NAME`); other lines as are."""
    return " ".join(line.split()[:2]) if line.startswith("pkg ") else line


def deploy_runs(inventory: Path) -> list[str]:
    """The ids of the controllers deploy runs journaled beside `inventory`."""
    return sorted(p.stem for p in (inventory.parent / ".hadeploy" / "runs").glob(
        "*-controllers-deploy.json"))


def command_steps(commands: Sequence[dict[str, object]], stdout: str) -> list[str]:
    """The step that sent each recorded command: the last one started before it was sent,
    from the run's `--json` events ("start" before the first step)."""
    started = [(float(str(e["time"])), str(e["step"])) for e in events(stdout)
               if e["event"] == "step-started"]
    steps = []
    for command in commands:
        sent = float(str(command["time"]))
        # event times have 3 decimals: a step started within the last half millisecond counts
        steps.append(next((step for at, step in reversed(started) if at <= sent + 0.0005),
                          "start"))
    return steps


# Steps whose commands the spread kills at: twice in each that installs packages, copies a
# tree, starts or restarts services, or moves the endpoints; once in each that edits files in
# place (the original's config keys, the new controllers' host-specific keys, the rc file).
TWICE = re.compile(r"ctl\.packages|ctl\.\w+\.(copy|services)|ctl\.endpoints")
ONCE = re.compile(r"ctl\.\w+\.(vip-keys|host-keys)|ctl\.rc-files")


def spread(steps: Sequence[str]) -> list[int]:
    """Command numbers to kill at, from the clean run's commands alone (the step of each):
    at a third and two thirds of each TWICE step's commands, in the middle of each ONCE
    step's (2 x 6 + 4 = 16 commands, 32 kill points, on Keystone + Glance)."""
    chosen: set[int] = set()
    for step in dict.fromkeys(steps):
        numbers = [n for n, s in enumerate(steps, 1) if s == step]
        if TWICE.fullmatch(step):
            chosen |= {numbers[len(numbers) // 3], numbers[2 * len(numbers) // 3]}
        elif ONCE.fullmatch(step):
            chosen.add(numbers[len(numbers) // 2])
    return sorted(chosen)


@dataclass(frozen=True)
class Clean:
    """The clean run: its end state, commands (with their steps), the state before it, and
    what the kill points need to start from."""

    state: State
    commands: list[dict[str, object]]
    steps: list[str]
    before: State
    original: OriginalController
    rc_files: tuple[tuple[str, str], ...]


def inventory_in(lab: Lab, directory: Path, clean: Clean) -> Path:
    """The lab's inventory with the original's rc file, in a new state directory."""
    directory.mkdir()
    return write_lab_inventory(lab, directory / "hosts.toml", rc_files=list(clean.rc_files))


def rolled_back(lab: Lab, inventory: Path, before: State) -> str:
    """Roll the controllers phase back; "" if the original is as before the first deploy,
    else what differs."""
    back = hadeploy("rollback", "--phase", "controllers", "--hosts", str(inventory), "--yes",
                    timeout=DEPLOY_TIMEOUT)
    if back.returncode != 0:
        return f"rollback exited {back.returncode}: {(back.stdout + back.stderr)[-1500:]}"
    state = before_deploy(plane_state(lab, ()))
    differ = {k: sorted(set(state[k]) ^ set(before[k])) for k in before if state[k] != before[k]}
    return f"rollback left: {differ}" if differ else ""


@pytest.fixture(scope="module")
def clean(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """Provision the original, deploy-lb, a recorded clean deploy-controllers and its end
    state, then a rollback that must give the state before it back."""
    fresh(lab, LBS + CTLS)
    directory = tmp_path_factory.mktemp("clean")
    original = provision_original(lab, ORIGINAL, directory)
    rc_files = ((ORIGINAL, original.admin_rc),)
    inventory = write_lab_inventory(lab, directory / "hosts.toml", rc_files=list(rc_files))
    lb = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert lb.returncode == 0, lb.stdout + lb.stderr
    before = before_deploy(plane_state(lab, ()))
    record = directory / "commands.jsonl"
    run = killable("--record", str(record), "--", "deploy-controllers", "--hosts",
                   str(inventory), "--yes", "--json", timeout=DEPLOY_TIMEOUT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    state = plane_state(lab, deploy_runs(inventory))
    for host in CTLS:
        assert "hadeploy temp files: " in state[host] and "dpkg audit: " in state[host], \
            state[host]
    commands = [json.loads(line) for line in record.read_text().splitlines()]
    steps = command_steps(commands, run.stdout)
    print(f"\nclean deploy-controllers: {len(commands)} commands; by step: "
          + ", ".join(f"{s} {min(n)}-{max(n)}" for s in dict.fromkeys(steps)
                      if (n := [i for i, x in enumerate(steps, 1) if x == s])), flush=True)
    back = rolled_back(lab, inventory, before)
    assert not back, back
    return Clean(state, commands, steps, before, original, rc_files)


def kill_points(clean: Clean) -> list[KillPoint]:
    """Every point when asked for all, those of commands A to B when asked for `A-B`, the
    spread when asked for it (`spread:A-B`: its points of commands A to B), else
    (unset, or `sample`) the seeded sample of the spread."""
    asked = os.environ.get(KILL_POINTS_ENV, "")
    chosen = both_kill_points(spread(clean.steps))
    if asked.startswith("spread:"):
        first, last = (int(n) for n in asked.removeprefix("spread:").split("-", 1))
        return [(k, when) for k, when in chosen if first <= k <= last]
    if asked == "spread":
        return chosen
    points = asked_kill_points(asked, len(clean.commands))
    return points if points is not None else seeded_sample(chosen, SAMPLE, SEED)


def survive(lab: Lab, directory: Path, k: int, when: str, clean: Clean) -> tuple[str, bool]:
    """Kill deploy-controllers at (k, when) on bare new controllers, resume once, compare,
    roll back: what went wrong ("" if all went as it should), and whether the point was
    reached (a run that ended before it is compared as it ended)."""
    fresh(lab, NEW)
    inventory = inventory_in(lab, directory, clean)
    killed = killable("--kill", str(k), "--at", when, "--", "deploy-controllers", "--hosts",
                      str(inventory), "--yes", timeout=DEPLOY_TIMEOUT)
    reached = killed.returncode == -9
    if not reached and not ended_before(killed, k, when):
        return f"not killed (exit {killed.returncode}): {killed.stdout[-400:]}", True
    again = killed  # a run that ended before the point is compared as it ended
    if reached:
        # Killed before the run's journal existed: nothing to resume, the operator runs again.
        resume = ("--resume",) if journal(inventory) else ()
        again = hadeploy("deploy-controllers", "--hosts", str(inventory), *resume, "--yes",
                         timeout=DEPLOY_TIMEOUT)
    problem = ""
    if again.returncode != 0:
        problem = f"resume exited {again.returncode}: {(again.stdout + again.stderr)[-1500:]}"
    else:
        state = plane_state(lab, deploy_runs(inventory))
        differ = {h: sorted(set(state[h]) ^ set(clean.state[h])) for h in clean.state
                  if state[h] != clean.state[h]}
        problem = f"end state differs: {differ}" if differ else ""
    back = rolled_back(lab, inventory, clean.before)
    return "; ".join(p for p in (problem, back) if p), reached


def test_every_kill_point_resumes_to_the_clean_end_state(
        lab: Lab, tmp_path: Path, clean: Clean) -> None:
    points = kill_points(clean)
    failed = {}
    past: list[KillPoint] = []
    for k, when in points:
        started = time.monotonic()
        problem, reached = survive(lab, tmp_path / f"k{k}-{when}", k, when, clean)
        command = clean.commands[k - 1]
        name = f"{k} {when} ({clean.steps[k - 1]}, {command['host']}: " \
               f"{str(command['command'])[:60]})"
        outcome = (f"FAILED: {problem}" if problem else "survived" if reached
                   else "past the run's end, which was the clean one")
        print(f"\nkill point {name}: {outcome} ({time.monotonic() - started:.0f} s)", flush=True)
        if problem:
            failed[name] = problem
        elif not reached:
            past.append((k, when))
    print(f"\ndeploy-controllers: {kill_tally(len(points), len(failed), past)} "
          f"({len(clean.commands)} commands, {2 * len(clean.commands)} kill points in all)")
    assert not failed, json.dumps(failed, indent=1)
