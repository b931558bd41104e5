"""Phase `controllers` (guide 1, "Configure OpenStack Controller Nodes"): the runbook per service.

Every non-lb_only catalog service, on every platform (el6..el9, Debian with either init) and
both releases, in both topologies: which steps it has and in which order, on which hosts each
runs, the exact package command, the service commands, the tree copy's commands, the rc-file
edits, and the plans `invoke deploy-controllers --offline` and `Engine.plan` print. Exact
config edits are in test_controllers_edits.py, Keystone endpoints in test_endpoints.py.

The expectations are written out here from the guide and the distributions' packages, not
read from the catalog, so a catalog change that breaks a platform fails a test.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from hadeploy import framing
from hadeploy.catalog import Family, load_catalog
from hadeploy.engine import Engine, PlanItem
from hadeploy.errors import HadeployError
from hadeploy.facts.files import FileState
from hadeploy.facts.trees import manifest_script
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.ops import (
    AnyOp,
    Command,
    DrainedRestart,
    FileEdit,
    HostContext,
    PackagesInstalled,
    Probe,
    Requirement,
    ServiceRunning,
    TreeCopied,
)
from hadeploy.ops.endpoints import EndpointsOnVip
from hadeploy.platforms import profile_for
from hadeploy.render import render_haproxy_cfg
from hadeploy.runbook.api_answers import api_probe_script
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeTransport
from tests.unit.controller_inventories import (
    ADDRESSES,
    CONTROLLERS,
    FIXTURES,
    LB_ONLY,
    RELEASE_SERVICES,
    RELEASES,
    TOPOLOGIES,
    Inventories,
    ctx_for,
    families,
    inventory_text,
)
from tests.unit.examples import COLOCATED, HOSTS_EXAMPLE, ROOT
from tests.unit.storage_world import storage_answer

PLATFORMS = ("el6", "el7", "el8", "el9", "debian")
# Platform as the runbook sees it: (inventory platform, init system found on the host).
PROFILES = {
    "el6": ("el6", "sysv"), "el7": ("el7", "systemd"), "el8": ("el8", "systemd"),
    "el9": ("el9", "systemd"), "debian-systemd": ("debian", "systemd"),
    "debian-sysv": ("debian", "sysv"),
}

# -- what each service is, from guide 1 and the distributions' packages ----------------------

Pkgs = tuple[tuple[str, ...], tuple[str, ...]]  # packages, daemons (in start order)


def _any(el: Pkgs, debian: Pkgs) -> dict[tuple[str, Family], Pkgs]:
    by_family: tuple[tuple[Family, Pkgs], ...] = (("el", el), ("debian", debian))
    return {(r, f): v for r in RELEASES for f, v in by_family}


VARIANTS: dict[str, dict[tuple[str, Family], Pkgs]] = {
    "keystone": {  # guide: yum install openstack-keystone; modern RDO runs it in httpd
        ("grizzly", "el"): (("openstack-keystone",), ("openstack-keystone",)),
        ("modern", "el"): (("openstack-keystone", "httpd", "mod_wsgi"), ("httpd",)),
        ("grizzly", "debian"): (("keystone",), ("keystone",)),
        ("modern", "debian"): (("keystone",), ("keystone",)),
    },
    "quantum": {  # guide: openstack-quantum and the L2 plugin; service quantum-server
        ("grizzly", "el"): (("openstack-quantum", "openstack-quantum-openvswitch"),
                            ("quantum-server",)),
        ("grizzly", "debian"): (("quantum-server", "quantum-plugin-openvswitch"),
                                ("quantum-server",)),
    },
    "neutron": {
        ("modern", "el"): (("openstack-neutron", "openstack-neutron-ml2"), ("neutron-server",)),
        # Debian: neutron-server is a metapackage (neutron-api + neutron-rpc-server, which
        # are the daemons); ML2 ships in neutron-common (neutron-plugin-ml2 is virtual).
        ("modern", "debian"): (("neutron-server", "neutron-common"),
                               ("neutron-rpc-server", "neutron-api")),
    },
    "glance": {  # guide: registry then api
        ("grizzly", "el"): (("openstack-glance",),
                            ("openstack-glance-registry", "openstack-glance-api")),
        ("modern", "el"): (("openstack-glance",), ("openstack-glance-api",)),
        ("grizzly", "debian"): (("glance-api", "glance-registry"),
                                ("glance-registry", "glance-api")),
        ("modern", "debian"): (("glance-api",), ("glance-api",)),
    },
    "nova": {  # guide: openstack-nova-api and the cinder client
        ("grizzly", "el"): (("openstack-nova-api", "python-cinderclient"), ("openstack-nova-api",)),
        # modern: the conductor and the scheduler run on every controller too
        ("modern", "el"): (("openstack-nova-api", "openstack-nova-conductor",
                            "openstack-nova-scheduler", "python3-cinderclient"),
                           ("openstack-nova-api", "openstack-nova-conductor",
                            "openstack-nova-scheduler")),
        ("grizzly", "debian"): (("nova-api", "python-cinderclient"), ("nova-api",)),
        # Debian runs the metadata API (8775) as its own daemon, shipped in nova-api.
        ("modern", "debian"): (("nova-api", "nova-conductor", "nova-scheduler",
                                "python3-cinderclient"),
                               ("nova-api", "nova-api-metadata", "nova-conductor",
                                "nova-scheduler")),
    },
    "placement": {  # RDO runs it in httpd; Debian under uwsgi with its own init script
        ("modern", "el"): (("openstack-placement-api",), ("httpd",)),
        ("modern", "debian"): (("placement-api",), ("placement-api",)),
    },
    "cinder": {
        ("grizzly", "el"): (("openstack-cinder",), ("openstack-cinder-api",)),
        ("modern", "el"): (("openstack-cinder",),
                           ("openstack-cinder-api", "openstack-cinder-scheduler")),
        ("grizzly", "debian"): (("cinder-api",), ("cinder-api",)),
        ("modern", "debian"): (("cinder-api", "cinder-scheduler"),
                               ("cinder-api", "cinder-scheduler")),
    },
    "swift": _any((("openstack-swift-proxy",), ("openstack-swift-proxy",)),
                  (("swift-proxy",), ("swift-proxy",))),
    "novnc": {
        **_any((("openstack-nova-novncproxy",), ("openstack-nova-novncproxy",)),
               (("nova-novncproxy",), ("nova-novncproxy",))),
        # Debian: nova-novncproxy is a virtual package of nova-consoleproxy.
        ("modern", "debian"): (("nova-consoleproxy",), ("nova-novncproxy",)),
    },
    "horizon": {
        **_any((("openstack-dashboard",), ("httpd",)),
               (("openstack-dashboard",), ("apache2",))),
        # Debian: the apache site ships apart; the memcached backend packstack configures.
        ("modern", "debian"): (("openstack-dashboard-apache", "python3-pymemcache"),
                               ("apache2",)),
    },
    "heat": {  # modern: heat-engine does the work the APIs queue, on every controller
        ("grizzly", "el"): (("openstack-heat-api", "openstack-heat-api-cfn"),
                            ("openstack-heat-api", "openstack-heat-api-cfn")),
        ("modern", "el"): (("openstack-heat-api", "openstack-heat-api-cfn",
                            "openstack-heat-engine"),
                           ("openstack-heat-api", "openstack-heat-api-cfn",
                            "openstack-heat-engine")),
        ("grizzly", "debian"): (("heat-api", "heat-api-cfn"), ("heat-api", "heat-api-cfn")),
        ("modern", "debian"): (("heat-api", "heat-api-cfn", "heat-engine"),
                               ("heat-api", "heat-api-cfn", "heat-engine")),
    },
    "ceilometer": {  # its API was removed in Queens: grizzly only
        ("grizzly", "el"): (("openstack-ceilometer-api",), ("openstack-ceilometer-api",)),
        ("grizzly", "debian"): (("ceilometer-api",), ("ceilometer-api",)),
    },
}

ETC = {"keystone": "/etc/keystone", "quantum": "/etc/quantum", "neutron": "/etc/neutron",
       "glance": "/etc/glance", "nova": "/etc/nova", "cinder": "/etc/cinder",
       "swift": "/etc/swift", "novnc": "", "horizon": "/etc/openstack-dashboard",
       "heat": "/etc/heat", "ceilometer": "/etc/ceilometer", "placement": "/etc/placement"}

# Services whose state stays on the node that serves it (Glance's file store): the run
# first checks, read-only on the original, that it is on shared storage.
NODE_LOCAL = ("glance",)

# Files whose keys the original points at the VIP, in the guide's order.
VIP_FILES: dict[tuple[str, str], tuple[str, ...]] = {
    ("quantum", "grizzly"): ("/etc/quantum/quantum.conf", "/etc/quantum/api-paste.ini",
                             "/etc/quantum/metadata_agent.ini"),
    ("neutron", "modern"): ("/etc/neutron/neutron.conf", "/etc/neutron/metadata_agent.ini"),
    ("glance", "grizzly"): ("/etc/glance/glance-api.conf", "/etc/glance/glance-registry.conf"),
    ("glance", "modern"): ("/etc/glance/glance-api.conf",),
    ("nova", "grizzly"): ("/etc/nova/nova.conf", "/etc/nova/api-paste.ini"),
    ("nova", "modern"): ("/etc/nova/nova.conf",),
    ("cinder", "grizzly"): ("/etc/cinder/cinder.conf", "/etc/cinder/api-paste.ini"),
    ("cinder", "modern"): ("/etc/cinder/cinder.conf",),
    ("placement", "modern"): ("/etc/placement/placement.conf",),
    ("swift", "modern"): ("/etc/swift/proxy-server.conf",),
    ("heat", "modern"): ("/etc/heat/heat.conf",),
    # OPENSTACK_HOST: Debian's and RDO's names of Horizon's settings file
    ("horizon", "modern"): ("/etc/openstack-dashboard/local_settings.py",
                            "/etc/openstack-dashboard/local_settings"),
}
# Files with host-specific keys (bind addresses, my_ip, ...).
HOST_FILES: dict[tuple[str, str], tuple[str, ...]] = {
    **{("keystone", r): ("/etc/keystone/keystone.conf",) for r in RELEASES},
    ("quantum", "grizzly"): ("/etc/quantum/quantum.conf",
                             "/etc/quantum/plugins/openvswitch/ovs_quantum_plugin.ini"),
    ("neutron", "modern"): ("/etc/neutron/neutron.conf",
                            "/etc/neutron/plugins/ml2/openvswitch_agent.ini"),
    ("glance", "grizzly"): ("/etc/glance/glance-api.conf", "/etc/glance/glance-registry.conf"),
    ("glance", "modern"): ("/etc/glance/glance-api.conf",),
    **{("nova", r): ("/etc/nova/nova.conf",) for r in RELEASES},
    **{("cinder", r): ("/etc/cinder/cinder.conf",) for r in RELEASES},
    **{("swift", r): ("/etc/swift/proxy-server.conf",) for r in RELEASES},
    **{("heat", r): ("/etc/heat/heat.conf",) for r in RELEASES},
    # nova-novncproxy's listen address (nova.conf, which the nova service copies)
    **{("novnc", r): ("/etc/nova/nova.conf",) for r in RELEASES},
    ("ceilometer", "grizzly"): ("/etc/ceilometer/ceilometer.conf",),
}
PORTS: dict[tuple[str, str], tuple[int, ...]] = {
    # modern: one Keystone port, no glance-registry, no heat-cloudwatch, no ceilometer API
    ("keystone", "grizzly"): (5000, 35357),
    ("keystone", "modern"): (5000,),
    ("quantum", "grizzly"): (9696,),
    ("neutron", "modern"): (9696,),
    ("glance", "grizzly"): (9191, 9292),
    ("glance", "modern"): (9292,),
    ("nova", "grizzly"): (8773, 8774, 8775),
    ("nova", "modern"): (8774, 8775),
    ("placement", "modern"): (8778,),
    **{("cinder", r): (8776,) for r in RELEASES},
    **{("swift", r): (8080,) for r in RELEASES},
    **{("novnc", r): (6080,) for r in RELEASES},
    **{("horizon", r): (80,) for r in RELEASES},
    ("heat", "grizzly"): (8000, 8003, 8004),
    ("heat", "modern"): (8000, 8004),
    ("ceilometer", "grizzly"): (8777,),
}

def ops_of(step: Step, host: str) -> tuple[AnyOp, ...]:
    return step.ops[host]


def host_script(op: AnyOp, ctx: HostContext) -> str:
    """The probe `op` runs on the host (these operations all ask the host)."""
    script = op.probe(ctx)
    assert script is not None
    return script


def by_id(runbook: Runbook) -> dict[str, Step]:
    return {s.id: s for s in runbook.steps}


def test_the_expectations_cover_every_scaled_out_catalog_service() -> None:
    catalog = load_catalog()
    scaled = {n for n in catalog.names() if not catalog[n].lb_only}
    assert scaled == set(VARIANTS) == set(ETC)
    assert {n for n in catalog.names() if catalog[n].lb_only} == set(LB_ONLY)
    for name in scaled:
        assert set(catalog[name].releases) == {r for r in RELEASES
                                               if name in RELEASE_SERVICES[r]}


def test_derived_inventories_load_in_every_shape(inventories: Inventories) -> None:
    for release in RELEASES:
        for topology in TOPOLOGIES:
            inv = inventories(release, "el7", topology)
            assert inv.topology == topology and inv.release == release
            assert [c.name for c in inv.controllers] == list(CONTROLLERS[release])
            assert str(inv.vip.address) == ADDRESSES[release][0]
            assert inv.original.name == CONTROLLERS[release][0]
            assert all((c.api_bind is not None) == (topology == "colocated")
                       for c in inv.controllers)


# -- the runbook's shape: every service x platform x release x topology ----------------------

# Co-located, the files outside the ini keys that set where each API listens (Debian 12's
# packages: the openstack-pkg-tools uwsgi init scripts read /etc/default/<NAME> after computing
# `--http-socket :PORT`; neutron-api's script is NAME=neutron-server; apache's ports.conf).
_HTTPD_KEYSTONE = ("/etc/httpd/conf.d/wsgi-keystone.conf", "/etc/httpd/conf/ports.conf",
                   "/etc/httpd/conf.d/10-keystone_wsgi.conf")
#: Directories copied from the original besides the service's etc tree, per family.
COPIES: dict[tuple[str, str, Family], tuple[str, ...]] = {
    ("modern", "horizon", "debian"): ("/etc/apache2/sites-enabled",),
}
#: /etc/default files a new controller sets as the original has them (release, service,
#: family).
SHELL_VARS: dict[tuple[str, str, Family], tuple[str, ...]] = {
    ("modern", "novnc", "debian"): ("/etc/default/nova-consoleproxy",),
}
BIND_FILES: dict[tuple[str, str, Family], tuple[str, ...]] = {
    ("modern", "keystone", "debian"): ("/etc/default/keystone",),
    ("modern", "keystone", "el"): _HTTPD_KEYSTONE,
    ("modern", "neutron", "debian"): ("/etc/default/neutron-server",),
    ("modern", "nova", "debian"): ("/etc/default/nova-api", "/etc/default/nova-api-metadata"),
    ("modern", "cinder", "debian"): ("/etc/default/cinder-api",),
    ("modern", "heat", "debian"): ("/etc/default/heat-api", "/etc/default/heat-api-cfn"),
    ("modern", "placement", "debian"): ("/etc/default/placement-api",),
    ("modern", "placement", "el"): ("/etc/httpd/conf.d/00-placement-api.conf",),
    **{(r, "horizon", "debian"): ("/etc/apache2/ports.conf",) for r in RELEASES},
    **{(r, "horizon", "el"): ("/etc/httpd/conf/httpd.conf", "/etc/httpd/conf/ports.conf")
       for r in RELEASES},
}
MATRIX = [(release, service, platform, topology)
          for release in RELEASES for service in RELEASE_SERVICES[release]
          for platform in PLATFORMS for topology in TOPOLOGIES]


def _family(platform: str) -> Family:
    return "debian" if platform == "debian" else "el"


@pytest.mark.parametrize("service", ["keystone", "neutron", "nova"])
def test_colocated_plans_the_binds_of_debian_uwsgi_apis(inventories: Inventories,
                                                        service: str) -> None:
    inv = inventories("modern", "debian", "colocated")
    runbook = build_controllers_runbook(inv, families(inv), only=(service,))
    bind = by_id(runbook)[f"ctl.{service}.bind"]
    assert bind.hosts == tuple(c.name for c in inv.controllers)


def test_colocated_refuses_a_variant_that_cannot_bind(
        inventories: Inventories, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()
    keystone = catalog["keystone"]
    wildcard = tuple(replace(v, binds=(), binds_all="listens on every address, always")
                     if v.family == "debian" else v for v in keystone.variants)
    patched = replace(catalog, services={**catalog.services,
                                         "keystone": replace(keystone, variants=wildcard)})
    monkeypatch.setattr("hadeploy.runbook.controllers.load_catalog", lambda: patched)
    inv = inventories("modern", "debian", "colocated")
    with pytest.raises(HadeployError, match=r"(?s)own address.*- keystone on debian: "
                       r"listens on every address, always.*topology = \"dedicated\""):
        build_controllers_runbook(inv, families(inv), only=("keystone",))


@pytest.mark.parametrize(("release", "service", "platform", "topology"), MATRIX)
def test_steps_order_and_hosts(inventories: Inventories, release: str, service: str,
                               platform: str, topology: str) -> None:
    inv = inventories(release, platform, topology)
    runbook = build_controllers_runbook(inv, families(inv), only=(service,))
    original, *new = CONTROLLERS[release]
    prefix = f"ctl.{service}"
    expected = ["ctl.shared-state"] if service in NODE_LOCAL else []
    expected.append("ctl.packages")
    if (service, release) in VIP_FILES:
        expected.append(f"{prefix}.vip-keys")
    if ETC[service]:
        expected.append(f"{prefix}.copy")
    if (service, release) in HOST_FILES:
        expected.append(f"{prefix}.host-keys")
    if SHELL_VARS.get((release, service, _family(platform))):
        expected.append(f"{prefix}.shell-vars")
    binds = BIND_FILES.get((release, service, _family(platform)), ())
    if topology == "colocated" and binds:
        expected.append(f"{prefix}.bind")
    expected += [f"{prefix}.services", f"{prefix}.verify", "ctl.endpoints", "ctl.rc-files"]
    assert [s.id for s in runbook.steps] == expected
    assert runbook.phase == "controllers"

    steps = by_id(runbook)
    every = [original, *new]
    assert steps["ctl.packages"].hosts == tuple(new)
    if f"{prefix}.vip-keys" in steps:
        assert steps[f"{prefix}.vip-keys"].hosts == (original,)
        paths = tuple(op.path for op in ops_of(steps[f"{prefix}.vip-keys"], original)
                      if isinstance(op, FileEdit))
        assert paths == VIP_FILES[(service, release)]
    if f"{prefix}.copy" in steps:
        copy = steps[f"{prefix}.copy"]
        assert copy.hosts == tuple(new)
        copies = (ETC[service], *COPIES.get((release, service, _family(platform)), ()))
        for host in new:
            ops = ops_of(copy, host)
            assert all(isinstance(op, TreeCopied) and op.source_host == original for op in ops)
            assert tuple(op.path for op in ops if isinstance(op, TreeCopied)) == copies
    if f"{prefix}.shell-vars" in steps:
        assert steps[f"{prefix}.shell-vars"].hosts == tuple(new)
        for host in new:
            assert tuple(op.path for op in ops_of(steps[f"{prefix}.shell-vars"], host)
                         if isinstance(op, FileEdit)) == SHELL_VARS[(release, service, "debian")]
    if f"{prefix}.host-keys" in steps:
        host_keys = steps[f"{prefix}.host-keys"]
        # Co-located: every controller's APIs bind to its own address, the original's too.
        assert host_keys.hosts == (tuple(every) if topology == "colocated" else tuple(new))
        for host in host_keys.hosts:
            paths = tuple(op.path for op in ops_of(host_keys, host) if isinstance(op, FileEdit))
            assert paths == HOST_FILES[(service, release)]
    if f"{prefix}.bind" in steps:
        for host in every:
            assert tuple(op.path for op in ops_of(steps[f"{prefix}.bind"], host)
                         if isinstance(op, FileEdit)) == binds
    # one at a time, the new ones first: they take the original's traffic while it restarts
    assert steps[f"{prefix}.services"].hosts == (*new, original)
    verify = steps[f"{prefix}.verify"]
    assert verify.hosts == tuple(every) and verify.read_only
    assert not any(s.read_only for s in runbook.steps
                   if s is not verify and s.id != "ctl.shared-state")
    if service in NODE_LOCAL:
        shared = steps["ctl.shared-state"]
        assert shared.hosts == (original,) and shared.read_only
    assert steps["ctl.endpoints"].hosts == (original,)
    assert steps["ctl.rc-files"].hosts == (original,)


@pytest.mark.parametrize("release", RELEASES)
def test_every_service_in_balance_order_and_lb_only_services_skipped(
        inventories: Inventories, release: str) -> None:
    inv = inventories(release, "el7", "dedicated")
    runbook = build_controllers_runbook(inv, families(inv))
    services = list(dict.fromkeys(s.id.split(".")[1] for s in runbook.steps
                                  if s.id.count(".") == 2))
    assert services == list(RELEASE_SERVICES[release])
    assert [s.id for s in runbook.steps][-2:] == ["ctl.endpoints", "ctl.rc-files"]
    assert not any(lb in s.id for s in runbook.steps for lb in LB_ONLY)
    ids = [s.id for s in runbook.steps]
    assert len(ids) == len(set(ids))


def test_only_limits_the_services_but_keeps_endpoints_and_rc_files(
        inventories: Inventories) -> None:
    inv = inventories("grizzly", "el6", "dedicated")
    runbook = build_controllers_runbook(inv, families(inv), only=("glance", "keystone"))
    ids = [s.id for s in runbook.steps]
    # balance order (keystone first), not the order of `only`
    assert ids.index("ctl.keystone.copy") < ids.index("ctl.glance.copy")
    assert {i.split(".")[1] for i in ids if i.count(".") == 2} == {"keystone", "glance"}


# -- packages ----------------------------------------------------------------------------------

INSTALL = {
    "el6": "yum install -y -q", "el7": "yum install -y -q", "el8": "dnf install -y -q",
    "el9": "dnf install -y -q", "debian-systemd": "DEBIAN_FRONTEND=noninteractive apt-get "
    "install -y -q -o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confold",
}
INSTALL["debian-sysv"] = INSTALL["debian-systemd"]
PKG_MATRIX = [(release, service, name) for release in RELEASES
              for service in RELEASE_SERVICES[release] for name in PROFILES]


@pytest.mark.parametrize(("release", "service", "profile_name"), PKG_MATRIX)
def test_package_install_command(inventories: Inventories, release: str, service: str,
                                 profile_name: str) -> None:
    platform, init = PROFILES[profile_name]
    inv = inventories(release, platform, "dedicated")
    family: Family = "debian" if platform == "debian" else "el"
    packages, _ = VARIANTS[service][(release, family)]
    step = by_id(build_controllers_runbook(inv, families(inv), only=(service,)))[
        "ctl.packages"]
    profile = profile_for(platform, init)  # type: ignore[arg-type]
    for host in CONTROLLERS[release][1:]:
        (op,) = ops_of(step, host)
        assert isinstance(op, PackagesInstalled)
        assert op.packages == packages
        ctx = ctx_for(inv, host, profile, step.id)
        probe = host_script(op, ctx)
        assert ("dpkg-query" in probe) == (family == "debian")
        assert ("rpm -q" in probe) == (family == "el")
        assert not op.done(ctx, op.read(ctx, Probe("")))
        (command,) = op.apply(ctx, op.read(ctx, Probe("")))
        install = f"{INSTALL[profile_name]} {' '.join(packages)}"
        assert f"\n{install} >&2" in command.script
        if family == "debian":
            # package scripts must not start an unconfigured API: policy-rc.d says 101
            assert command.summary == install + " (service starts blocked during the install)"
            assert "exit 101" in command.script and "/usr/sbin/policy-rc.d" in command.script
        else:
            assert command.summary == install
            assert "policy-rc.d" not in command.script
        # already installed: nothing to do
        assert op.done(ctx, op.read(ctx, Probe("\n".join(packages) + "\n")))


@pytest.mark.parametrize("release", RELEASES)
def test_one_install_takes_every_services_packages(inventories: Inventories,
                                                   release: str) -> None:
    """The package manager runs once per new controller for the whole phase: every service's
    packages in balance order, each once, every service's /etc tree recorded if it was absent."""
    inv = inventories(release, "debian", "dedicated")
    runbook = build_controllers_runbook(inv, families(inv))
    ids = [s.id for s in runbook.steps]
    assert [i for i in ids if i.endswith(".packages")] == ["ctl.packages"]
    assert ids.index("ctl.packages") < min(i for i, s in enumerate(ids) if s.count(".") == 2)
    wanted = tuple(dict.fromkeys(p for s in RELEASE_SERVICES[release]
                                 for p in VARIANTS[s][(release, "debian")][0]))
    for host in CONTROLLERS[release][1:]:
        (op,) = ops_of(by_id(runbook)["ctl.packages"], host)
        assert isinstance(op, PackagesInstalled) and op.block_service_starts
        assert op.packages == wanted
        assert op.creates == tuple(dict.fromkeys(ETC[s] for s in RELEASE_SERVICES[release]
                                                 if ETC[s]))


