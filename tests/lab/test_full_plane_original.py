"""The lab's original controller with the whole control plane (lab.openstack.FULL_PLANE):
every API answers a real authenticated call on the original, as packstack would leave it;
then, on that same original, deploy-lb and deploy-controllers scale every service out to ctl2
and ctl3 behind lb1-lb3, every API answers on each controller and through the VIP, a re-run
changes nothing, and the rollback leaves the original serving alone, with the images of the
store the controllers share (mounted under /var/lib/glance) intact.

Needs root and the full plane's packages in the lab's offline repository (downloaded once
into the persistent cache here; skipped, with the reason, when they cannot be had). The
first provisioning on a machine installs everything (minutes); later ones lay the cached
installation in.

Run: python -m pytest tests/lab/test_full_plane_original.py -m lab
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hadeploy.render.ini import get_ini_value
from lab import Lab, ensure_repo
from lab.errors import LabError
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.openstack import (
    ADMIN_RC,
    FULL_PLANE,
    FULL_PLANE_REPO_PACKAGES,
    OriginalController,
    host_pss_bytes,
    prepare_new_controller,
    provision_original,
)
from lab.openstack.shared_store import share_directory, unshare_directory
from tests.lab.api_calls import Session, request
from tests.lab.helpers import (
    OPENSTACK_UNAVAILABLE,
    events,
    hadeploy,
    installed,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

ORIGINAL = "ctl1"
#: Service type -> the path of its endpoints on the original (packstack's URLs).
CATALOG = {
    "identity": (5000, ""),
    "image": (9292, ""),
    "placement": (8778, ""),
    "compute": (8774, "/v2.1"),
    "network": (9696, ""),
    "volumev3": (8776, "/v3/%(project_id)s"),
    "orchestration": (8004, "/v1/%(tenant_id)s"),
    "cloudformation": (8000, "/v1"),
    "object-store": (8080, "/v1/AUTH_%(project_id)s"),
}


#: The progress lines of the module's provisioning.
PROGRESS: list[str] = []


def _progress(line: str) -> None:
    PROGRESS.append(line)
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def original(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginalController]:
    """ctl1 provisioned with the full plane; reset to a bare host afterwards."""
    if os.environ.get("HADEPLOY_LAB_OPENSTACK", "1") == "0" or OPENSTACK_UNAVAILABLE:
        pytest.skip("; ".join(OPENSTACK_UNAVAILABLE) or "HADEPLOY_LAB_OPENSTACK=0")
    try:
        # The session's repository holds Keystone and Glance; the rest is added here (the
        # hosts see the repository live and the install runs apt-get update).
        ensure_repo(FULL_PLANE_REPO_PACKAGES, lab.cache_dir)
        lab.hosts[ORIGINAL].exec("apt-get -q update >/dev/null")  # the repository as it is now
        prepare_new_controller(lab, ORIGINAL, FULL_PLANE)
    except LabError as err:
        pytest.skip(f"the full plane's packages are unavailable: {err}")
    try:
        made = provision_original(lab, ORIGINAL, tmp_path_factory.mktemp("full-plane"),
                                  plane=FULL_PLANE, progress=_progress)
        pss = host_pss_bytes(lab.hosts[ORIGINAL]) / 2**20
        print(f"\nfull-plane original provisioned: {made.timings} (migrations side by side: "
              f"{made.sync_seconds}), total {sum(made.timings.values()):.0f} s, "
              f"PSS {pss:.0f} MiB")
        yield made
    finally:
        lab.hosts[ORIGINAL].reset()


def _openstack(lab: Lab, args: str, input: str | None = None) -> str:
    """Run the openstack CLI on the original with the admin rc file sourced; return stdout."""
    result = lab.hosts[ORIGINAL].exec(f". {ADMIN_RC} && openstack {args}", check=False,
                                      timeout=180, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _json(lab: Lab, args: str) -> list[dict[str, str]]:
    value = json.loads(_openstack(lab, f"{args} -f json"))
    assert isinstance(value, list)
    return value


def test_secrets_stay_out_of_repr(original: OriginalController) -> None:
    text = repr(original)
    assert original.admin_password not in text
    assert set(original.db_urls) >= {"nova_api", "nova", "nova_cell0", "placement", "neutron",
                                     "cinder", "heat", "keystone", "glance"}
    for url in original.db_urls.values():
        password = urllib.parse.urlsplit(url).password
        assert password and password not in text


def test_each_phase_says_what_it_does(original: OriginalController) -> None:
    assert all(line.startswith(f"{ORIGINAL}: ") for line in PROGRESS), PROGRESS
    text = "\n".join(PROGRESS)
    assert "installing 11 services' packages" in text
    for phase in ("creating the databases", "database migrations of", "keystone: bootstrap"):
        assert phase in text, PROGRESS
    for service in original.services:
        assert f"{ORIGINAL}: {service}: " in text, (service, PROGRESS)
    assert PROGRESS[-1].startswith(f"{ORIGINAL}: ready in ")


def test_catalog_names_the_original_with_the_real_paths(
        lab: Lab, original: OriginalController) -> None:
    endpoints = _json(lab, "endpoint list")
    seen = {(e["Service Type"], e["Interface"]) for e in endpoints}
    assert seen == {(t, i) for t in CATALOG for i in ("public", "internal", "admin")}
    for endpoint in endpoints:
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{original.address}:{port}{path}", endpoint
        assert endpoint["Region"] == "RegionOne", endpoint


def _service_states(lab: Lab, command: str, binaries: set[str],
                    seconds: float = 150) -> dict[str, str]:
    """The State of each binary in `openstack COMMAND`, polled until every one is "up" or
    `seconds` have passed. A cached installation keeps the rows of its first run, so a
    daemon is "down" until its first heartbeat after the start, later on a busy machine."""
    deadline = time.monotonic() + seconds
    while True:
        states = {s["Binary"]: s["State"] for s in _json(lab, command)}
        if set(states) == binaries and set(states.values()) == {"up"}:
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(5)


def _log_tail(lab: Lab, paths: str) -> str:
    return lab.hosts[ORIGINAL].exec(f"tail -n 20 {paths} 2>&1", check=False).stdout


def test_nova_answers_and_its_services_are_up(lab: Lab, original: OriginalController) -> None:
    assert _json(lab, "server list") == []
    services = _service_states(lab, "compute service list", {"nova-conductor", "nova-scheduler"})
    assert services == {"nova-conductor": "up", "nova-scheduler": "up"}, _log_tail(
        lab, "/var/log/nova/nova-conductor.log /var/log/nova/nova-scheduler.log")


def test_placement_answers(lab: Lab, original: OriginalController) -> None:
    assert _json(lab, "resource provider list") == []


def test_neutron_creates_and_lists_a_network(lab: Lab, original: OriginalController) -> None:
    created = json.loads(_openstack(lab, "network create lab-net -f json"))
    assert created["name"] == "lab-net" and created["provider:network_type"] == "vlan"
    assert "lab-net" in {n["Name"] for n in _json(lab, "network list")}


def test_cinder_answers(lab: Lab, original: OriginalController) -> None:
    services = _service_states(lab, "volume service list", {"cinder-scheduler"})
    assert services == {"cinder-scheduler": "up"}, _log_tail(
        lab, "/var/log/cinder/cinder-scheduler.log")
    assert _json(lab, "volume list") == []


def test_heat_answers(lab: Lab, original: OriginalController) -> None:
    assert _json(lab, "stack list") == []


def test_swift_through_keystone(lab: Lab, original: OriginalController) -> None:
    _openstack(lab, "container create lab-container")
    assert [c["Name"] for c in _json(lab, "container list")] == ["lab-container"]
    # The object went through the ring to the one object server, on the host's disk.
    _openstack(lab, "object create lab-container /etc/hostname")
    found = lab.hosts[ORIGINAL].exec("find /srv/node/d1/objects -name '*.data' | wc -l")
    assert int(found.stdout) == 1


def _upload_random_image(lab: Lab, name: str, size: int) -> str:
    """Upload `size` random bytes from the original's /root/NAME.raw as image NAME; its id."""
    lab.hosts[ORIGINAL].exec(f"head -c {size} /dev/urandom >/root/{name}.raw")
    image = json.loads(_openstack(lab, f"image create {name} --disk-format raw "
                                       f"--container-format bare --file /root/{name}.raw "
                                       "-f json"))
    return str(image["id"])


