"""deploy-lb interrupted: a host's sshd dies mid-run, the operator presses Ctrl-C, a second
run meets the lock, a dead run's apt-get is still installing. After each, the hosts must end
exactly as after a clean run. (Hosts that fail under a run, and hadeploy itself killed, are in
test_lb_failures.py.)"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hadeploy.facts.system import DPKG_LOCKS, PM_LOCK_HOLDERS
from hadeploy.journal import RunStore, state_dir_for
from lab import Lab
from lab.inventory import write_lab_inventory
from tests.lab.helpers import (
    FILES,
    LBS,
    clean_deploy,
    end_state,
    fresh_inventory,
    hadeploy,
    host_states,
    installed,
    journal,
    one_holder,
    snapshot,
    start_deploy,
    wait_for,
    wait_journal,
)

pytestmark = pytest.mark.lab

# Kill every sshd inside the host, by PID (this host's PID namespace only): the listener and
# the session processes, so hadeploy's open connection drops as if the host died.
KILL_SSHD = ("for d in /proc/[0-9]*; do "
             "[ \"$(cat $d/comm 2>/dev/null)\" = sshd ] && kill -9 \"${d#/proc/}\" 2>/dev/null; "
             "done; rm -f /run/sshd.pid; true")


@pytest.fixture(scope="module")
def clean_state(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The end state of a clean, uninterrupted deploy on fresh hosts."""
    clean_deploy(lab, tmp_path_factory.mktemp("clean"))
    state = end_state(lab, LBS)
    for host in LBS:
        assert "haproxy running" in state[host] and "keepalived running" in state[host]
        assert "temp files: " in state[host]
    return state


def test_sshd_killed_mid_run_fails_naming_host_and_step_then_resume_matches_clean_run(
        lab: Lab, tmp_path: Path, clean_state: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = "lb2"
    proc = start_deploy(inventory)
    try:
        wait_journal(inventory, "lb.haproxy-cfg", {"running", "changed", "ok", "failed"},
                     every=False, proc=proc)
        lab.hosts[victim].exec(KILL_SSHD)
        assert not lab.hosts[victim].sshd_running()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    failed = [s["id"] for s in journal(inventory)["steps"]
              if s["hosts"].get(victim, {}).get("state") == "failed"]
    assert len(failed) == 1, out
    step = failed[0]
    # The fault came after step 4 began, so it hit step 4 or a later one.
    assert step in ("lb.haproxy-cfg", "lb.haproxy-options", "lb.keepalived", "lb.services",
                    "lb.verify"), out
    assert f"step {step} failed on {victim}" in out, out
    assert "--resume" in out, out
    assert journal(inventory)["status"] == "failed"

    lab.hosts[victim].start_sshd()
    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--resume", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert journal(inventory)["status"] == "done"
    assert one_holder(lab) == ["lb1"]
    assert end_state(lab, LBS) == clean_state


def test_sigint_stops_after_the_current_command_and_resume_finishes(
        lab: Lab, tmp_path: Path, clean_state: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    proc = start_deploy(inventory)
    try:
        # apt-get install takes seconds: interrupt while it runs on every host.
        wait_journal(inventory, "lb.packages", {"running"}, every=True, proc=proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert "Stopped at your request after the current command" in out, out
    assert f"deploy-lb --resume --hosts {inventory}" in out, out
    assert "Traceback" not in out, out
    assert journal(inventory)["status"] == "interrupted"
    # The install that was running finished; nothing after it started.
    assert all(installed(lab, h, p) for h in LBS for p in ("haproxy", "keepalived"))
    assert set(host_states(inventory, "lb.packages").values()) == {"changed"}
    for later in ("lb.sysctl", "lb.haproxy-cfg", "lb.haproxy-options", "lb.keepalived",
                  "lb.services"):
        assert set(host_states(inventory, later).values()) == {"pending"}, later

    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--resume", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert journal(inventory)["status"] == "done"
    assert one_holder(lab) == ["lb1"]
    assert end_state(lab, LBS) == clean_state


def test_second_run_is_refused_while_the_lock_is_held_and_touches_nothing(
        lab: Lab, tmp_path: Path) -> None:
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    before = {h: (snapshot(lab, h, FILES), end_state(lab, (h,))) for h in LBS}
    store = RunStore(state_dir_for(str(inventory)))
    store.lock()
    try:
        run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    finally:
        store.unlock()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "another hadeploy run holds" in run.stdout + run.stderr
    assert "nothing was touched" in run.stdout + run.stderr
    assert not list((tmp_path / ".hadeploy").glob("runs/*.json"))
    assert {h: (snapshot(lab, h, FILES), end_state(lab, (h,))) for h in LBS} == before


# What a run whose workstation died leaves on a host: its apt-get still installing. A dpkg hook
# keeps it busy for a while so that the deploy below surely meets it.
LEFT_OVER_APT = (
    "setsid sh -c 'DEBIAN_FRONTEND=noninteractive apt-get -q -y "
    "-o DPkg::Pre-Invoke::=\"sleep 8\" install haproxy keepalived' "
    "</dev/null >/var/log/left-over-apt.log 2>&1 &"
)


def test_a_package_manager_run_left_on_a_host_is_named_and_waited_for(
        lab: Lab, tmp_path: Path, clean_state: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = lab.hosts["lb2"]
    victim.exec(LEFT_OVER_APT)
    holders = f"{PM_LOCK_HOLDERS}hadeploy_pm_holders {' '.join(DPKG_LOCKS)}"
    holder = wait_for(lambda: victim.exec(holders).stdout.strip(),
                      "the left-over apt-get to hold dpkg's lock")
    pid = holder.split()[0]
    assert "apt-get" in holder, holder

    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    told = [line.split(None, 1) for line in run.stdout.splitlines() if "waiting (at most" in line]
    assert [host for host, _ in told] == ["lb2"], run.stdout
    assert (f"for the package manager run already under way to finish: pid {pid} "
            in told[0][1]), run.stdout
    assert "apt-get" in told[0][1] and "DPkg::Pre-Invoke" in told[0][1], run.stdout
    assert victim.exec(holders).stdout == ""
    assert one_holder(lab) == ["lb1"]
    assert end_state(lab, LBS) == clean_state