def test_only_missing_packages_are_installed(inventories: Inventories) -> None:
    inv = inventories("grizzly", "el6", "dedicated")
    step = by_id(build_controllers_runbook(inv, families(inv), only=("quantum",)))[
        "ctl.packages"]
    (op,) = ops_of(step, "mesa-virt-02")
    ctx = ctx_for(inv, "mesa-virt-02", profile_for("el6"))
    (command,) = op.apply(ctx, op.read(ctx, Probe("openstack-quantum\n")))
    assert command.summary == "yum install -y -q openstack-quantum-openvswitch"
    assert op.intent(ctx, op.read(ctx, Probe("openstack-quantum\n"))) == {
        "kind": "packages", "requested": ["openstack-quantum-openvswitch"]}


# -- services ------------------------------------------------------------------------------------


def _enable(profile_name: str, daemon: str) -> str:
    if profile_name == "el6":
        return f"chkconfig {daemon} on"
    if profile_name == "debian-sysv":
        return (f"update-rc.d {daemon} defaults >/dev/null && "
                f"update-rc.d {daemon} enable >/dev/null")
    return f"systemctl enable {daemon}"


def _action(profile_name: str, daemon: str, verb: str) -> str:
    if profile_name in ("el6", "debian-sysv"):
        return f"service {daemon} {verb}"
    return f"systemctl {verb} {daemon}"