def test_image_upload_then_download_gives_the_same_bytes(
        lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    image = _upload_random_image(lab, "lab-image", 3000000)
    _openstack(lab, f"image save --file /root/lab-image.back {image}")
    assert host.exec("cmp /root/lab-image.raw /root/lab-image.back", check=False).returncode == 0


def test_horizon_serves_its_login_page(original: OriginalController) -> None:
    connection = http.client.HTTPConnection(original.address, 80, timeout=30)
    try:
        connection.request("GET", "/horizon/auth/login/")
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    assert response.status == 200
    assert 'name="username"' in body and 'name="password"' in body


def test_rabbitmq_serves_the_services(lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    listening = [line.split()[3] for line in host.exec(["ss", "-Hltn"]).stdout.splitlines()]
    assert any(local.endswith(":5672") for local in listening), listening
    users = host.exec(["rabbitmqctl", "-q", "list_users"]).stdout
    assert "openstack" in users
    # nova-conductor and cinder-scheduler report "up" through it (see above); every
    # service's transport URL names the original.
    for path, section in (("/etc/nova/nova.conf", "DEFAULT"), ("/etc/neutron/neutron.conf",
                          "DEFAULT"), ("/etc/cinder/cinder.conf", "DEFAULT"),
                          ("/etc/heat/heat.conf", "DEFAULT")):
        url = get_ini_value(host.exec(["cat", path]).stdout, section, "transport_url")
        assert url and urllib.parse.urlsplit(url).hostname == original.address, path


def test_configs_name_the_original(lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    a = original.address

    def ini(path: str, section: str, key: str) -> str | None:
        return get_ini_value(host.exec(["cat", path]).stdout, section, key)

    assert ini("/etc/nova/nova.conf", "DEFAULT", "my_ip") == a
    assert ini("/etc/nova/nova.conf", "vnc", "server_proxyclient_address") == a
    assert ini("/etc/cinder/cinder.conf", "DEFAULT", "osapi_volume_listen") == a
    assert ini("/etc/heat/heat.conf", "heat_api", "bind_host") == a
    for server in ("proxy", "account", "container", "object"):
        assert ini(f"/etc/swift/{server}-server.conf", "DEFAULT", "bind_ip") == a
    for name in ("nova", "placement", "neutron", "cinder", "heat"):
        conf = f"/etc/{name}/{name}.conf"
        assert ini(conf, "keystone_authtoken", "www_authenticate_uri") == f"http://{a}:5000"
    settings = host.exec(["cat", "/etc/openstack-dashboard/local_settings.py"]).stdout
    assert f'OPENSTACK_HOST = "{a}"' in settings
    # The object ring's one device is on the original.
    rings = host.exec("cd /etc/swift && swift-ring-builder object.builder").stdout
    assert a in rings and "6200" in rings, rings
    assert host.exec(["test", "-e", "/usr/sbin/policy-rc.d"], check=False).returncode == 1


# -- scaled out: deploy-lb and deploy-controllers of every service on this same original --

LBS = ("lb1", "lb2", "lb3")
NEW = ("ctl2", "ctl3")
CTLS = (ORIGINAL, *NEW)
#: What the inventory balances: every API of the full plane.
SERVICES = ("keystone", "glance", "placement", "nova", "novnc", "neutron", "cinder", "heat",
            "swift", "horizon")
#: The original's files whose bytes the rollback must give back: every service's tree, the
#: /etc/default files of its daemons, apache's sites and the admin rc file.
ORIGINAL_FILES = ("/etc/keystone /etc/glance /etc/placement /etc/nova /etc/neutron /etc/cinder "
                  "/etc/heat /etc/swift /etc/openstack-dashboard /etc/apache2 /etc/default "
                  f"{ADMIN_RC}")
#: The daemons' main processes (children of the host's init).
DAEMONS = "uwsgi|glance-api|nova-|neutron-|cinder-|heat-|swift-|apache2"


@dataclass(frozen=True)
class ScaledOut:
    """The deployed lab: its inventory, the original's files before, the deploy's output."""

    inventory: Path
    files_before: str
    output: str


def _files(lab: Lab) -> str:
    """Path, type, owner, group, mode and sha256 of every file of ORIGINAL_FILES on ctl1."""
    return lab.hosts[ORIGINAL].exec(
        f"find {ORIGINAL_FILES} -printf '%p %y %u %g %m %l\\n' | sort && "
        f"find {ORIGINAL_FILES} -type f -print0 | sort -z | xargs -0 sha256sum").stdout


def _pids(lab: Lab, host: str) -> str:
    return lab.hosts[host].exec(f"pgrep -P 1 -f '{DAEMONS}' | sort | tr '\\n' ' '",
                                check=False).stdout


@pytest.fixture(scope="module")
def scaled(lab: Lab, original: OriginalController,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledOut]:
    """deploy-lb then deploy-controllers of SERVICES, with Glance's image store on a
    directory the three controllers share (the lab's stand-in for an NFS mount)."""
    for host in LBS + NEW:
        lab.hosts[host].reset()
    shared = share_directory(lab, CTLS)
    try:
        files_before = _files(lab)
        inventory = write_lab_inventory(
            lab, tmp_path_factory.mktemp("full-scale-out") / "hosts.toml", services=SERVICES,
            rc_files=[(ORIGINAL, ADMIN_RC)])
        output = ""
        for phase in ("lb", "controllers"):
            run = hadeploy(f"deploy-{phase}", "--hosts", str(inventory), "--yes",
                           timeout=1800)
            output += run.stdout + run.stderr
            assert run.returncode == 0, output[-6000:]
        yield ScaledOut(inventory, files_before, output)
    finally:
        unshare_directory(lab, CTLS, shared)
        for host in LBS + NEW:
            lab.hosts[host].reset()


def test_every_endpoint_is_on_the_vip_with_its_path(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    endpoints = _json(lab, "endpoint list")
    assert len(endpoints) == 3 * len(CATALOG)
    for endpoint in endpoints:
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{LAB_VIP}:{port}{path}", endpoint
    assert original.admin_password not in scaled.output


def test_every_api_answers_on_every_controller(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    for host in CTLS:
        session = Session.login(lab.hosts[host].address, original.admin_password)
        session.every_api(host)


def test_every_api_answers_through_the_vip(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    Session.login(LAB_VIP, original.admin_password).every_api("vip")
    # The operator's CLI, whose rc file and catalog now name the VIP.
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000/v3" in lab.hosts[ORIGINAL].exec(
        ["cat", ADMIN_RC]).stdout
    assert _json(lab, "server list") == []
    assert _json(lab, "resource provider list") == []
    created = json.loads(_openstack(lab, "network create vip-net -f json"))
    assert created["name"] == "vip-net"
    assert {"lab-net", "vip-net"} <= {n["Name"] for n in _json(lab, "network list")}
    assert _json(lab, "volume list") == []
    assert _json(lab, "stack list") == []
    _openstack(lab, "container create vip-container")
    assert {"lab-container", "vip-container"} <= {c["Name"] for c in _json(lab, "container list")}


def test_an_image_uploaded_through_the_vip_downloads_through_the_vip(
        lab: Lab, scaled: ScaledOut) -> None:
    host = lab.hosts[ORIGINAL]
    image = _upload_random_image(lab, "vip-image", 2000000)
    # Three downloads: haproxy's round robin hands one to each controller.
    for attempt in range(3):
        _openstack(lab, f"image save --file /root/vip-image.{attempt} {image}")
        assert host.exec(f"cmp /root/vip-image.raw /root/vip-image.{attempt}",
                         check=False).returncode == 0, attempt


def _login_pages_served(lab: Lab) -> dict[str, int]:
    """How many requests for Horizon's login page each controller's apache has logged."""
    return {h: int(lab.hosts[h].exec(
        "grep -c 'GET /horizon/auth/login/' /var/log/apache2/access.log || true").stdout)
        for h in CTLS}


def test_horizon_session_stays_on_one_backend(lab: Lab, scaled: ScaledOut) -> None:
    first = request(LAB_VIP, 80, "GET", "/horizon/auth/login/")
    assert first.status == 200 and b'name="username"' in first.body
    cookie = re.search(r"SERVERID=([^;]+)", first.headers.get("set-cookie", ""))
    assert cookie and cookie.group(1) in CTLS, first.headers
    before = _login_pages_served(lab)
    for _ in range(6):
        again = request(LAB_VIP, 80, "GET", "/horizon/auth/login/",
                        headers={"Cookie": f"SERVERID={cookie.group(1)}"})
        assert again.status == 200
    after = _login_pages_served(lab)
    assert {h: after[h] - before[h] for h in CTLS} == {
        h: 6 if h == cookie.group(1) else 0 for h in CTLS}


def test_nova_cells_name_the_originals_address(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    """The cell mappings in nova_api (written on the original) must be reachable from the
    new controllers: database and transport URLs on the original's address, not localhost."""
    cells = lab.hosts["ctl2"].exec("runuser -u nova -- nova-manage cell_v2 list_cells "
                                   "--verbose", timeout=120).stdout
    assert "localhost" not in cells and "127.0.0.1" not in cells, "cells name localhost"
    assert f"@{original.address}" in cells


def test_rerun_changes_and_restarts_nothing(lab: Lab, scaled: ScaledOut) -> None:
    pids = {h: _pids(lab, h) for h in CTLS}
    assert all(pids.values()), pids
    again = hadeploy("deploy-controllers", "--hosts", str(scaled.inventory), "--yes", "--json",
                     timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    changed = [(e["step"], e["host"]) for e in events(again.stdout)
               if e["event"] == "host-changed"]
    assert changed == []
    assert {h: _pids(lab, h) for h in CTLS} == pids


def test_rollback_leaves_the_original_serving_alone(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    back = hadeploy("rollback", "--phase", "controllers", "--hosts", str(scaled.inventory),
                    "--yes", timeout=1800)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    # glance-common's purge deletes /var/lib/glance, where the shared store is mounted on
    # the new controllers: it is removed, not purged, and the operator is told so.
    for host in NEW:
        assert re.search(rf"{host} +removed, not purged: [^\n]*glance-common[^\n]*: their "
                         r"purge deletes the directory holding the mount point "
                         r"/var/lib/glance/images", back.stdout), back.stdout[-3000:]
    assert _files(lab) == scaled.files_before
    for endpoint in _json(lab, "endpoint list"):
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{original.address}:{port}{path}", endpoint
    for host in NEW:
        assert _pids(lab, host) == "", host
        assert not any(installed(lab, host, p) for p in ("keystone", "nova-api",
                                                         "openstack-dashboard-apache"))
    # Every API of the original answers again, with the rc file back on its address, and
    # the images of the shared store are all there.
    Session.login(original.address, original.admin_password).every_api("after-rollback")
    for name in ("lab-image", "vip-image"):
        _openstack(lab, f"image save --file /root/{name}.after {name}")
        assert lab.hosts[ORIGINAL].exec(f"cmp /root/{name}.raw /root/{name}.after",
                                        check=False).returncode == 0, name
    assert _json(lab, "server list") == []
    assert _json(lab, "stack list") == []
