"""deploy-lb end to end in the lab: real sshd, apt, haproxy, keepalived, VRRP failover."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    CTLS,
    FILES,
    LBS,
    events,
    hadeploy,
    http_get,
    installed,
    pidfile_pid,
    snapshot,
    start_backends,
    vip_holders,
    wait_for,
)

pytestmark = pytest.mark.lab



def _fresh(lab: Lab, hosts: tuple[str, ...]) -> None:
    for host in hosts:
        lab.hosts[host].reset()


def _assert_failover(lab: Lab, balancers: tuple[str, ...]) -> None:
    holders = wait_for(lambda: (h if len(h := vip_holders(lab, balancers, LAB_VIP)) == 1
                                else None), "exactly one VIP holder")
    holder = holders[0]
    assert holder == balancers[0], f"highest priority node should hold the VIP, not {holder}"
    pid = pidfile_pid(lab, holder, "/run/haproxy.pid")
    assert pid
    started = time.monotonic()
    lab.hosts[holder].exec(["kill", str(pid)])
    new = wait_for(lambda: [h for h in vip_holders(lab, balancers, LAB_VIP) if h != holder],
                   "the VIP to move", seconds=30)
    took = time.monotonic() - started
    print(f"VIP moved from {holder} to {new[0]} in {took:.1f}s")
    assert len(new) == 1
    assert vip_holders(lab, balancers, LAB_VIP) == new


def test_dedicated_deploy_noop_rerun_and_rollback(lab: Lab, tmp_path: Path) -> None:
    _fresh(lab, LBS + CTLS)
    start_backends(lab, CTLS, STAND_IN_PORTS)
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    before = {h: snapshot(lab, h, FILES) for h in LBS}
    sysctl_before = {h: lab.hosts[h].exec(["sysctl", "-n", "net.ipv4.ip_nonlocal_bind"]).stdout
                     for h in LBS}

    dry = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "apt-get install" in dry.stdout and "+frontend keystone-public-vip" in dry.stdout
    assert "stats-Secret" not in dry.stdout
    assert {h: snapshot(lab, h, FILES) for h in LBS} == before
    assert not any(installed(lab, h, "haproxy") for h in LBS)

    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    holders = wait_for(lambda: (h if len(h := vip_holders(lab, LBS, LAB_VIP)) == 1 else None),
                       "one VIP holder")
    assert holders == ["lb1"]
    seen = {http_get(f"http://{LAB_VIP}:{port}/") for port in STAND_IN_PORTS for _ in range(3)}
    assert seen == set(CTLS), seen

    pids = {h: (pidfile_pid(lab, h, "/run/haproxy.pid"),
                pidfile_pid(lab, h, "/run/keepalived.pid")) for h in LBS}
    after = {h: snapshot(lab, h, FILES) for h in LBS}
    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    kinds = [e["event"] for e in events(again.stdout)]
    assert "host-changed" not in kinds and "host-ok" in kinds
    assert {h: (pidfile_pid(lab, h, "/run/haproxy.pid"),
                pidfile_pid(lab, h, "/run/keepalived.pid")) for h in LBS} == pids
    assert {h: snapshot(lab, h, FILES) for h in LBS} == after

    _assert_failover(lab, LBS)

    back = hadeploy("rollback", "--phase", "lb", "--hosts", str(inventory), "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert {h: snapshot(lab, h, FILES) for h in LBS} == before
    assert not any(installed(lab, h, p) for h in LBS for p in ("haproxy", "keepalived"))
    assert {h: lab.hosts[h].exec(["sysctl", "-n", "net.ipv4.ip_nonlocal_bind"]).stdout
            for h in LBS} == sysctl_before
    assert vip_holders(lab, LBS, LAB_VIP) == []


def test_colocated_deploy_and_failover(lab: Lab, tmp_path: Path) -> None:
    _fresh(lab, CTLS)
    start_backends(lab, CTLS, STAND_IN_PORTS)
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml", topology="colocated")
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    wait_for(lambda: len(vip_holders(lab, CTLS, LAB_VIP)) == 1, "one VIP holder")
    seen = {http_get(f"http://{LAB_VIP}:{port}/") for port in STAND_IN_PORTS for _ in range(3)}
    assert seen == set(CTLS), seen
    _assert_failover(lab, CTLS)


def test_no_terminal_without_yes_refuses(lab: Lab, tmp_path: Path) -> None:
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    run = hadeploy("deploy-lb", "--hosts", str(inventory))
    assert run.returncode == 2
    assert "--yes" in run.stdout