def _local(commands: list[Command]) -> list[Command]:
    """The commands that run on the operation's own host."""
    return [c for c in commands if c.on is None]


def _restart_summary(profile_name: str, service: ServiceRunning) -> str:
    """What a restart of `service` shows: its init's restart, then the wait; under sysv, a
    stop and a start where the catalog says the init script's restart does not work."""
    daemon = service.service
    if service.sysv_stop_start and PROFILES[profile_name][1] == "sysv":  # swift-proxy
        return (f"{_action(profile_name, daemon, 'stop')}, then "
                f"{_action(profile_name, daemon, 'start')} (its init script's restart does "
                "not restart it; then wait until it runs)")
    return f"{_action(profile_name, daemon, 'restart')} (then wait until it runs)"


#: (service, release, family) -> the catalog's workers: daemons on no balanced port, restarted
#: undrained, in the background.
WORKERS: dict[tuple[str, str, Family], tuple[str, ...]] = {
    ("nova", "modern", "el"): ("openstack-nova-conductor", "openstack-nova-scheduler"),
    ("nova", "modern", "debian"): ("nova-conductor", "nova-scheduler"),
    ("neutron", "modern", "debian"): ("neutron-rpc-server",),
    ("cinder", "modern", "el"): ("openstack-cinder-scheduler",),
    ("cinder", "modern", "debian"): ("cinder-scheduler",),
    ("heat", "modern", "el"): ("openstack-heat-engine",),
    ("heat", "modern", "debian"): ("heat-engine",),
}


