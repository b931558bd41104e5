"""Exact config edits of phase `controllers`: the VIP keys on the original, host keys on each.

Realistic config files (tests/data/controllers/RELEASE/orig, as packstack leaves them) go
through the runbook's FileEdit operations; the result must equal, byte for byte, the expected
file next to it, written by hand from guide 1's "Configure OpenStack Controller Nodes":

  vip/             the original after `ctl.SVC.vip-keys` (only the guide's keys name the VIP)
  host-dedicated/  a new controller after `ctl.SVC.host-keys` (own address for my_ip, local_ip,
                   proxy client addresses; a bind key only where the original named itself)
  host-colocated/  the same in the co-located topology (every bind key = api_bind, added
                   when absent)

grizzly fixtures are guide 1's deployment (original 10.15.85.141, VIP 10.15.85.31), modern
ones guide 2's (original 192.168.1.221, VIP 192.168.1.220).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from hadeploy.facts.files import FileState, file_probe
from hadeploy.inventory import Inventory
from hadeploy.ops import FileEdit, HostContext, Probe
from hadeploy.platforms import profile_for
from hadeploy.runbook.controllers import build_controllers_runbook
from tests.unit.controller_inventories import (
    ADDRESSES,
    CONTROLLERS,
    FIXTURES,
    RELEASE_SERVICES,
    TOPOLOGIES,
    Inventories,
    ctx_for,
    families,
)


def edits(inv: Inventory, kind: str, host: str) -> list[FileEdit]:
    """Every FileEdit of every `ctl.SVC.KIND` step on `host` (but novnc's: its one key lives in
    nova's nova.conf, tested in test_binds.py)."""
    runbook = build_controllers_runbook(inv, families(inv))
    out: list[FileEdit] = []
    for step in runbook.steps:
        if step.id.endswith(f".{kind}") and host in step.ops and ".novnc." not in step.id:
            out += [op for op in step.ops[host] if isinstance(op, FileEdit)]
    return out


def fixture(release: str, tree: str, path: str) -> Path:
    return FIXTURES / release / tree / path.lstrip("/")


def run_edit(op: FileEdit, ctx: HostContext, text: str) -> str:
    state = FileState(True, "root", "nova", "0640", hashlib.sha256(text.encode()).hexdigest(),
                      text.encode())
    want = op.desired(ctx, state)
    assert want is not None
    content, owner, group, mode = want
    assert (owner, group, mode) == ("root", "nova", "0640")  # an edit keeps them
    return content.decode()


def probe_answer(text: str) -> Probe:
    """What `file_probe` prints for a root:nova 0640 file holding `text`."""
    data = text.encode()
    return Probe(f"root nova 640\n{hashlib.sha256(data).hexdigest()}\n"
                 f"{base64.b64encode(data).decode()}\n")


def inventory_for(inventories: Inventories, release: str, topology: str) -> Inventory:
    return inventories(release, "el7", topology)


# -- VIP keys on the original ------------------------------------------------------------------

VIP_CASES = [(r, t) for r in ("grizzly", "modern") for t in TOPOLOGIES]


@pytest.mark.parametrize(("release", "topology"), VIP_CASES)
def test_vip_keys_edit_exactly_the_guides_keys(inventories: Inventories, release: str,
                                               topology: str) -> None:
    inv = inventory_for(inventories, release, topology)
    original = CONTROLLERS[release][0]
    ctx = ctx_for(inv, original, profile_for("el7"), "ctl.x.vip-keys")
    ops = edits(inv, "vip-keys", original)
    expected_paths = sorted("/" + str(p.relative_to(FIXTURES / release / "vip"))
                            for p in (FIXTURES / release / "vip").rglob("*") if p.is_file())
    assert sorted(op.path for op in ops) == expected_paths  # a fixture for every edited file
    for op in ops:
        before = fixture(release, "orig", op.path).read_text()
        after = fixture(release, "vip", op.path).read_text()
        assert run_edit(op, ctx, before) == after, op.path
        # the engine's view: not done before, done after, and a re-run changes nothing
        assert op.probe(ctx) == file_probe(op.path, True)
        assert not op.done(ctx, op.read(ctx, probe_answer(before))) or before == after
        assert op.done(ctx, op.read(ctx, probe_answer(after)))
        assert run_edit(op, ctx, after) == after


def test_vip_keys_values_are_the_guides(inventories: Inventories) -> None:
    """Guide 1's lines, literally, in the edited grizzly files."""
    inv = inventory_for(inventories, "grizzly", "dedicated")
    ctx = ctx_for(inv, "mesa-virt-01", profile_for("el6"))
    guide = {
        "/etc/quantum/quantum.conf": ["auth_host = 10.15.85.31"],
        "/etc/quantum/api-paste.ini": ["auth_host = 10.15.85.31"],
        "/etc/quantum/metadata_agent.ini": ["auth_url = http://10.15.85.31:35357/v2.0",
                                            "nova_metadata_ip = 10.15.85.31"],
        "/etc/glance/glance-api.conf": ["registry_host = 10.15.85.31",
                                        "auth_host = 10.15.85.31"],
        "/etc/glance/glance-registry.conf": ["auth_host = 10.15.85.31"],
        "/etc/nova/nova.conf": ["metadata_host=10.15.85.31",
                                "quantum_admin_auth_url=http://10.15.85.31:35357/v2.0",
                                "quantum_url=http://10.15.85.31:9696",
                                "glance_api_servers=10.15.85.31:9292"],
        "/etc/nova/api-paste.ini": ["auth_host = 10.15.85.31"],
        "/etc/cinder/cinder.conf": ["glance_host = 10.15.85.31"],
        "/etc/cinder/api-paste.ini": ["service_host = 10.15.85.31", "auth_host = 10.15.85.31"],
    }
    ops = {op.path: op for op in edits(inv, "vip-keys", "mesa-virt-01")}
    assert set(ops) == set(guide)
    for path, lines in guide.items():
        after = run_edit(ops[path], ctx, fixture("grizzly", "orig", path).read_text())
        for line in lines:
            assert f"\n{line}\n" in after, (path, line)


def test_grizzly_vip_keys_are_added_when_the_file_lacks_them(inventories: Inventories) -> None:
    inv = inventory_for(inventories, "grizzly", "dedicated")
    ctx = ctx_for(inv, "mesa-virt-01", profile_for("el6"))
    ops = {op.path: op for op in edits(inv, "vip-keys", "mesa-virt-01")}
    before = "[DEFAULT]\nbind_host = 0.0.0.0\n\n[keystone_authtoken]\nauth_port = 35357\n"
    assert run_edit(ops["/etc/glance/glance-registry.conf"], ctx, before) == (
        "[DEFAULT]\nbind_host = 0.0.0.0\n\n[keystone_authtoken]\nauth_port = 35357\n"
        "auth_host = 10.15.85.31\n")
    # a grizzly file the guide edits must exist
    with pytest.raises(FileNotFoundError, match=r"/etc/quantum/metadata_agent\.ini"):
        ops["/etc/quantum/metadata_agent.ini"].desired(ctx, FileState(False))


def test_modern_vip_keys_keep_scheme_port_and_path_and_skip_absent_keys(
        inventories: Inventories) -> None:
    inv = inventory_for(inventories, "modern", "colocated")
    ctx = ctx_for(inv, "rhos6-node1", profile_for("el7"))
    ops = {op.path: op for op in edits(inv, "vip-keys", "rhos6-node1")}
    nova = ops["/etc/nova/nova.conf"]
    text = ("[keystone_authtoken]\nwww_authenticate_uri = https://192.168.1.221:13000/v3/\n"
            "auth_url=http://rhos6-node1:5000\n\n[placement]\nregion_name=RegionOne\n")
    assert run_edit(nova, ctx, text) == (
        "[keystone_authtoken]\nwww_authenticate_uri = https://192.168.1.220:13000/v3/\n"
        "auth_url=http://192.168.1.220:5000\n\n[placement]\nregion_name=RegionOne\n")
    # nothing to point at the VIP: untouched, not even a key added
    bare = "# glance\n[DEFAULT]\nbind_host = 0.0.0.0\n"
    assert run_edit(ops["/etc/glance/glance-api.conf"], ctx, bare) == bare
    assert run_edit(ops["/etc/cinder/cinder.conf"], ctx, bare) == bare
    # modern keys are all if_present: a missing file is left alone
    for op in ops.values():
        assert op.desired(ctx, FileState(False)) is None
        assert op.done(ctx, op.read(ctx, Probe("absent\n")))


def test_vip_keys_apply_is_an_atomic_write_keeping_owner_and_mode(
        inventories: Inventories) -> None:
    inv = inventory_for(inventories, "grizzly", "dedicated")
    ctx = ctx_for(inv, "mesa-virt-01", profile_for("el6"), "ctl.nova.vip-keys")
    op = next(op for op in edits(inv, "vip-keys", "mesa-virt-01")
              if op.path == "/etc/nova/nova.conf")
    before = fixture("grizzly", "orig", op.path).read_text()
    (write,) = op.apply(ctx, op.read(ctx, probe_answer(before)))
    assert write.stdin == fixture("grizzly", "vip", op.path).read_bytes()
    assert "chown root:nova" in write.script and "chmod 0640" in write.script
    assert ("/var/lib/hadeploy/backup/20260101-000000-000-t-deploy/ctl.nova.vip-keys"
            "/etc/nova/nova.conf") in write.script
    assert op.intent(ctx, op.read(ctx, probe_answer(before)))["existed"] is True


# Files with host keys that a release does not have: the edit must leave their absence alone.
# (grizzly's heat had one file per API, heat-api.conf..., not heat.conf.)
ABSENT = {"grizzly": {"/etc/heat/heat.conf"}, "modern": set()}


# -- host keys on each controller ----------------------------------------------------------------


@pytest.mark.parametrize(("release", "topology"), VIP_CASES)
def test_host_keys_give_each_controller_its_own_values(inventories: Inventories,
                                                       release: str, topology: str) -> None:
    inv = inventory_for(inventories, release, topology)
    original, second, third = CONTROLLERS[release]
    addresses = ADDRESSES[release][1]
    tree = f"host-{topology}"
    expected_paths = sorted("/" + str(p.relative_to(FIXTURES / release / tree))
                            for p in (FIXTURES / release / tree).rglob("*") if p.is_file())
    hosts = [second, third] + ([original] if topology == "colocated" else [])
    for host in hosts:
        ctx = ctx_for(inv, host, profile_for("el7"), "ctl.x.host-keys")
        ops = edits(inv, "host-keys", host)
        assert sorted(op.path for op in ops) == sorted({*expected_paths, *ABSENT[release]})
        own = addresses[CONTROLLERS[release].index(host)]
        for op in ops:
            if op.path in ABSENT[release]:
                assert op.desired(ctx, FileState(False)) is None
                continue
            copied = fixture(release, "vip", op.path)
            before = (copied if copied.exists() else fixture(release, "orig", op.path)).read_text()
            # the fixtures are written for the second controller; the others get their own
            expected = fixture(release, tree, op.path).read_text().replace(addresses[1], own)
            assert run_edit(op, ctx, before) == expected, (host, op.path)
            assert run_edit(op, ctx, expected) == expected
            # a host-specific file that is not there (service without it) is left alone
            assert op.desired(ctx, FileState(False)) is None


def test_host_keys_on_the_colocated_original_bind_to_its_own_address(
        inventories: Inventories) -> None:
    inv = inventory_for(inventories, "modern", "colocated")
    ctx = ctx_for(inv, "rhos6-node1", profile_for("el7"))
    ops = {op.path: op for op in edits(inv, "host-keys", "rhos6-node1")}
    before = fixture("modern", "orig", "/etc/neutron/neutron.conf").read_text()
    after = run_edit(ops["/etc/neutron/neutron.conf"], ctx, before)
    assert after == before.replace("bind_host=0.0.0.0\n", "bind_host=192.168.1.221\n", 1)
    assert "0.0.0.0" not in after


def test_dedicated_bind_keys_follow_only_the_originals_own_address(
        inventories: Inventories) -> None:
    inv = inventory_for(inventories, "grizzly", "dedicated")
    ctx = ctx_for(inv, "mesa-virt-03", profile_for("el6"))
    ops = {op.path: op for op in edits(inv, "host-keys", "mesa-virt-03")}
    keystone = ops["/etc/keystone/keystone.conf"]
    for value, expected in (("0.0.0.0", "0.0.0.0"), ("10.15.85.141", "10.15.85.143"),
                            ("127.0.0.1", "127.0.0.1"), ("10.15.85.142", "10.15.85.142")):
        text = f"[DEFAULT]\nbind_host = {value}\n"
        assert run_edit(keystone, ctx, text) == f"[DEFAULT]\nbind_host = {expected}\n"
    # absent bind key: not added in the dedicated topology
    assert run_edit(keystone, ctx, "[DEFAULT]\n") == "[DEFAULT]\n"
    # address keys are set only where the file has them
    nova = ops["/etc/nova/nova.conf"]
    assert run_edit(nova, ctx, "[DEFAULT]\nverbose=True\n") == "[DEFAULT]\nverbose=True\n"
    assert run_edit(nova, ctx, "[DEFAULT]\nmy_ip=1.2.3.4\n") == "[DEFAULT]\nmy_ip=10.15.85.143\n"


def test_every_service_with_config_has_fixtures() -> None:
    """The fixtures cover every service whose files hadeploy edits, in both releases."""
    trees = {release: {p.relative_to(FIXTURES / release / "orig").parts[1]
                       for p in (FIXTURES / release / "orig").rglob("*") if p.is_file()}
             for release in ("grizzly", "modern")}
    assert trees["grizzly"] == {"keystone", "quantum", "glance", "nova", "cinder", "swift",
                                "ceilometer"}
    assert trees["modern"] == {"keystone", "neutron", "glance", "nova", "placement", "cinder",
                               "swift", "heat", "openstack-dashboard"}
    assert set(RELEASE_SERVICES["modern"]) - trees["modern"] == {"novnc", "horizon"}
