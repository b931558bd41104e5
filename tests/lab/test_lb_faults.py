"""deploy-lb under faults: a host's sshd dies mid-run, the operator presses Ctrl-C, a second
run meets the lock. After each, the hosts must end exactly as after a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hadeploy.journal import RunStore, state_dir_for
from hadeploy.lab import Lab
from hadeploy.lab_inventory import LAB_VIP, write_lab_inventory
from hadeploy.platforms import running_probe
from hadeploy.runbook.lb import HAPROXY_PIDFILES, KEEPALIVED_PIDFILES
from tests.lab.helpers import (
    ROOT,
    STATS_PASSWORD,
    hadeploy,
    installed,
    snapshot,
    vip_holders,
    wait_for,
)

pytestmark = pytest.mark.lab

LBS = ("lb1", "lb2", "lb3")
CTLS = ("ctl1", "ctl2", "ctl3")
FILES = ("/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf",
         "/etc/keepalived/check_haproxy.sh", "/etc/sysctl.d/60-hadeploy-haproxy.conf")
# Everything a deploy leaves on a host that must not depend on how the run got there.
# (Backups under /var/lib/hadeploy are named after the run, so they are left out.)
END_STATE = "\n".join([
    *(f"if [ -e {f} ]; then echo \"{f} $(stat -c '%a %U %G' {f}) "
      f"$(sha256sum < {f} | cut -d' ' -f1)\"; else echo '{f} absent'; fi" for f in FILES),
    "dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\\n' haproxy keepalived "
    "2>/dev/null || true",
    "echo \"sysctl $(sysctl -n net.ipv4.ip_nonlocal_bind)\"",
    f"echo \"haproxy $({running_probe('haproxy', HAPROXY_PIDFILES, 'sysv')})\"",
    f"echo \"keepalived $({running_probe('keepalived', KEEPALIVED_PIDFILES, 'sysv')})\"",
    "echo \"at boot: $(ls /etc/rc2.d | grep -E 'haproxy|keepalived' | tr '\\n' ' ')\"",
    "echo \"temp files: $(find /etc/haproxy /etc/keepalived -name '.hadeploy.*' "
    "2>/dev/null | tr '\\n' ' ')\"",
])
# Kill every sshd inside the host, by PID (this host's PID namespace only): the listener and
# the session processes, so hadeploy's open connection drops as if the host died.
KILL_SSHD = ("for d in /proc/[0-9]*; do "
             "[ \"$(cat $d/comm 2>/dev/null)\" = sshd ] && kill -9 \"${d#/proc/}\" 2>/dev/null; "
             "done; rm -f /run/sshd.pid; true")


def _fresh(lab: Lab, hosts: tuple[str, ...]) -> None:
    for host in hosts:
        lab.hosts[host].reset()


def end_state(lab: Lab, hosts: tuple[str, ...]) -> dict[str, list[str]]:
    """Files (mode, owner, checksum), packages, sysctl, daemons, boot links, temp files."""
    return {h: lab.hosts[h].exec(END_STATE).stdout.splitlines() for h in hosts}


def one_holder(lab: Lab) -> list[str]:
    """Wait until exactly one balancer holds the VIP, the one with the highest priority
    (keepalived may take a few adverts to settle), and return the holders."""
    return wait_for(lambda: (h if (h := vip_holders(lab, LBS, LAB_VIP)) == ["lb1"] else None),
                    "lb1 alone to hold the VIP")


def start_deploy(inventory: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m hadeploy deploy-lb --yes` in the background, as an operator would."""
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}
    env.pop("NO_COLOR", None)
    return subprocess.Popen([sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts",
                             str(inventory), "--yes", *args], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def journal(inventory: Path) -> dict[str, object]:
    """The newest journal beside `inventory` (written atomically: always complete)."""
    runs = sorted((inventory.parent / ".hadeploy" / "runs").glob("*.json"))
    return json.loads(runs[-1].read_text()) if runs else {}


def host_states(inventory: Path, step: str) -> dict[str, str]:
    """State of every host in `step` of the newest journal ({} before it exists)."""
    for entry in journal(inventory).get("steps", []):  # type: ignore[attr-defined]
        if entry["id"] == step:
            return {h: e["state"] for h, e in entry["hosts"].items()}
    return {}


def wait_journal(inventory: Path, step: str, states: set[str], every: bool,
                 proc: subprocess.Popen[str], seconds: float = 180) -> None:
    """Poll the journal until some (or `every`) host of `step` is in one of `states`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = host_states(inventory, step)
        hits = [s in states for s in seen.values()]
        if hits and (all(hits) if every else any(hits)):
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"deploy ended (exit {proc.returncode}) before {step} "
                                 f"reached {states}:\n{out}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {step} to reach {states}")


@pytest.fixture(scope="module")
def clean_state(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The end state of a clean, uninterrupted deploy on fresh hosts."""
    # Controllers of a co-located test could still run keepalived for the same VIP.
    _fresh(lab, LBS + CTLS)
    inventory = write_lab_inventory(lab, tmp_path_factory.mktemp("clean") / "hosts.toml")
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert one_holder(lab) == ["lb1"]
    state = end_state(lab, LBS)
    for host in LBS:
        assert "haproxy running" in state[host] and "keepalived running" in state[host]
        assert "temp files: " in state[host]
    return state


def test_sshd_killed_mid_run_fails_naming_host_and_step_then_resume_matches_clean_run(
        lab: Lab, tmp_path: Path, clean_state: dict[str, list[str]]) -> None:
    _fresh(lab, LBS)
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
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
    failed = [s["id"] for s in journal(inventory)["steps"]  # type: ignore[attr-defined]
              if s["hosts"].get(victim, {}).get("state") == "failed"]
    assert len(failed) == 1, out
    step = failed[0]
    # The fault came after step 4 began, so it hit step 4 or a later one.
    assert step in ("lb.haproxy-cfg", "lb.keepalived", "lb.services", "lb.verify"), out
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
    _fresh(lab, LBS)
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
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
    for later in ("lb.sysctl", "lb.haproxy-cfg", "lb.keepalived", "lb.services"):
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
