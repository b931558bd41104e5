"""The shared-storage preflight of phase `controllers` (issue 11): Glance's store layouts read
from glance-api.conf, the filesystem a directory lives on, the refusal's text, where the step
sits in the runbook, and a run that stops before anything changes on any host."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hadeploy import commands
from hadeploy.app import Deployment
from hadeploy.catalog import load_catalog
from hadeploy.engine import Engine
from hadeploy.errors import CatalogError, StepFailed
from hadeploy.facts import Probe
from hadeploy.facts.storage import (
    Mount,
    StorageSeen,
    is_shared_filesystem,
    parse_mounts,
    parse_storage,
    storage_probe,
)
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.journal import Journal, now
from hadeploy.ops.shared_state import (
    LAYOUTS,
    SharedState,
    Store,
    glance_stores,
    local_stores,
    shared_state_check,
)
from hadeploy.platforms import profile_for
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.testing import FakeTransport
from tests.unit.controller_inventories import FIXTURES, ctx_for, families
from tests.unit.examples import COLOCATED, edit
from tests.unit.storage_world import LOCAL_DISK, storage_answer

GLANCE = load_catalog()["glance"].node_local_for("modern")[0]
CONF = "/etc/glance/glance-api.conf"
DEFAULT_DIR = "/var/lib/glance/images/"
UNSET_STORE = "[glance_store] default_store not set (default file)"
UNSET_DIR = f"filesystem_store_datadir not set (default {DEFAULT_DIR})"

# -- which stores keep images in a directory, for every layout of glance-api.conf -------------

LAYOUT_CASES = {
    # nothing set: glance_store's defaults, the file store in /var/lib/glance/images/
    "defaults": ("[DEFAULT]\ndebug = false\n[glance_store]\n",
                 [Store(UNSET_STORE, UNSET_DIR, DEFAULT_DIR)]),
    # Debian 12's packaged file (the lab's original): the directory set, the store not
    "debian": ("[DEFAULT]\n[file]\n[glance_store]\n#default_store = file\n"
               "filesystem_store_datadir = /var/lib/glance/images\n",
               [Store(UNSET_STORE, "[glance_store] filesystem_store_datadir = "
                      "/var/lib/glance/images", "/var/lib/glance/images")]),
    "legacy": ("[glance_store]\nstores = file,http\ndefault_store = file\n"
               "filesystem_store_datadir = /srv/glance/\n",
               [Store("[glance_store] default_store = file",
                      "[glance_store] filesystem_store_datadir = /srv/glance/",
                      "/srv/glance/")]),
    # several directories with priorities (a multi-valued option: the key repeats)
    "legacy-datadirs": ("[glance_store]\ndefault_store=file\n"
                        "filesystem_store_datadirs = /srv/a:200\nfilesystem_store_datadirs=/srv/b\n"
                        "filesystem_store_datadir = /ignored\n",
                        [Store("[glance_store] default_store = file",
                               "[glance_store] filesystem_store_datadirs = /srv/a:200", "/srv/a"),
                         Store("[glance_store] default_store = file",
                               "[glance_store] filesystem_store_datadirs = /srv/b", "/srv/b")]),
    # uploads go to default_store only: a file store merely enabled keeps nothing new
    "legacy-rbd": ("[glance_store]\nstores = file,rbd\ndefault_store = rbd\n", []),
    "legacy-swift": ("[glance_store]\ndefault_store = swift\n", []),
    # before glance_store (grizzly), the options lived in [DEFAULT]
    "grizzly": ((FIXTURES / "grizzly/orig/etc/glance/glance-api.conf").read_text(),
                [Store("[DEFAULT] default_store = file",
                       "[DEFAULT] filesystem_store_datadir = /var/lib/glance/images/",
                       DEFAULT_DIR)]),
    "modern-fixture": ((FIXTURES / "modern/orig/etc/glance/glance-api.conf").read_text(),
                       [Store("[glance_store] default_store = file",
                              "[glance_store] filesystem_store_datadir = /var/lib/glance/images/",
                              DEFAULT_DIR)]),
    # multi-store: every enabled file backend (a client may upload to any), each with its own
    # section; the legacy default_store is ignored
    "multi-store": ("[DEFAULT]\nenabled_backends = fast:file, ceph:rbd,cheap:file\n"
                    "[glance_store]\ndefault_backend = ceph\ndefault_store = rbd\n"
                    "[fast]\nfilesystem_store_datadir = /srv/fast\n[cheap]\n",
                    [Store("[DEFAULT] enabled_backends = fast:file, ceph:rbd,cheap:file "
                           "(backend fast is a file store)",
                           "[fast] filesystem_store_datadir = /srv/fast", "/srv/fast"),
                     Store("[DEFAULT] enabled_backends = fast:file, ceph:rbd,cheap:file "
                           "(backend cheap is a file store)", UNSET_DIR, DEFAULT_DIR)]),
    "multi-store-no-file": ("[DEFAULT]\nenabled_backends = ceph:rbd, objects:swift\n"
                            "[glance_store]\ndefault_backend = ceph\ndefault_store = file\n", []),
}


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_glance_stores_of_every_layout(case: str) -> None:
    text, expected = LAYOUT_CASES[case]
    assert glance_stores(text, GLANCE) == expected


def test_a_malformed_enabled_backends_names_the_file_and_the_entry() -> None:
    text = "[DEFAULT]\nenabled_backends = fast:file, ceph\n"
    with pytest.raises(ValueError, match=re.escape(
            f"{CONF}: [DEFAULT] enabled_backends = fast:file, ceph: 'ceph' is not name:type")):
        glance_stores(text, GLANCE)


# -- which filesystem holds a directory, and whether every node shares it ---------------------

@pytest.mark.parametrize(("fstype", "shared"), [
    ("nfs", True), ("nfs4", True), ("ceph", True), ("fuse.ceph-fuse", True),
    ("glusterfs", True), ("fuse.glusterfs", True), ("ocfs2", True), ("gfs2", True),
    ("cifs", True), ("lustre", True), ("ext4", False), ("xfs", False), ("btrfs", False),
    ("zfs", False), ("tmpfs", False), ("overlay", False), ("fuse.sshfs", False), ("", False),
])
def test_network_and_cluster_filesystems_are_shared(fstype: str, shared: bool) -> None:
    assert is_shared_filesystem(fstype) is shared


MOUNTS = ("/dev/vda1 / ext4 rw 0 0\n/dev/vdb1 /var xfs rw 0 0\n"
          "nas:/images /var/lib/glance/images nfs4 rw 0 0\n"
          "tmpfs /var/lib/glance/images tmpfs rw 0 0\n"
          "nas:/x /mnt/my\\040images nfs rw 0 0\n")


@pytest.mark.parametrize(("path", "fstype"), [
    ("/var/lib/glance/images", "tmpfs"),  # the last mount on a target hides the earlier
    ("/var/lib/glance/images/a/b", "tmpfs"),
    ("/var/lib/glancex", "xfs"),  # a prefix of the name is not a parent directory
    ("/var", "xfs"), ("/srv/images", "ext4"), ("/mnt/my images/x", "nfs"),
])
def test_the_longest_mount_holding_a_path_names_its_filesystem(path: str, fstype: str) -> None:
    seen = StorageSeen(None, {}, parse_mounts(MOUNTS))
    assert seen.filesystem(path) == fstype


def test_a_path_without_a_mount_table_has_no_filesystem() -> None:
    assert StorageSeen(None, {}, ()).filesystem("/var/lib/glance/images") == ""
    assert parse_mounts("garbage\n\n") == ()
    assert parse_mounts("a /b c\n") == (Mount("/b", "c"),)


GLANCE_STORE = LAYOUTS["glance_store"]


def probe_in_sh(conf: Path) -> StorageSeen:
    script = storage_probe(str(conf), GLANCE_STORE.keys, GLANCE_STORE.path_keys, DEFAULT_DIR)
    ran = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True,
                         timeout=30)
    return parse_storage(Probe(ran.stdout))


def test_the_probe_runs_in_sh_sends_only_the_store_settings_and_follows_symlinks(
        tmp_path: Path) -> None:
    (tmp_path / "nas").mkdir()
    (tmp_path / "images").symlink_to(tmp_path / "nas")
    conf = tmp_path / "glance api.conf"
    conf.write_text("[database]\nconnection = postgresql://glance:Secret-42@db/glance\n"
                    "[keystone_authtoken]\npassword = Secret-43\n"
                    f"[glance_store]\r\nfilesystem_store_datadir = {tmp_path}/images/ \r\n"
                    f"  filesystem_store_datadirs={tmp_path}/images:100\n"
                    "#filesystem_store_datadir = /commented\nstores = file\n"
                    "[DEFAULT]\nenabled_backends_x = no\n")
    seen = probe_in_sh(conf)
    # section headers and the keys the layout reads, nothing else (no password leaves)
    assert seen.text == ("[database]\n[keystone_authtoken]\n[glance_store]\r\n"
                         f"filesystem_store_datadir = {tmp_path}/images/ \r\n"
                         f"  filesystem_store_datadirs={tmp_path}/images:100\n[DEFAULT]\n")
    assert seen.real_paths == {DEFAULT_DIR: "/var/lib/glance/images",
                               f"{tmp_path}/images/": f"{tmp_path}/nas",
                               f"{tmp_path}/images": f"{tmp_path}/nas"}
    assert seen.mounts and seen.filesystem("/") == seen.mounts[
        max(i for i, m in enumerate(seen.mounts) if m.target == "/")].fstype


def test_the_probe_tells_an_absent_file_from_an_empty_one(tmp_path: Path) -> None:
    for path, text in ((tmp_path / "absent.conf", None), (tmp_path / "empty.conf", "")):
        if text is not None:
            path.write_text(text)
        assert probe_in_sh(path).text == text


# -- the judgement and the refusal -----------------------------------------------------------

DEBIAN = LAYOUT_CASES["debian"][0]


def seen_with(config: str | None, mounts: str = LOCAL_DISK,
              real_paths: dict[str, str] | None = None) -> StorageSeen:
    return parse_storage(Probe(storage_answer(config, mounts, real_paths)))


def test_a_directory_on_a_shared_filesystem_passes() -> None:
    nfs = LOCAL_DISK + "nas:/glance /var/lib/glance/images nfs4 rw 0 0\n"
    assert local_stores(seen_with(DEBIAN, nfs), GLANCE) == []
    # through a symlink into a CephFS mount
    ceph = LOCAL_DISK + "10.0.0.5:/ /mnt/cephfs ceph rw 0 0\n"
    linked = {"/var/lib/glance/images": "/mnt/cephfs/glance"}
    assert local_stores(seen_with(DEBIAN, ceph, linked), GLANCE) == []


def test_a_directory_on_a_local_filesystem_is_named_with_its_settings() -> None:
    assert local_stores(seen_with(DEBIAN), GLANCE) == [
        f"{CONF}: {UNSET_STORE}, [glance_store] filesystem_store_datadir = "
        "/var/lib/glance/images on a local filesystem (ext4)"]
    linked = {"/var/lib/glance/images": "/srv/images"}
    local = LOCAL_DISK + "/dev/vdc /srv xfs rw 0 0\n"
    assert local_stores(seen_with(DEBIAN, local, linked), GLANCE) == [
        f"{CONF}: {UNSET_STORE}, [glance_store] filesystem_store_datadir = "
        "/var/lib/glance/images (really /srv/images) on a local filesystem (xfs)"]
    assert local_stores(seen_with(DEBIAN, ""), GLANCE) == [
        f"{CONF}: {UNSET_STORE}, [glance_store] filesystem_store_datadir = "
        "/var/lib/glance/images on a filesystem of unknown type"]


def test_an_absent_config_or_a_store_elsewhere_passes() -> None:
    assert local_stores(seen_with(None), GLANCE) == []
    assert local_stores(seen_with("[glance_store]\ndefault_store = rbd\n"), GLANCE) == []


def test_the_refusal_names_host_file_setting_reason_and_both_fixes() -> None:
    inv = load_inventory(COLOCATED)
    check = shared_state_check("glance", GLANCE)
    ctx = ctx_for(inv, "rhos6-node1", profile_for("debian", "systemd"), "ctl.shared-state")
    seen = check.read(ctx, Probe(storage_answer(DEBIAN)))
    assert not check.done(ctx, seen)
    refusal = check.judge(ctx, seen)
    assert refusal == (
        "glance keeps its images on the node that receives them, and the original controller "
        "rhos6-node1 keeps them on a filesystem of its own:\n"
        f"  {CONF}: {UNSET_STORE}, [glance_store] filesystem_store_datadir = "
        "/var/lib/glance/images on a local filesystem (ext4)\n"
        "Scaled out to several controllers, an image uploaded through the VIP is stored on the "
        "one controller that received it, and the others serve it empty (HTTP 204, 0 bytes).\n"
        "Fix: mount one shared filesystem (NFS, CephFS, GlusterFS) at that directory on every "
        "controller, or store the images in Swift or Ceph RBD instead of the file store.\n"
        "Or, if that directory is already shared or replicated by other means, confirm it in "
        'the inventory: [services] shared_storage = ["glance"].')
    (command,) = check.apply(ctx, seen)
    assert command.shown() == "stop: glance's images are on one node's disk only"
    ran = subprocess.run(["/bin/sh", "-c", command.script], capture_output=True, text=True,
                         check=False, timeout=30)
    assert (ran.returncode, ran.stdout, ran.stderr) == (1, "", f"{refusal}\n")
    assert check.preview(ctx, seen).startswith("  NOT MET: glance keeps its images")


def test_every_layout_in_the_catalog_has_a_reader() -> None:
    catalog = load_catalog()
    layouts = {e.layout for s in catalog.services.values() for e in s.node_local}
    assert layouts and layouts <= set(LAYOUTS)
    with pytest.raises(CatalogError, match="unknown layout 'cinder_backends'"):
        shared_state_check("glance", replace(GLANCE, layout="cinder_backends"))


# -- the step: first, read-only, on the original, unless confirmed ----------------------------

def colocated(tmp_path: Path, *changes: tuple[str, str]) -> Inventory:
    path = tmp_path / "hosts.toml"
    path.write_text(edit(COLOCATED.read_text(), *changes))
    return load_inventory(path)


def test_the_check_is_the_first_step_and_runs_only_on_the_original(tmp_path: Path) -> None:
    inv = colocated(tmp_path)
    assert "glance" in inv.services and not inv.shared_storage
    runbook = build_controllers_runbook(inv, families(inv))
    first = runbook.steps[0]
    assert (first.id, first.hosts, first.read_only) == (
        "ctl.shared-state", ("rhos6-node1",), True)
    (check,) = first.ops["rhos6-node1"]
    assert isinstance(check, SharedState)
    assert [s.id for s in runbook.steps].count("ctl.shared-state") == 1
    # a run of other services does not check Glance's store
    others = build_controllers_runbook(inv, families(inv), only=("keystone",))
    assert "ctl.shared-state" not in [s.id for s in others.steps]


def test_a_confirmed_service_is_not_checked(tmp_path: Path) -> None:
    inv = colocated(tmp_path, ("[services]\n", '[services]\nshared_storage = ["glance"]\n'))
    assert inv.shared_storage == ("glance",)
    runbook = build_controllers_runbook(inv, families(inv))
    assert "ctl.shared-state" not in [s.id for s in runbook.steps]


# -- a run: the refusal comes before anything changes anywhere -------------------------------

def refusing_world(inv: Inventory) -> FakeTransport:
    """The original keeps Glance's images on its own disk; any command but the probes and
    the refusal itself fails the test."""
    transport = FakeTransport()
    original = inv.original.name

    def probe(host: str, script: str) -> tuple[int, str] | None:
        if host == original and script.startswith("echo '@@storage config'"):
            return 0, storage_answer(DEBIAN)
        return None

    def refusal(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str] | None:
        if host == original and script.startswith("echo ") and script.endswith(" >&2; exit 1"):
            return 1, "", "glance keeps its images...\n"
        return None

    transport.on_probe(probe)
    transport.on(refusal)
    return transport


def test_a_run_stops_at_the_check_with_nothing_changed(tmp_path: Path) -> None:
    inv = colocated(tmp_path)
    transport = refusing_world(inv)
    engine = Engine(transport, {n.name: n for n in inv.nodes}, inv.platform, lambda e: None)
    engine.apply_facts({n.name: {"platform": "el7", "init": "systemd"} for n in inv.nodes})
    runbook = build_controllers_runbook(inv, families(inv))
    journal = Journal(tmp_path / "run.json", "r1", "controllers", "deploy", str(inv.path),
                      inv.fingerprint, now())
    with pytest.raises(StepFailed) as failed:
        engine.run(runbook, journal)
    assert failed.value.step_id == "ctl.shared-state"
    assert "stop: glance's images are on one node's disk only" in str(failed.value)
    assert {host for host, _ in transport.calls} == {"rhos6-node1"}
    assert len(transport.calls) == 2  # one batched probe, then the refusal
    assert not any(journal.changed_steps(n.name) for n in inv.nodes)
    assert journal.status == "failed"


def test_the_operator_reads_the_refusal_and_no_resume_advice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(edit(COLOCATED.read_text(),
                          ("[ssh]\n", f'[ssh]\nknown_hosts = "{known_hosts}"\n')))
    detect = "id=rhel\nlike=fedora\nversion=7.9\ninit=systemd\n"

    def world(inv: Inventory) -> FakeTransport:
        transport = refusing_world(inv)
        transport.on(lambda host, script, stdin: (0, detect, "")
                     if script.startswith("if [ -r /etc/os-release ]") else None, first=True)
        return transport

    def deployment(path: str) -> Deployment:
        return Deployment(path, transport_factory=world)

    monkeypatch.setattr(commands, "Deployment", deployment)
    monkeypatch.setenv("HADEPLOY_STATS_PASSWORD", "not-a-real-one")
    code = commands.deploy_controllers(hosts=str(hosts), yes=True)
    out = capsys.readouterr().out
    assert code == 1
    assert "step ctl.shared-state failed on rhos6-node1" in out, out
    assert "This run changed nothing on any host. Fix the cause and run the same command " \
           "again." in out
    assert "--resume" not in out and "rollback" not in out
