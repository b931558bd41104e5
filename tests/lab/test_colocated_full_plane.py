"""Guide 2 for real on the whole control plane: haproxy and keepalived on the controllers,
every API bound to its node's own address.

ctl1 is the full-plane original (Keystone, Glance, Placement, Nova, Neutron, Cinder, Heat,
Swift, Horizon as a single-node installer leaves them: most on every address), ctl2 and ctl3
are bare. `deploy-lb` co-located binds the original's APIs to its address and puts haproxy on
the VIP's ports of all three; `deploy-controllers` installs, copies and binds every service
on ctl2 and ctl3. Then every API answers on each node and through the VIP, haproxy on every
node sees every backend UP, one API stopped on one node is taken out while requests keep
succeeding, haproxy killed on the VIP holder moves the VIP, and the rollback of both phases
leaves the original as it was: files byte-identical, every API on its old listen address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.openstack import ADMIN_RC, OriginalController
from lab.openstack.shared_store import share_directory, unshare_directory
from tests.lab.api_calls import Session
from tests.lab.full_plane import (
    API_PORTS,
    CATALOG,
    CTLS,
    NEW,
    ORIGINAL,
    SERVICES,
    daemon_pids,
    full_plane_original,
    openstack,
    openstack_json,
    original_diagnosis,
    original_files,
)
from tests.lab.helpers import (
    LBS,
    events,
    hadeploy,
    installed,
    kill_haproxy_on_the_vip_holder,
    wait_for,
)

# In .ci/run since the controllers phase starts new controllers together and restarts
# swift-proxy without a minute's wait (it took 23 min alone before, 2026-12-03).
pytestmark = [pytest.mark.lab, pytest.mark.openstack]

#: The API stopped on one node to watch haproxy take it out (its port, its daemon).
STOPPED_PORT, STOPPED_DAEMON, STOPPED_ON = 8776, "cinder-api", "ctl3"
PROGRESS: list[str] = []


@pytest.fixture(scope="module")
def original(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginalController]:
    """ctl1 provisioned with the full plane; reset to a bare host afterwards."""
    yield from full_plane_original(lab, tmp_path_factory.mktemp("full-plane"), PROGRESS)


@dataclass
class Colocated:
    """The deployed lab: its inventory, and the original's files and listeners before."""

    inventory: Path
    files_before: str
    listeners_before: dict[int, set[str]]


def _listeners(lab: Lab, host: str) -> dict[int, set[str]]:
    """The addresses each API port listens on, from `ss -ltn`."""
    found: dict[int, set[str]] = {p: set() for p in API_PORTS}
    for line in lab.hosts[host].exec(["ss", "-Hltn"]).stdout.splitlines():
        address, _, port = line.split()[3].rpartition(":")
        if port.isdigit() and int(port) in found:
            found[int(port)].add(address)
    return found


@pytest.fixture(scope="module")
def colocated(lab: Lab, original: OriginalController,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Colocated]:
    """deploy-lb then deploy-controllers of every service, co-located on ctl1-ctl3, with
    Glance's image store on a directory the three share (the lab's stand-in for NFS)."""
    for host in LBS + NEW:  # lb1-lb3 of another module could hold the same VIP
        lab.hosts[host].reset()
    shared = share_directory(lab, CTLS)
    try:
        before = Colocated(Path(), original_files(lab), _listeners(lab, ORIGINAL))
        state = tmp_path_factory.mktemp("colocated-full")
        before.inventory = write_lab_inventory(lab, state / "hosts.toml", topology="colocated",
                                               services=SERVICES,
                                               rc_files=[(ORIGINAL, ADMIN_RC)])
        for phase in ("lb", "controllers"):
            run = hadeploy(f"deploy-{phase}", "--hosts", str(before.inventory), "--yes",
                           timeout=1800)
            assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
            assert original.admin_password not in run.stdout + run.stderr
        yield before
    finally:
        unshare_directory(lab, CTLS, shared)
        for host in NEW:
            lab.hosts[host].reset()


def test_every_api_listens_on_its_node_and_haproxy_on_the_vip(
        lab: Lab, colocated: Colocated) -> None:
    for host in CTLS:
        listeners = _listeners(lab, host)
        assert listeners == {p: {lab.hosts[host].address, LAB_VIP} for p in API_PORTS}, \
            (host, listeners)


def test_every_endpoint_is_on_the_vip_with_its_path(lab: Lab, colocated: Colocated) -> None:
    endpoints = openstack_json(lab, "endpoint list")
    assert len(endpoints) == 3 * len(CATALOG)
    for endpoint in endpoints:
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{LAB_VIP}:{port}{path}", endpoint


def test_every_api_answers_on_every_node_and_through_the_vip(
        lab: Lab, original: OriginalController, colocated: Colocated) -> None:
    for host in CTLS:
        Session.login(lab.hosts[host].address, original.admin_password).every_api(host)
    Session.login(LAB_VIP, original.admin_password).every_api("vip")
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000/v3" in lab.hosts[ORIGINAL].exec(
        ["cat", ADMIN_RC]).stdout
    created = json.loads(openstack(lab, "network create colocated-net -f json"))
    assert created["name"] == "colocated-net"
    assert openstack_json(lab, "server list") == []
    assert openstack_json(lab, "stack list") == []


