"""Guide 2 for real: haproxy on the controllers, every API bound to its node's own address.

ctl1 is the real Keystone + Glance original (Keystone under Debian's uwsgi init script on
0.0.0.0:5000), ctl2 and ctl3 are new; `deploy-lb` then `deploy-controllers` in the
co-located topology, then rollback of both (controllers first, as an operator undoes them).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.openstack import OriginalController, provision_original
from tests.lab.helpers import (
    CTLS,
    LBS,
    hadeploy,
    kill_haproxy_on_the_vip_holder,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

RC = "/root/keystonerc_admin"
PORTS = (5000, 9292)  # keystone-public and glance: the balanced ports (admin, registry omitted)
# Every file of the original that the two phases touch, and the uwsgi default file.
ORIGINAL_FILES = ("/etc/default/keystone", "/etc/keystone/keystone.conf",
                  "/etc/glance/glance-api.conf", RC)
WILDCARDS = ("0.0.0.0", "*", "[::]", "::")
Deployed = tuple[Lab, Path, OriginalController, dict[str, str]]


def _sums(lab: Lab) -> dict[str, str]:
    out = lab.hosts["ctl1"].exec(["sha256sum", *ORIGINAL_FILES]).stdout
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def _listeners(lab: Lab, host: str) -> dict[int, set[str]]:
    """The addresses each balanced port listens on, from `ss -ltn`."""
    found: dict[int, set[str]] = {p: set() for p in PORTS}
    for line in lab.hosts[host].exec(["ss", "-Hltn"]).stdout.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        if port.isdigit() and int(port) in found:
            found[int(port)].add(address)
    return found


def _openstack(lab: Lab, args: str, auth_url: str) -> str:
    return lab.hosts["ctl1"].exec(f". {RC} && OS_AUTH_URL={auth_url} openstack {args}",
                                  timeout=120).stdout


@pytest.fixture(scope="module")
def deployed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The original provisioned on ctl1, then both phases co-located on ctl1-ctl3."""
    for host in LBS + CTLS:  # lb1-lb3 of another module could hold the same VIP
        lab.hosts[host].reset()
    state = tmp_path_factory.mktemp("colocated")
    original = provision_original(lab, "ctl1", state)
    before = _sums(lab)
    inventory = write_lab_inventory(lab, state / "hosts.toml", topology="colocated",
                                    rc_files=[("ctl1", RC)])
    for phase in ("lb", "controllers"):
        run = hadeploy(f"deploy-{phase}", "--hosts", str(inventory), "--yes", timeout=1500)
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    return lab, inventory, original, before


def test_uwsgi_default_file_names_the_nodes_address(deployed: Deployed) -> None:
    """Debian's init script reads Keystone's listen address from /etc/default/keystone."""
    lab = deployed[0]
    default = lab.hosts["ctl1"].exec(["cat", "/etc/default/keystone"]).stdout
    assert f"--http-socket {lab.hosts['ctl1'].address}:5000" in default, default


def test_each_api_listens_on_its_node_and_haproxy_on_the_vip(deployed: Deployed) -> None:
    lab = deployed[0]
    for host in CTLS:
        listeners = _listeners(lab, host)
        for port in PORTS:
            assert listeners[port] == {lab.hosts[host].address, LAB_VIP}, (host, port, listeners)
            assert not listeners[port] & set(WILDCARDS)


def test_tokens_through_the_vip_and_on_every_node(deployed: Deployed) -> None:
    lab = deployed[0]
    for address in (LAB_VIP, *(lab.hosts[h].address for h in CTLS)):
        token = _openstack(lab, "token issue -f value -c id", f"http://{address}:5000/v3")
        assert token.strip(), address


def test_image_list_through_the_vip(deployed: Deployed) -> None:
    lab = deployed[0]
    endpoints = json.loads(_openstack(lab, "endpoint list -f json",
                                      f"http://{LAB_VIP}:5000/v3"))
    assert endpoints and all(f"//{LAB_VIP}:" in e["URL"] for e in endpoints), endpoints
    run = lab.hosts["ctl1"].exec(f". {RC} && openstack image list -f json", timeout=120)
    assert json.loads(run.stdout) == []
    for host in CTLS:
        try:
            with urllib.request.urlopen(f"http://{lab.hosts[host].address}:9292/",
                                        timeout=10) as reply:
                status = reply.status
        except urllib.error.HTTPError as answer:  # Glance lists its versions with a 300
            status = answer.code
        assert status in (200, 300), host


def test_killing_haproxy_on_the_vip_holder_moves_the_vip(deployed: Deployed) -> None:
    lab = deployed[0]
    holder, new = kill_haproxy_on_the_vip_holder(lab, CTLS)
    assert new != holder
    token = _openstack(lab, "token issue -f value -c id", f"http://{LAB_VIP}:5000/v3")
    assert token.strip()
    assert _openstack(lab, "image list -f value", f"http://{LAB_VIP}:5000/v3") is not None
    # the operator's remedy: a second deploy-lb starts haproxy there again
    again = hadeploy("deploy-lb", "--hosts", str(deployed[1]), "--yes", timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]


def test_rollback_restores_the_original_byte_for_byte(deployed: Deployed) -> None:
    lab, inventory, original, before = deployed
    for phase in ("controllers", "lb"):
        back = hadeploy("rollback", "--phase", phase, "--hosts", str(inventory), "--yes",
                        timeout=1500)
        assert back.returncode == 0, back.stdout[-5000:] + back.stderr[-3000:]
    assert _sums(lab) == before
    wait_for(lambda: "0.0.0.0" in _listeners(lab, "ctl1")[5000] or None,
             "keystone on every address again")
    listeners = _listeners(lab, "ctl1")
    assert listeners[5000] == {"0.0.0.0"}, listeners
    assert listeners[9292] == {original.address}, listeners  # the lab's glance named ctl1
    for host in CTLS:
        assert LAB_VIP not in {a for p in PORTS for a in _listeners(lab, host)[p]}, host
    token = _openstack(lab, "token issue -f value -c id", original.keystone_url)
    assert token.strip()
