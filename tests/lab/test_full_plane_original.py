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
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from hadeploy.inventory.tls import TLS_BUNDLE
from hadeploy.render.ini import get_ini_value
from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.network import SUBNET
from lab.openstack import ADMIN_RC, OriginalController
from lab.openstack.shared_store import share_directory, unshare_directory
from lab.vipload import VipLoad
from tests.certs import CertAuthority, new_key, write_pair
from tests.lab.api_calls import Session, request
from tests.lab.full_plane import (
    API_PORTS,
    CA_ON_HOST,
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
    upload_random_image,
)
from tests.lab.helpers import (
    LBS,
    events,
    hadeploy,
    installed,
    one_holder,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

#: The progress lines of the module's provisioning.
PROGRESS: list[str] = []


@pytest.fixture(scope="module")
def original(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginalController]:
    """ctl1 provisioned with the full plane; reset to a bare host afterwards."""
    yield from full_plane_original(lab, tmp_path_factory.mktemp("full-plane"), PROGRESS)


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
    endpoints = openstack_json(lab, "endpoint list")
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
        states = {s["Binary"]: s["State"] for s in openstack_json(lab, command)}
        if set(states) == binaries and set(states.values()) == {"up"}:
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(5)


def _log_tail(lab: Lab, paths: str) -> str:
    return lab.hosts[ORIGINAL].exec(f"tail -n 20 {paths} 2>&1", check=False).stdout


def test_nova_answers_and_its_services_are_up(lab: Lab, original: OriginalController) -> None:
    assert openstack_json(lab, "server list") == []
    services = _service_states(lab, "compute service list", {"nova-conductor", "nova-scheduler"})
    assert services == {"nova-conductor": "up", "nova-scheduler": "up"}, _log_tail(
        lab, "/var/log/nova/nova-conductor.log /var/log/nova/nova-scheduler.log")


def test_placement_answers(lab: Lab, original: OriginalController) -> None:
    assert openstack_json(lab, "resource provider list") == []


def test_neutron_creates_and_lists_a_network(lab: Lab, original: OriginalController) -> None:
    created = json.loads(openstack(lab, "network create lab-net -f json"))
    assert created["name"] == "lab-net" and created["provider:network_type"] == "vlan"
    assert "lab-net" in {n["Name"] for n in openstack_json(lab, "network list")}


def test_cinder_answers(lab: Lab, original: OriginalController) -> None:
    services = _service_states(lab, "volume service list", {"cinder-scheduler"})
    assert services == {"cinder-scheduler": "up"}, _log_tail(
        lab, "/var/log/cinder/cinder-scheduler.log")
    assert openstack_json(lab, "volume list") == []


def test_heat_answers(lab: Lab, original: OriginalController) -> None:
    assert openstack_json(lab, "stack list") == []


def test_swift_through_keystone(lab: Lab, original: OriginalController) -> None:
    openstack(lab, "container create lab-container")
    assert [c["Name"] for c in openstack_json(lab, "container list")] == ["lab-container"]
    # The object went through the ring to the one object server, on the host's disk.
    openstack(lab, "object create lab-container /etc/hostname")
    found = lab.hosts[ORIGINAL].exec("find /srv/node/d1/objects -name '*.data' | wc -l")
    assert int(found.stdout) == 1


def test_image_upload_then_download_gives_the_same_bytes(
        lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    image = upload_random_image(lab, "lab-image", 3000000)
    openstack(lab, f"image save --file /root/lab-image.back {image}")
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



#: The public VIP: another lab address beside LAB_VIP, whose API ports terminate TLS with a
#: certificate from a CA the test makes; the internal VIP keeps plain HTTP.
PUBLIC = f"{SUBNET}.101"
#: Every API port the public VIP serves (tcp-mode proxies stay on the internal VIP).
#: The ports the public VIP serves over https: every API's, the dashboard's 80 as 443.
PUBLIC_PORTS = tuple(443 if port == 80 else port for port in API_PORTS)
#: The APIs whose links follow X-Forwarded-Proto (the catalog's `proxy_headers`), with the
#: path of their version document.
HTTPS_LINKS = {5000: "/v3", 9292: "/", 8774: "/", 9696: "/", 8776: "/", 8004: "/"}
OVERRIDE_HEADER = "X-Hadeploy-Override"
OVERRIDE = f"http-response set-header {OVERRIDE_HEADER} keystone-public"
MIN_REQUESTS = 200  # new TLS connections during the renewal's re-run
# What the lab's inventory gets on top of its usual keys: the public VIP on the same
# interface, [tls], the exporter on the monitor listener, an operator's override line.
EXTRA = """
[tls]
certificate = "{cert}"
key = "{key}"
redirect_http = true

[haproxy.monitor]
metrics = true

[haproxy.overrides.keystone-public]
frontend = ["{override}"]
"""


@dataclass
class ScaledOut:
    """The deployed lab: its inventory, the original's files before, the deploy's output, the
    test's CA and the serial number of the certificate the public VIP should serve."""

    inventory: Path
    files_before: str
    output: str
    ca: CertAuthority
    pki: Path
    serial: int


def _client(ca: CertAuthority) -> ssl.SSLContext:
    """A client context trusting only the test's CA, checking the name (the VIP's IP)."""
    return ssl.create_default_context(cadata=ca.pem().decode())


def _issue(ca: CertAuthority, pki: Path) -> int:
    """A new key and certificate for the public VIP, written where the inventory names
    them; returns its serial number."""
    key = new_key()
    cert = ca.issue([PUBLIC], key)
    write_pair(pki, "public", cert, key)
    return cert.serial_number


def _served_serial(ca: CertAuthority, port: int) -> int:
    """The serial number of the certificate the public VIP serves on `port` (verified)."""
    with socket.create_connection((PUBLIC, port), timeout=10) as raw, \
            _client(ca).wrap_socket(raw, server_hostname=PUBLIC) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture(scope="module")
def scaled(lab: Lab, original: OriginalController,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledOut]:
    """deploy-lb then deploy-controllers of SERVICES behind two VIPs, TLS on the public one,
    with Glance's image store on a directory the three controllers share (the lab's
    stand-in for an NFS mount)."""
    for host in LBS + NEW:
        lab.hosts[host].reset()
    shared = share_directory(lab, CTLS)
    try:
        files_before = original_files(lab)
        state = tmp_path_factory.mktemp("full-scale-out")
        pki = state / "pki"
        pki.mkdir(mode=0o700)
        ca = CertAuthority.create("hadeploy lab CA")
        serial = _issue(ca, pki)
        inventory = write_lab_inventory(lab, state / "hosts.toml", services=SERVICES,
                                        rc_files=[(ORIGINAL, ADMIN_RC)])
        text = inventory.read_text().replace(
            'interface = "eth0"\n', f'interface = "eth0"\npublic_address = "{PUBLIC}"\n', 1)
        inventory.write_text(text + EXTRA.format(cert=pki / "public.crt",
                                                 key=pki / "public.key", override=OVERRIDE))
        output = ""
        for phase in ("lb", "controllers"):
            run = hadeploy(f"deploy-{phase}", "--hosts", str(inventory), "--yes",
                           timeout=1800)
            output += run.stdout + run.stderr
            if run.returncode != 0:
                pytest.fail(f"{output[-6000:]}\nthe original then:\n{original_diagnosis(lab)}")
        lab.hosts[ORIGINAL].exec(f"cat > {CA_ON_HOST}", input=ca.pem().decode())
        yield ScaledOut(inventory, files_before, output, ca, pki, serial)
    finally:
        lab.hosts[ORIGINAL].exec(["rm", "-f", CA_ON_HOST], check=False)
        unshare_directory(lab, CTLS, shared)
        for host in LBS + NEW:
            lab.hosts[host].reset()


def test_every_endpoint_is_on_a_vip_with_its_path(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    """Public endpoints on https://PUBLIC, internal and admin ones on http://VIP."""
    endpoints = openstack_json(lab, "endpoint list")
    assert len(endpoints) == 3 * len(CATALOG)
    for endpoint in endpoints:
        port, path = CATALOG[endpoint["Service Type"]]
        base = f"https://{PUBLIC}" if endpoint["Interface"] == "public" else f"http://{LAB_VIP}"
        assert endpoint["URL"] == f"{base}:{port}{path}", endpoint
    assert original.admin_password not in scaled.output


def test_every_api_answers_on_every_controller(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    for host in CTLS:
        session = Session.login(lab.hosts[host].address, original.admin_password)
        session.every_api(host)


def test_every_api_answers_through_the_vip(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    Session.login(LAB_VIP, original.admin_password).every_api("vip")
    # The operator's CLI: its rc file names the internal VIP, the catalog's public
    # endpoints the public one, over https.
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000/v3" in lab.hosts[ORIGINAL].exec(
        ["cat", ADMIN_RC]).stdout
    assert openstack_json(lab, "server list") == []
    assert openstack_json(lab, "resource provider list") == []
    created = json.loads(openstack(lab, "network create vip-net -f json"))
    assert created["name"] == "vip-net"
    assert {"lab-net", "vip-net"} <= {n["Name"] for n in openstack_json(lab, "network list")}
    assert openstack_json(lab, "volume list") == []
    assert openstack_json(lab, "stack list") == []
    openstack(lab, "container create vip-container")
    containers = {c["Name"] for c in openstack_json(lab, "container list")}
    assert {"lab-container", "vip-container"} <= containers


def test_an_image_uploaded_through_the_vip_downloads_through_the_vip(
        lab: Lab, scaled: ScaledOut) -> None:
    host = lab.hosts[ORIGINAL]
    image = upload_random_image(lab, "vip-image", 2000000)
    # Three downloads: haproxy's round robin hands one to each controller.
    for attempt in range(3):
        openstack(lab, f"image save --file /root/vip-image.{attempt} {image}")
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


# -- TLS on the public VIP, metrics, an operator's override, certificate renewal -----------

def test_every_api_answers_through_the_public_vip_over_https(
        original: OriginalController, scaled: ScaledOut) -> None:
    Session.login(PUBLIC, original.admin_password, tls=_client(scaled.ca)).every_api("public")


def test_the_public_vip_serves_the_certificate_and_the_internal_one_plain_http(
        lab: Lab, scaled: ScaledOut) -> None:
    assert one_holder(lab) == ["lb1"]
    holder = lab.hosts["lb1"].exec("ip -4 -o addr show dev eth0").stdout
    assert f" {LAB_VIP}/" in holder and f" {PUBLIC}/" in holder, holder
    assert {p: _served_serial(scaled.ca, p) for p in PUBLIC_PORTS} == \
        dict.fromkeys(PUBLIC_PORTS, scaled.serial)
    for lb in LBS:  # the bundle: root-only on every balancer
        assert lab.hosts[lb].exec(["stat", "-c", "%a %U", TLS_BUNDLE]).stdout.split() == \
            ["600", "root"], lb
    reply = request(LAB_VIP, 5000, "GET", "/v3")
    assert reply.status == 200
    assert reply.json()["version"]["links"][0]["href"] == f"http://{LAB_VIP}:5000/v3/"


def test_plain_http_on_the_public_vip_is_redirected_to_https(
        original: OriginalController, scaled: ScaledOut) -> None:
    """tls.redirect_http: the dashboard answers over https on 443 of the public VIP, plain
    HTTP on its port 80 gets a 301 to the same URL over https, the internal VIP's 80 stays
    plain HTTP."""
    path = "/horizon/auth/login/"
    moved = request(PUBLIC, 80, "GET", f"{path}?next=/horizon/")
    assert moved.status == 301, (moved.status, moved.body[:300])
    assert moved.headers["location"] == f"https://{PUBLIC}{path}?next=/horizon/", moved.headers
    page = request(PUBLIC, 443, "GET", path, tls=_client(scaled.ca))
    assert page.status == 200 and b'name="username"' in page.body, page.body[:300]
    internal = request(LAB_VIP, 80, "GET", path)
    assert internal.status == 200 and b'name="username"' in internal.body
    # no API port redirects: they speak TLS only on the public VIP
    with pytest.raises((ConnectionError, OSError, http.client.HTTPException)):
        request(PUBLIC, 5000, "GET", "/v3")


def _self_links(document: object) -> list[str]:
    """Every `href` of a link whose rel is "self" in a version document."""
    if isinstance(document, list):
        return [h for item in document for h in _self_links(item)]
    if not isinstance(document, dict):
        return []
    own = [str(document["href"])] if document.get("rel") == "self" and "href" in document else []
    return own + [h for value in document.values() for h in _self_links(value)]


def test_the_apis_build_https_links_through_the_public_vip(scaled: ScaledOut) -> None:
    """Keystone, Glance, Nova, Neutron, Cinder and Heat parse haproxy's X-Forwarded-Proto
    (deploy-controllers turned their proxy-header parsing on): the links of their version
    documents through https://PUBLIC say https://PUBLIC."""
    tls = _client(scaled.ca)
    for port, path in HTTPS_LINKS.items():
        reply = request(PUBLIC, port, "GET", path, tls=tls)
        assert reply.status in (200, 300), (port, reply.status, reply.body[:300])
        links = _self_links(reply.json())
        assert links and all(h.startswith(f"https://{PUBLIC}:{port}/") for h in links), \
            (port, links)


def test_metrics_on_the_monitor_listener(scaled: ScaledOut) -> None:
    connection = http.client.HTTPConnection(LAB_VIP, 9300, timeout=30)
    connection.request("GET", "/metrics")
    reply = connection.getresponse()
    body = reply.read().decode()
    connection.close()
    assert reply.status == 200, body[:500]
    assert reply.getheader("Content-Type", "").startswith("text/plain"), reply.getheaders()
    assert "# TYPE haproxy_frontend_http_requests_total counter" in body, body[:2000]
    counted = [line for line in body.splitlines()
               if line.startswith("haproxy_frontend_http_requests_total{")]
    for frontend in ("keystone-public-vip", "nova-compute-vip", "horizon-vip"):
        assert any(f'proxy="{frontend}"' in line for line in counted), (frontend, counted)


def test_an_override_line_is_deployed_and_acts(lab: Lab, scaled: ScaledOut) -> None:
    for lb in LBS:
        cfg = lab.hosts[lb].exec("cat /etc/haproxy/haproxy.cfg").stdout
        frontend = cfg.split("frontend keystone-public-vip\n")[1].split("\n\n")[0]
        assert f"    {OVERRIDE}\n" in frontend + "\n", frontend
    tls = _client(scaled.ca)
    assert request(PUBLIC, 5000, "GET", "/v3", tls=tls).headers.get(
        OVERRIDE_HEADER.lower()) == "keystone-public"
    assert OVERRIDE_HEADER.lower() not in request(PUBLIC, 9292, "GET", "/healthcheck",
                                                  tls=tls).headers


def test_a_renewed_certificate_is_served_and_no_request_fails(scaled: ScaledOut) -> None:
    """A new key and certificate, `deploy-lb` again: haproxy reloads with the new bundle
    while clients open new TLS connections through the public VIP."""
    old = scaled.serial
    scaled.serial = _issue(scaled.ca, scaled.pki)
    assert scaled.serial != old
    load = VipLoad(vip=PUBLIC, tls=_client(scaled.ca), clients=2, max_seconds=600)
    with load.running():
        run = hadeploy("deploy-lb", "--hosts", str(scaled.inventory), "--yes", "--json",
                       timeout=900)
    print(f"\ncertificate renewal through https://{PUBLIC}: {load.report()}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    changed = [e for e in events(run.stdout) if e["event"] == "host-changed"]
    assert sorted(str(e["host"]) for e in changed if e["step"] == "lb.tls") == list(LBS)
    assert not [e for e in changed if e["step"] == "lb.haproxy-cfg"], changed
    assert {p: _served_serial(scaled.ca, p) for p in PUBLIC_PORTS} == \
        dict.fromkeys(PUBLIC_PORTS, scaled.serial)
    assert load.fresh.sent >= MIN_REQUESTS, f"only {load.fresh}: too few to prove anything"
    assert load.fresh.failed == 0, (str(load.fresh), load.fresh.samples)
    assert load.kept.failed == 0, (str(load.kept), load.kept.samples)


def test_rerun_changes_and_restarts_nothing(lab: Lab, scaled: ScaledOut) -> None:
    pids = {h: daemon_pids(lab, h) for h in CTLS}
    assert all(pids.values()), pids
    again = hadeploy("deploy-controllers", "--hosts", str(scaled.inventory), "--yes", "--json",
                     timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    changed = [(e["step"], e["host"]) for e in events(again.stdout)
               if e["event"] == "host-changed"]
    assert changed == []
    assert {h: daemon_pids(lab, h) for h in CTLS} == pids


def test_rollback_leaves_the_original_serving_alone(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    back = hadeploy("rollback", "--phase", "controllers", "--hosts", str(scaled.inventory),
                    "--yes", timeout=1800)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    # glance-common's purge deletes /var/lib/glance, where the shared store is mounted on
    # the new controllers: it is removed, not purged, and the operator is told so (the
    # notice, in the events log as on the screen).
    log = (scaled.inventory.parent / ".hadeploy" / "events.log").read_text()
    notices = {str(e["host"]): str(e["text"]) for e in events(log)
               if e["event"] == "notice" and "controllers-rollback" in str(e["run_id"])
               and "not purged" in str(e["text"])}
    assert set(notices) == set(NEW), notices
    for text in notices.values():
        assert re.fullmatch(r"removed, not purged: .*glance-common.*: their purge deletes the "
                            r"directory holding the mount point /var/lib/glance/images .*",
                            text), text
    assert "removed, not purged: " in back.stdout
    assert original_files(lab) == scaled.files_before
    for endpoint in openstack_json(lab, "endpoint list"):
        port, path = CATALOG[endpoint["Service Type"]]
        assert endpoint["URL"] == f"http://{original.address}:{port}{path}", endpoint
    for host in NEW:
        left = ",".join(daemon_pids(lab, host).split())
        assert left == "", (host, lab.hosts[host].exec(f"ps -o pid,args -p {left}",
                                                       check=False).stdout)
        assert not any(installed(lab, host, p) for p in ("keystone", "nova-api",
                                                         "openstack-dashboard-apache"))
    # Every API of the original answers again, with the rc file back on its address, and
    # the images of the shared store are all there.
    Session.login(original.address, original.admin_password).every_api("after-rollback")
    for name in ("lab-image", "vip-image"):
        openstack(lab, f"image save --file /root/{name}.after {name}")
        assert lab.hosts[ORIGINAL].exec(f"cmp /root/{name}.raw /root/{name}.after",
                                        check=False).returncode == 0, name
    assert openstack_json(lab, "server list") == []
    assert openstack_json(lab, "stack list") == []


def test_rollback_of_the_lb_phase_takes_the_certificate_away(
        lab: Lab, original: OriginalController, scaled: ScaledOut) -> None:
    back = hadeploy("rollback", "--phase", "lb", "--hosts", str(scaled.inventory), "--yes",
                    timeout=900)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    for lb in LBS:
        assert lab.hosts[lb].exec(["test", "-e", TLS_BUNDLE], check=False).returncode == 1
        assert not installed(lab, lb, "haproxy"), lb
    assert f"OS_AUTH_URL={original.keystone_url}" in lab.hosts[ORIGINAL].exec(
        ["cat", ADMIN_RC]).stdout
    assert openstack_json(lab, "stack list") == []
