"""The workstation is lost: the run's state lives on the hosts too (hadeploy/engine/hoststate).

Other workstations are this machine under another host name (a UTS namespace of their own,
`unshare --uts`), each with its own copy of the same inventory and no `.hadeploy/`:

- while a run goes on, a second workstation's run is refused before it changes anything,
  naming who holds the hosts' lock and since when;
- a run whose workstation is killed outright and whose `.hadeploy/` is deleted is resumed by
  another workstation from the hosts' own records: refused while the lock's heartbeat is
  fresh, refused as stale without `--break-lock`, resumed to a clean run's end state with it;
- a third workstation then rolls the phase back from the hosts' records alone, to the bare
  hosts' state, and a fourth finds nothing left to undo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import write_lab_inventory
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    CTLS,
    END_STATE,
    FULL_STATE,
    LBS,
    ROOT,
    STATS_PASSWORD,
    backup_audit,
    end_state,
    fresh,
    fresh_inventory,
    killable,
    start_backends,
    wait_for,
)

pytestmark = pytest.mark.lab

LOCK = "/var/lib/hadeploy/lock"
HEARTBEATS = "grep -l 'hadeploy-heartbea[t]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
RECORDS = "stat -c '%n %a %U' /var/lib/hadeploy/runs /var/lib/hadeploy/runs/*.json"


def elsewhere(workstation: str, *args: str) -> subprocess.CompletedProcess[str]:
    """hadeploy run by another workstation (this machine under the host name
    `workstation`)."""
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}
    env.pop("NO_COLOR", None)
    return subprocess.run(["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                           workstation, sys.executable, "-m", "hadeploy", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def copy_of(inventory: Path, directory: Path) -> Path:
    """The same inventory on another workstation (no state directory there)."""
    directory.mkdir()
    other = directory / "hosts.toml"
    other.write_text(inventory.read_text())
    other.chmod(0o600)
    return other


def locks(lab: Lab) -> dict[str, str]:
    return {h: lab.hosts[h].exec(f"cat {LOCK} 2>/dev/null; true").stdout.strip() for h in LBS}


@dataclass
class Clean:
    """A clean cold run (workstation ws1) and what a second workstation got meanwhile."""

    bare: dict[str, list[str]]
    end: dict[str, list[str]]
    commands: int
    pid: int
    user: str
    second: subprocess.CompletedProcess[str]
    second_dir: Path


@pytest.fixture(scope="module")
def clean(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """Bare hosts' state; a clean cold run's end state and how many commands it sent; and
    a second workstation's run started while the first held the hosts."""
    fresh(lab, LBS + CTLS)
    start_backends(lab, CTLS, STAND_IN_PORTS)
    bare = end_state(lab, LBS, END_STATE)
    directory = tmp_path_factory.mktemp("ws1")
    inventory = write_lab_inventory(lab, directory / "hosts.toml")
    record = directory / "commands.jsonl"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.lab.killable", "--record", str(record), "--",
         "deploy-lb", "--hosts", str(inventory), "--yes"], cwd=ROOT, text=True,
        env={**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: all(locks(lab).values()), "the first run to lock every balancer",
                 seconds=60)
        user = json.loads(locks(lab)["lb1"])["user"]
        other = copy_of(inventory, tmp_path_factory.mktemp("ws2") / "ws2")
        second = elsewhere("ws2", "deploy-lb", "--hosts", str(other), "--yes")
    finally:
        output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output
    return Clean(bare, end_state(lab, LBS, FULL_STATE), len(record.read_text().splitlines()),
                 first.pid, user, second, other.parent)


def test_a_second_workstation_is_refused_while_the_first_runs(lab: Lab, clean: Clean) -> None:
    out = clean.second.stdout + clean.second.stderr
    assert clean.second.returncode == 2, out
    for host in LBS:
        assert (f"{host}: {LOCK} is held by {clean.user}@{socket.gethostname()} "
                f"(pid {clean.pid}, deploy lb) since ") in out, out
    assert "nothing was changed" in out and "--break-lock" in out
    assert not list(clean.second_dir.glob(".hadeploy/runs/*"))
    # the first went on undisturbed, and gave its locks back
    assert locks(lab) == dict.fromkeys(LBS, "")


def test_a_lost_workstations_run_is_resumed_then_rolled_back_from_the_hosts(
        lab: Lab, tmp_path: Path, clean: Clean) -> None:
    bare, clean_state, commands = clean.bare, clean.end, clean.commands
    (tmp_path / "ws1").mkdir()
    inventory = fresh_inventory(lab, tmp_path / "ws1")
    killed = killable("--kill", str(commands // 2), "--at", "sent", "--", "deploy-lb",
                      "--hosts", str(inventory), "--yes")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    dead_run = next((inventory.parent / ".hadeploy" / "runs").glob("*.json")).stem
    subprocess.run(["rm", "-rf", str(inventory.parent / ".hadeploy")], check=True)
    # the heartbeats end with the dead workstation's connections
    wait_for(lambda: all(lab.hosts[h].exec(HEARTBEATS).stdout.strip() == "0" for h in LBS),
             "the dead run's heartbeats to end", seconds=60)
    ws2 = copy_of(inventory, tmp_path / "ws2")
    fresh_lock = elsewhere("ws2", "deploy-lb", "--hosts", str(ws2), "--resume", "--yes")
    assert fresh_lock.returncode == 2, fresh_lock.stdout + fresh_lock.stderr
    assert "last heartbeat" in fresh_lock.stdout + fresh_lock.stderr
    for host in LBS:  # a minute and more without a heartbeat
        lab.hosts[host].exec(f"touch -d @$(( $(date +%s) - 600 )) {LOCK}")
    stale = elsewhere("ws2", "deploy-lb", "--hosts", str(ws2), "--resume", "--yes")
    out = stale.stdout + stale.stderr
    assert stale.returncode == 2 and "stale" in out and "--break-lock" in out, out
    resumed = elsewhere("ws2", "deploy-lb", "--hosts", str(ws2), "--resume", "--break-lock",
                        "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [p.stem for p in (ws2.parent / ".hadeploy" / "runs").glob("*.json")] == [dead_run]
    assert end_state(lab, LBS, FULL_STATE) == clean_state
    assert locks(lab) == dict.fromkeys(LBS, "")
    for host in LBS:  # each host keeps its own record, owner-only
        kept = lab.hosts[host].exec(RECORDS).stdout
        assert "/var/lib/hadeploy/runs 700 root" in kept, kept
        assert f"/var/lib/hadeploy/runs/{dead_run}.json 600 root" in kept, kept
    assert backup_audit(lab, ws2, LBS) == {h: [] for h in LBS}
    # a third workstation undoes the phase from the hosts' records alone
    ws3 = copy_of(inventory, tmp_path / "ws3")
    undone = elsewhere("ws3", "rollback", "--phase", "lb", "--hosts", str(ws3), "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "Rolled back" in undone.stdout
    assert end_state(lab, LBS, END_STATE) == bare
    # and the hosts' records say so: a fourth workstation finds nothing left to undo
    ws4 = copy_of(inventory, tmp_path / "ws4")
    again = elsewhere("ws4", "rollback", "--phase", "lb", "--hosts", str(ws4), "--yes")
    out = again.stdout + again.stderr
    assert again.returncode == 2 and "no lb run to roll back" in out, out
    assert end_state(lab, LBS, END_STATE) == bare