def _running(op: AnyOp) -> ServiceRunning:
    """The ServiceRunning of a daemon's operation, drained or not."""
    inner = op.service if isinstance(op, DrainedRestart) else op
    assert isinstance(inner, ServiceRunning)
    return inner


@pytest.mark.parametrize(("release", "service", "profile_name"), PKG_MATRIX)
def test_service_commands(inventories: Inventories, release: str, service: str,
                          profile_name: str) -> None:
    platform, init = PROFILES[profile_name]
    family: Family = "debian" if platform == "debian" else "el"
    _, daemons = VARIANTS[service][(release, family)]
    inv = inventories(release, platform, "dedicated")
    step = by_id(build_controllers_runbook(inv, families(inv), only=(service,)))[
        f"ctl.{service}.services"]
    profile = profile_for(platform, init)  # type: ignore[arg-type]
    original, *new = CONTROLLERS[release]
    prefix = f"ctl.{service}"
    workers = WORKERS.get((service, release, family), ())
    in_order = (*workers, *(d for d in daemons if d not in workers))
    assert sorted(in_order) == sorted(daemons)
    for host in (original, *new):
        ops = ops_of(step, host)
        assert tuple(_running(op).service for op in ops) == in_order
        # the workers serve no balanced port: their restarts are not drained
        assert [isinstance(op, DrainedRestart) for op in ops] == \
            [d not in workers for d in in_order]
        # and they restart in the background, beside the APIs' drained restarts
        assert [op.background for op in ops] == [d in workers for d in in_order]
    assert step.serial and step.starts_together  # restarts one at a time, starts at once
    for daemon, op in zip(in_order, ops_of(step, new[0]), strict=True):
        # a new controller: enable and start (the guide's chkconfig on + service start)
        ctx = ctx_for(inv, new[0], profile, step.id, frozenset({f"{prefix}.copy"}))
        fresh = Probe("disabled\nstopped\n")
        assert not op.done(ctx, op.read(ctx, fresh))
        enable, start = _local(op.apply(ctx, op.read(ctx, fresh)))
        assert enable.script == _enable(profile_name, daemon)
        start_command = _action(profile_name, daemon, "start")
        assert start.summary == f"{start_command} (then wait until it runs)"
        assert f"{_action(profile_name, daemon, 'start')} >&2 || true" in start.script
        probe = host_script(op, ctx)
        if profile_name == "el6":
            assert f"chkconfig --list {daemon}" in probe
        elif profile_name == "debian-sysv":
            assert f"/etc/rc2.d/S??{daemon}" in probe
        else:
            assert f"systemctl is-enabled --quiet {daemon}" in probe
        # already running with a freshly copied tree: restart, no enable
        running = Probe("enabled\nrunning\n")
        restart = _local(op.apply(ctx, op.read(ctx, running)))[0]
        assert restart.summary == _restart_summary(profile_name, _running(op))
        assert not op.done(ctx, op.read(ctx, running))
        # a re-run that changed nothing there restarts nothing
        assert op.done(replace(ctx, changed_steps=frozenset({f"{prefix}.vip-keys"})),
                       op.read(ctx, running))
    for op in ops_of(step, original):
        # the original restarts when its VIP keys (or co-located bind keys) changed
        ctx = ctx_for(inv, original, profile, step.id)
        running = Probe("enabled\nrunning\n")
        assert op.done(ctx, op.read(ctx, running))
        assert op.done(replace(ctx, changed_steps=frozenset({f"{prefix}.copy"})),
                       op.read(ctx, running))
        for changed in (f"{prefix}.vip-keys", f"{prefix}.host-keys"):
            changed_ctx = replace(ctx, changed_steps=frozenset({changed}))
            assert not op.done(changed_ctx, op.read(changed_ctx, running))
            commands = op.apply(changed_ctx, op.read(changed_ctx, running))
            restart = _local(commands)[0]
            assert restart.summary == _restart_summary(profile_name, _running(op))
            if not isinstance(op, DrainedRestart):  # a worker: restarted as it is
                assert commands == [restart]
                continue
            # drained first on every balancer, ready again on every balancer after
            lbs = [lb.name for lb in inv.balancers]
            assert [c.on for c in commands] == [*lbs, None, None, *lbs]
            assert commands[len(lbs)] == restart
        # another service's changes are not this one's business
        assert op.done(replace(ctx, changed_steps=frozenset({"ctl.other.vip-keys"})),
                       op.read(ctx, running))