def _servers(inventory: Path) -> dict[str, dict[tuple[str, str], str]]:
    """Per node, (backend, server) -> status as that node's haproxy reports it (`hadeploy
    verify`: every controller is a balancer, co-located)."""
    run = hadeploy("verify", "--hosts", str(inventory), "--json", timeout=120)
    assert run.stdout.strip(), run.stderr
    return {b["name"]: {(r["backend"], r["server"]): r["status"] for r in b["servers"]
                        if r["server"] not in ("FRONTEND", "BACKEND")}
            for b in json.loads(run.stdout)["balancers"]}


def test_haproxy_on_every_node_sees_every_backend_up(colocated: Colocated) -> None:
    def all_up() -> dict[str, dict[tuple[str, str], str]] | None:
        seen = _servers(colocated.inventory)
        return seen if all(s == "UP" for rows in seen.values() for s in rows.values()) \
            else None
    seen = wait_for(all_up, "every backend UP on every node", seconds=90)
    assert set(seen) == set(CTLS)
    for rows in seen.values():
        assert {server for _, server in rows} == set(CTLS), rows


def test_an_api_stopped_on_one_node_is_taken_out_and_requests_keep_succeeding(
        lab: Lab, original: OriginalController, colocated: Colocated) -> None:
    backend = load_inventory(colocated.inventory).haproxy.backend_name.replace(
        "{proxy}", "cinder")
    session = Session.login(LAB_VIP, original.admin_password)
    path = f"/v3/{session.project_id}/volumes"
    host = lab.hosts[STOPPED_ON]
    host.exec(f"/etc/init.d/{STOPPED_DAEMON} stop")
    try:
        wait_for(lambda: all(rows[(backend, STOPPED_ON)].startswith("DOWN")
                             for rows in _servers(colocated.inventory).values()) or None,
                 f"every node's haproxy to take {STOPPED_ON}'s {STOPPED_DAEMON} out",
                 seconds=60)
        statuses = [session.call(STOPPED_PORT, "GET", path).status for _ in range(30)]
        assert statuses == [200] * 30, statuses
    finally:
        host.exec(f"/etc/init.d/{STOPPED_DAEMON} start")
    wait_for(lambda: all(rows[(backend, STOPPED_ON)] == "UP"
                         for rows in _servers(colocated.inventory).values()) or None,
             f"{STOPPED_ON}'s {STOPPED_DAEMON} back UP", seconds=90)


def test_killing_haproxy_on_the_vip_holder_moves_the_vip(
        lab: Lab, original: OriginalController, colocated: Colocated) -> None:
    holder, new = kill_haproxy_on_the_vip_holder(lab, CTLS)
    assert new != holder
    Session.login(LAB_VIP, original.admin_password).every_api("vip-moved")
    # the operator's remedy: a second deploy-lb starts haproxy there again
    again = hadeploy("deploy-lb", "--hosts", str(colocated.inventory), "--yes", timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]


def test_rerun_changes_and_restarts_nothing(lab: Lab, colocated: Colocated) -> None:
    pids = {h: daemon_pids(lab, h) for h in CTLS}
    again = hadeploy("deploy-controllers", "--hosts", str(colocated.inventory), "--yes",
                     "--json", timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    changed = [(e["step"], e["host"]) for e in events(again.stdout)
               if e["event"] == "host-changed"]
    assert changed == []
    assert {h: daemon_pids(lab, h) for h in CTLS} == pids


def test_rollback_of_both_phases_leaves_the_original_as_it_was(
        lab: Lab, original: OriginalController, colocated: Colocated) -> None:
    for phase in ("controllers", "lb"):
        back = hadeploy("rollback", "--phase", phase, "--hosts", str(colocated.inventory),
                        "--yes", timeout=1800)
        if back.returncode != 0:  # the lab is gone after the module: say what it showed
            pytest.fail(f"{back.stdout[-5000:]}{back.stderr[-3000:]}\n"
                        f"the original then:\n{original_diagnosis(lab)}")
    assert original_files(lab) == colocated.files_before
    wait_for(lambda: _listeners(lab, ORIGINAL) == colocated.listeners_before or None,
             "every API of the original on its old listen address", seconds=90)
    for host in CTLS:
        assert not installed(lab, host, "haproxy") and not installed(lab, host, "keepalived")
        assert LAB_VIP not in lab.hosts[host].exec("ip -4 -o addr show").stdout, host
    for host in NEW:
        assert daemon_pids(lab, host) == "", host
    for endpoint in openstack_json(lab, "endpoint list"):
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{original.address}:{port}{path}", endpoint
    Session.login(original.address, original.admin_password).every_api("after-rollback")