# -- verify ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("release", "service"),
                         [(r, s) for r in RELEASES for s in RELEASE_SERVICES[r]])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_verify_probes_each_controller_and_the_vip(inventories: Inventories, release: str,
                                                   service: str, topology: str) -> None:
    inv = inventories(release, "el7", topology)
    step = by_id(build_controllers_runbook(inv, families(inv), only=(service,)))[
        f"ctl.{service}.verify"]
    vip, addresses = ADDRESSES[release]
    ports = PORTS[(service, release)]
    for host, address in zip(CONTROLLERS[release], addresses, strict=True):
        (op,) = ops_of(step, host)
        assert isinstance(op, Requirement)
        ctx = ctx_for(inv, host, profile_for("el7"))
        targets = [_target(a, p, release) for a in (address, vip) for p in ports]
        assert host_script(op, ctx).startswith(
            f"{framing.BESIDE}python3 -I -S - {' '.join(targets)} <<'PYEOF'\n")
        assert op.done(ctx, op.read(ctx, Probe("all-answer\n")))
        failing = f"{vip}:{ports[0]}: no answer\n{address}:{ports[0]}: no answer\n"
        assert not op.done(ctx, op.read(ctx, Probe(failing)))
        assert (f"not answering as haproxy expects after 90s: {vip}:{ports[0]}: no answer; "
                f"{address}:{ports[0]}: no answer") in op.preview(ctx, op.read(ctx, Probe(failing)))


# What haproxy's check asks each modern API port (Debian 12's packages; grizzly: TCP only).
HTTP_CHECKS = {5000: "/v3=200", 9292: "/healthcheck=200", 9696: "/healthcheck=200",
               8774: "/=200", 8775: "/healthcheck=200", 8778: "/=200", 8776: "/healthcheck=200",
               8080: "/healthcheck=200", 80: "/=200-399", 8000: "/healthcheck=200",
               8004: "/healthcheck=200"}


def _target(address: str, port: int, release: str) -> str:
    check = HTTP_CHECKS.get(port, "") if release == "modern" else ""
    return f"{address}:{port}{check}"


def test_verify_asks_what_haproxy_asks(inventories: Inventories) -> None:
    """The verify step and haproxy.cfg agree on each port's request and statuses."""
    inv = inventories("modern", "el7", "dedicated")
    cfg = render_haproxy_cfg(inv)
    for service in RELEASE_SERVICES["modern"]:
        step = by_id(build_controllers_runbook(inv, families(inv), only=(service,)))[
            f"ctl.{service}.verify"]
        (op,) = ops_of(step, "rhos6-node2")
        script = host_script(op, ctx_for(inv, "rhos6-node2", profile_for("el7")))
        for port in PORTS[(service, "modern")]:
            if port not in HTTP_CHECKS:
                assert f" 192.168.1.220:{port} " in script  # a TCP connect (novnc)
                continue
            path, status = HTTP_CHECKS[port].split("=")
            assert f" 192.168.1.220:{port}{path}={status} " in script + " "
            backend = cfg.split(f":{port} check")[0].rsplit("\nbackend ", 1)[1]
            assert f"option httpchk GET {path}\n    http-check expect status {status}\n" in backend


def test_verify_skips_omitted_proxies(tmp_path: Path) -> None:
    text = inventory_text("modern", "debian", "dedicated").replace(
        "[services]\n", "[services]\nomit_proxies = [\"nova-metadata\"]\n")
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    inv = load_inventory(path)
    step = by_id(build_controllers_runbook(inv, families(inv), only=("nova",)))[
        "ctl.nova.verify"]
    (op,) = ops_of(step, "rhos6-node2")
    probe = host_script(op, ctx_for(inv, "rhos6-node2", profile_for("debian")))
    assert "192.168.1.222:8774/=200 192.168.1.220:8774/=200 <<" in probe
    assert "8775" not in probe


class _Status(http.server.BaseHTTPRequestHandler):
    """Answers GET /v3 with 200 and every other path with 404, like a tiny API."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v3" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _probe(*targets: str, seconds: int = 1) -> str:
    out = subprocess.run(["/bin/sh", "-c", api_probe_script(targets, seconds)],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def test_the_api_probe_runs_with_real_python() -> None:
    """The verify script itself, against an HTTP API, a port that accepts connections but
    never answers (a wedged API: up for a TCP check, down for haproxy's HTTP check), and a
    closed port."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = server.server_address[1]
    try:
        with socket.socket() as wedged, socket.socket() as closed:
            wedged.bind(("127.0.0.1", 0))
            wedged.listen()
            stuck = wedged.getsockname()[1]
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]
            assert _probe(f"127.0.0.1:{api}/v3=200", f"127.0.0.1:{api}/=404",
                          f"127.0.0.1:{api}/v3=200-399,401", f"127.0.0.1:{stuck}",
                          seconds=2) == "all-answer"
            assert _probe(f"127.0.0.1:{api}/healthcheck=200-399,401", f"127.0.0.1:{stuck}/v3=200",
                          f"127.0.0.1:{dead}", f"127.0.0.1:{dead}/v3=200") == "\n".join([
                f"127.0.0.1:{api} GET /healthcheck: answered 404, expected 200-399,401",
                f"127.0.0.1:{stuck} GET /v3: no answer",
                f"127.0.0.1:{dead}: no answer",
                f"127.0.0.1:{dead} GET /v3: no answer"])
            # No time to wait (a no-op's look ahead): every target is still tried once.
            assert _probe(f"127.0.0.1:{api}/v3=200", seconds=0) == "all-answer"
            assert _probe(f"127.0.0.1:{api}/v3=200", f"127.0.0.1:{dead}",
                          seconds=0) == f"127.0.0.1:{dead}: no answer"
    finally:
        server.shutdown()
        server.server_close()


# -- tree copy --------------------------------------------------------------------------------


def _tree_op(inv: Inventory, service: str, host: str) -> TreeCopied:
    step = by_id(build_controllers_runbook(inv, families(inv), only=(service,)))[
        f"ctl.{service}.copy"]
    (op,) = ops_of(step, host)
    assert isinstance(op, TreeCopied)
    return op


@pytest.mark.parametrize("platform", PLATFORMS)
def test_copy_commands_read_a_tar_on_the_original_and_swap_it_in(inventories: Inventories,
                                                                  platform: str) -> None:
    inv = inventories("grizzly", platform, "dedicated")
    op = _tree_op(inv, "nova", "mesa-virt-02")
    ctx = ctx_for(inv, "mesa-virt-02", profile_for(platform), "ctl.nova.copy")
    # destination probe and the source's (run on the original by the engine)
    assert op.probe(ctx) == manifest_script("/etc/nova")
    (source,) = op.source_probes(ctx)
    assert (source.host, source.script) == ("mesa-virt-01", manifest_script("/etc/nova"))
    src = "@@tree dir\n"
    (command,) = op.apply(ctx, op.read(ctx, Probe("@@tree absent\n", sources=(src,))))
    assert command.stdin is None and command.stdin_from is not None
    assert command.stdin_from.host == "mesa-virt-01"
    assert command.stdin_from.script == "LC_ALL=C tar -C /etc/nova -cpf - ."
    script = command.script
    run = "20260101-000000-000-t-deploy"
    assert "target=/etc/nova\n" in script
    assert f"stage=/etc/.hadeploy.nova.new.{run}\n" in script
    assert f"aside=/etc/.hadeploy.nova.old.{run}\n" in script
    assert f"backup=/var/lib/hadeploy/backup/{run}/ctl.nova.copy/etc/nova\n" in script
    assert 'tar -C "$stage" -x -p --same-owner -f "$stage.tar"' in script
    assert 'mv -T "$stage" "$target"' in script
    assert ("restorecon -R" in script) == (platform != "debian")  # SELinux labels on EL
    assert command.summary == ("copy mesa-virt-01:/etc/nova to /etc/nova "
                               "(tar, owners by name, staged then swapped in)")
    record = op.intent(ctx, op.read(ctx, Probe("@@tree absent\n", sources=(src,))))
    assert record["kind"] == "tree" and record["existed"] is False


def test_copy_paths_are_quoted(inventories: Inventories) -> None:
    inv = inventories("modern", "el7", "dedicated")
    op = replace(_tree_op(inv, "horizon", "rhos6-node2"), path="/etc/open stack's")
    ctx = ctx_for(inv, "rhos6-node2", profile_for("el7"), "ctl.horizon.copy")
    (command,) = op.apply(ctx, op.read(ctx, Probe("@@tree absent\n", sources=("@@tree dir\n",))))
    assert command.stdin_from is not None
    assert command.stdin_from.script == "LC_ALL=C tar -C '/etc/open stack'\"'\"'s' -cpf - ."
    assert "target='/etc/open stack'\"'\"'s'\n" in command.script


def _manifest(root: Path) -> str:
    out = subprocess.run(["/bin/sh", "-c", manifest_script(str(root))], capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (1_370_000_000, 1_370_000_000))
        path.chmod(0o640)
    root.chmod(0o750)


@pytest.mark.parametrize("release", RELEASES)
def test_a_copy_is_done_when_only_host_keys_files_differ(inventories: Inventories, release: str,
                                                         tmp_path: Path) -> None:
    """After host-keys rewrote nova.conf on a new controller, a re-run must not copy again
    (and so must not rewrite and restart): the rewritten files' content is not compared."""
    inv = inventories(release, "el7", "dedicated")
    host = CONTROLLERS[release][1]
    op = _tree_op(inv, "nova", host)
    ctx = ctx_for(inv, host, profile_for("el7"), "ctl.nova.copy")
    files = {"nova.conf": "[DEFAULT]\nmy_ip=ORIGINAL\n", "policy.json": "{}\n",
             "api-paste.ini": "[filter:authtoken]\n"}
    _tree(tmp_path / "src", files)
    _tree(tmp_path / "same", files)
    _tree(tmp_path / "rewritten", {**files, "nova.conf": "[DEFAULT]\nmy_ip=NEW\n"})
    _tree(tmp_path / "stale", {**files, "policy.json": '{"admin": "role:admin"}\n'})
    src = _manifest(tmp_path / "src")
    assert op.done(ctx, op.read(ctx, Probe(_manifest(tmp_path / "same"), sources=(src,))))
    assert op.done(ctx, op.read(ctx, Probe(_manifest(tmp_path / "rewritten"), sources=(src,))))
    assert not op.done(ctx, op.read(ctx, Probe(_manifest(tmp_path / "stale"), sources=(src,))))
    assert not op.done(ctx, op.read(ctx, Probe("@@tree absent\n", sources=(src,))))


# -- rc files (guide: "change the OS_AUTH_URL variable such that it points to the VIP") -----------


def _rc_op(inv: Inventory) -> FileEdit:
    step = by_id(build_controllers_runbook(inv, families(inv), only=("keystone",)))[
        "ctl.rc-files"]
    (op,) = ops_of(step, inv.original.name)
    assert isinstance(op, FileEdit)
    return op


def _edit(op: FileEdit, ctx: HostContext, text: str, owner: str = "root",
          group: str = "root", mode: str = "0600") -> str:
    want = op.desired(ctx, FileState(True, owner, group, mode, "", text.encode()))
    assert want is not None
    content, *meta = want
    assert meta == [owner, group, mode]  # an edit keeps owner, group and mode
    return content.decode()


GUIDE_RC = ("export OS_USERNAME=admin\n"
            "export OS_TENANT_NAME=admin\n"
            "export OS_PASSWORD=8f7e6d5c4b3a\n"
            "{}OS_AUTH_URL=http://10.15.85.141:35357/v2.0/\n"
            "export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '\n")


@pytest.mark.parametrize("export", ["", "export "])
def test_rc_file_os_auth_url_names_the_vip(inventories: Inventories, export: str) -> None:
    inv = inventories("grizzly", "el6", "dedicated")
    op = _rc_op(inv)
    assert op.path == "/root/keystone_adminrc"
    ctx = ctx_for(inv, "mesa-virt-01", profile_for("el6"), "ctl.rc-files")
    before = GUIDE_RC.format(export)
    after = _edit(op, ctx, before)
    assert after == before.replace(f"{export}OS_AUTH_URL=http://10.15.85.141:35357/v2.0/",
                                   f"{export}OS_AUTH_URL=http://10.15.85.31:35357/v2.0/")
    assert _edit(op, ctx, after) == after  # idempotent


def test_rc_file_modern_keeps_quotes_and_path(inventories: Inventories) -> None:
    inv = inventories("modern", "el7", "colocated")
    op = _rc_op(inv)
    assert op.path == "/root/keystonerc_admin"
    ctx = ctx_for(inv, "rhos6-node1", profile_for("el7"), "ctl.rc-files")
    before = ("unset OS_SERVICE_TOKEN\n"
              "    export OS_USERNAME=admin\n"
              "    export OS_PASSWORD='c0ffee-secret'\n"
              "    export OS_AUTH_URL='http://192.168.1.221:5000/v3'\n"
              "    export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '\n"
              "export OS_IDENTITY_API_VERSION=3\n")
    assert _edit(op, ctx, before) == before.replace("http://192.168.1.221:5000/v3",
                                                    "http://192.168.1.220:5000/v3")


def test_rc_file_without_os_auth_url_fails_clearly(inventories: Inventories) -> None:
    inv = inventories("grizzly", "el6", "dedicated")
    op = _rc_op(inv)
    ctx = ctx_for(inv, "mesa-virt-01", profile_for("el6"), "ctl.rc-files")
    with pytest.raises(ValueError, match="/root/keystone_adminrc has no OS_AUTH_URL"):
        _edit(op, ctx, "export OS_USERNAME=admin\n")
    with pytest.raises(FileNotFoundError, match="/root/keystone_adminrc does not exist"):
        op.desired(ctx, FileState(False))


# -- the endpoints step as the runbook builds it -------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_endpoints_step_uses_the_admin_credentials_on_the_original(inventories: Inventories,
                                                                    release: str) -> None:
    inv = inventories(release, "el7", "dedicated")
    step = by_id(build_controllers_runbook(inv, families(inv)))["ctl.endpoints"]
    (op,) = ops_of(step, CONTROLLERS[release][0])
    assert isinstance(op, EndpointsOnVip)
    assert (op.rc, op.release, op.vip) == ("/root/keystonerc_admin", release,
                                           ADDRESSES[release][0])
    assert set(op.original) == {ADDRESSES[release][1][0], CONTROLLERS[release][0]}
    # only ports the VIP serves: the balanced services' proxies
    expected = {p for s in RELEASE_SERVICES[release] for p in PORTS[(s, release)]}
    expected |= {3306, 5672}  # galera and rabbitmq are balanced too (never endpoints)
    assert set(op.ports) == expected


# -- plans ------------------------------------------------------------------------------------


def _file_answer(text: str, owner: str = "root", group: str = "root", mode: str = "640") -> str:
    data = text.encode()
    return (f"{owner} {group} {mode}\n{hashlib.sha256(data).hexdigest()}\n"
            f"{base64.b64encode(data).decode()}\n")


GUIDE_ENDPOINT_LIST = (FIXTURES / "keystone-endpoint-list.txt")


def _grizzly_world(inv: Inventory) -> FakeTransport:
    """The guide's packstack controller (mesa-virt-01) and two bare new controllers."""
    originals = FIXTURES / "grizzly" / "orig"
    files = {"/" + str(p.relative_to(originals)): p.read_text()
             for p in originals.rglob("*") if p.is_file()}
    files["/root/keystone_adminrc"] = GUIDE_RC.format("")
    transport = FakeTransport()

    def probe(host: str, script: str) -> tuple[int, str] | None:
        if script.startswith("if [ -f "):
            path = re.match(r"if \[ -f (\S+) \]", script)
            assert path is not None
            name = path.group(1).strip("'")
            if host == "mesa-virt-01" and name in files:
                return 0, _file_answer(files[name])
            return 0, "absent\n"
        if script.startswith("LC_ALL=C; export LC_ALL;"):
            return 0, "@@tree absent\n"
        if script.startswith("rpm -q"):
            return 0, ""
        if "chkconfig --list" in script:
            return (0, "enabled\nrunning\n") if host == "mesa-virt-01" else (
                0, "disabled\nstopped\n")
        if script.startswith(framing.BESIDE + "python3 -I -S - "):
            return 0, "all-answer\n"
        if "keystone endpoint-list" in script:
            return 0, GUIDE_ENDPOINT_LIST.read_text()
        if script.startswith("echo '@@storage config'") and host == "mesa-virt-01":
            return 0, storage_answer(files["/etc/glance/glance-api.conf"])
        return None

    def source(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str] | None:
        if host == "mesa-virt-01" and script.startswith("LC_ALL=C; export LC_ALL;"):
            return 0, "@@tree dir\n", ""
        return None

    transport.on_probe(probe)
    transport.on(source)
    return transport


def _plan(inv: Inventory, transport: FakeTransport) -> list[PlanItem]:
    engine = Engine(transport, {n.name: n for n in inv.nodes}, inv.platform, lambda e: None)
    engine.apply_facts({n.name: {"platform": inv.platform, "init": "sysv"} for n in inv.nodes})
    runbook = build_controllers_runbook(inv, {n: p.family for n, p in engine.profiles.items()})
    return engine.plan(runbook)


def test_engine_plan_of_the_guides_deployment() -> None:
    inv = load_inventory(HOSTS_EXAMPLE)  # guide 1's services: swift is not balanced
    transport = _grizzly_world(inv)
    items = _plan(inv, transport)
    assert all(item.error is None for item in items), [i.error for i in items if i.error]
    plan = {(i.step.id, i.host): i for i in items}
    # a dry run shows the refusal: the guide's Glance keeps images on mesa-virt-01's disk
    ((_, (stop,), refusal),) = plan[("ctl.shared-state", "mesa-virt-01")].pending
    assert stop.shown() == "stop: glance's images are on one node's disk only"
    assert ("/etc/glance/glance-api.conf: [DEFAULT] default_store = file, [DEFAULT] "
            "filesystem_store_datadir = /var/lib/glance/images/ on a local filesystem (ext4)"
            ) in refusal
    assert 'shared_storage = ["glance"]' in refusal

    nova = plan[("ctl.nova.vip-keys", "mesa-virt-01")]
    previews = "".join(p for _, _, p in nova.pending)
    assert "+quantum_url=http://10.15.85.31:9696\n" in previews
    assert "+glance_api_servers=10.15.85.31:9292\n" in previews
    assert "+auth_host = 10.15.85.31\n" in previews
    # secrets in the diff's context lines are masked
    assert "0a1b2c3d4e5f6789" not in previews and "3e4d5c6b7a8f9e0d" not in previews
    for _, commands, _ in nova.pending:
        (write,) = commands
        assert write.stdin is not None and b"10.15.85.31" in write.stdin
        assert write.summary.startswith("write /etc/nova/")
    # the original restarts nova-api because its VIP keys would change
    services = plan[("ctl.nova.services", "mesa-virt-01")]
    ((_, commands, _),) = services.pending
    backends = "nova-ec2-api, nova-compute-api, nova-metadata-api"
    lbs = ("mesa-lb-01", "mesa-lb-02", "mesa-lb-03")
    assert [c.shown() for c in commands] == [
        *(f"{lb}: set mesa-virt-01 to drain in {backends} (stats socket), wait until its "
          "sessions reach 0 (at most 10 s)" for lb in lbs),
        "service openstack-nova-api restart (then wait until it runs)",
        "wait until mesa-virt-01's APIs answer on its own address",
        *(f"{lb}: wait until haproxy sees mesa-virt-01 UP in {backends} (at most 60 s), then "
          "set it ready" for lb in lbs)]
    # keystone has no VIP keys: nothing changes on the original, nothing restarts
    assert plan[("ctl.keystone.services", "mesa-virt-01")].pending == []
    fresh = plan[("ctl.keystone.services", "mesa-virt-02")]
    assert [c.shown() for _, cs, _ in fresh.pending for c in cs] == [
        "chkconfig openstack-keystone on",
        "service openstack-keystone start (then wait until it runs)",
        *(f"{lb}: set mesa-virt-02 ready in keystone-admin-api, keystone-public-api where "
          "haproxy has it" for lb in lbs)]
    assert [c.shown() for _, cs, _ in plan[("ctl.packages", "mesa-virt-03")].pending
            for c in cs] == ["yum install -y -q openstack-keystone openstack-quantum "
                             "openstack-quantum-openvswitch openstack-glance openstack-nova-api "
                             "python-cinderclient openstack-cinder"]  # one run for every service
    copy = plan[("ctl.glance.copy", "mesa-virt-02")]
    ((_, (tar,), _),) = copy.pending
    assert tar.stdin_from is not None and tar.stdin_from.host == "mesa-virt-01"
    # the keystone catalog: one create/delete per guide endpoint (swift's is not balanced)
    ((_, (moves,), preview),) = plan[("ctl.endpoints", "mesa-virt-01")].pending
    assert moves.script.count("new=$(keystone endpoint-create ") == 6
    assert moves.script.count("\nkeystone endpoint-delete ") == 6
    assert "8080" not in moves.script and "OS_PASSWORD" not in moves.script
    assert moves.shown() == ("keystone endpoint-create/-delete for 6 endpoint(s) -> "
                             "10.15.85.31 (credentials from /root/keystonerc_admin)")
    assert "http://10.15.85.141:8774/v2/%(tenant_id)s -> http://10.15.85.31:8774/v2/" \
           "%(tenant_id)s" in preview
    ((_, _, rc_preview),) = plan[("ctl.rc-files", "mesa-virt-01")].pending
    assert "+OS_AUTH_URL=http://10.15.85.31:35357/v2.0/\n" in rc_preview
    assert "8f7e6d5c4b3a" not in rc_preview
    # a plan never writes
    assert all(script.startswith(("echo '@@", "LC_ALL=C; export", "exec 4<&0\n{ echo '@@"))
               for _, script in transport.calls)


def _invoke(hosts: Path, *extra: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HADEPLOY_")}
    environ["PYTHONPATH"] = str(ROOT)
    environ["COLUMNS"] = "200"
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "invoke", "deploy-controllers", "--hosts",
                           str(hosts), "--offline", *extra], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("hosts", "release"), [(HOSTS_EXAMPLE, "grizzly"),
                                                (COLOCATED, "modern")])
def test_offline_plan_of_the_examples(inventories: Inventories, hosts: Path, release: str) -> None:
    secret = "TopSecret-Stats-42"
    result = _invoke(hosts, env={"HADEPLOY_STATS_PASSWORD": secret})
    assert result.returncode == 0, result.stderr
    inv = load_inventory(hosts)
    runbook = build_controllers_runbook(inv, families(inv))
    out = result.stdout
    positions = [out.find(f"\n{step.id}  ") if step is not runbook.steps[0]
                 else out.find(f"{step.id}  ") for step in runbook.steps]
    assert all(p >= 0 for p in positions), [s.id for s, p in
                                            zip(runbook.steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert secret not in out + result.stderr
    assert "OS_PASSWORD" not in out
    assert "Traceback" not in result.stderr


def test_offline_plan_of_one_service_and_a_wrong_one() -> None:
    result = _invoke(HOSTS_EXAMPLE, "--service", "glance")
    assert result.returncode == 0, result.stderr
    assert "ctl.glance.copy" in result.stdout and "ctl.nova" not in result.stdout
    wrong = _invoke(HOSTS_EXAMPLE, "--service", "galera")
    assert wrong.returncode != 0
    assert "--service galera: not a scaled-out service" in wrong.stdout + wrong.stderr

