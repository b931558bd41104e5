"""Guide 2's supporting services behind the VIP, on real daemons: haproxy and keepalived on the
controllers themselves, in front of a three-node MariaDB Galera cluster and a RabbitMQ cluster
on the same nodes (lab.openstack.supporting: the operator's part, each bound to its node's
address, Galera with its health responder on 9200), memcached beside them.

SQL through the VIP reaches one Galera node at a time; when that node's responder reports it
down (desynchronised, as for a backup), haproxy cuts its sessions and new ones go to the next
node. The monitor listener answers /status and guards /admin with the password from the
environment. Guide 2's whole haproxy.cfg passes `haproxy -c` on the controllers.
"""

from __future__ import annotations

import base64
import csv
import io
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from hadeploy.render import balanced_proxies
from lab import Lab
from lab.inventory import LAB_VIP, lab_inventory_text
from lab.openstack.galera import SQL_CLIENT_CNF, health_status, set_desync
from lab.openstack.rabbitmq import running_nodes
from lab.openstack.supporting import MEMCACHED_PORT, Supporting, provision_supporting
from tests.lab.helpers import (
    CTLS,
    LBS,
    OPENSTACK_UNAVAILABLE,
    STATS_PASSWORD,
    hadeploy,
    installed,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

BALANCED = (3306, 5672)  # galera and rabbitmq: haproxy holds them on the VIP of every node
MONITOR_PORT = 9300
WILDCARDS = ("0.0.0.0", "*", "[::]", "::")
GALERA_BACKEND = "galera-api"  # hadeploy's default backend name, {proxy}-api
CLIENT = "ctl3"  # where the SQL clients run (a host with MariaDB's client)
LONG_OUT, LONG_RC = "/tmp/hadeploy-long-session.out", "/tmp/hadeploy-long-session.rc"
# Guide 2 on modern: every service the catalog balances there (ceilometer is refused).
GUIDE2 = ("galera", "rabbitmq", "keystone", "glance", "cinder", "swift", "neutron", "novnc",
          "nova", "horizon", "heat")
Deployed = tuple[Lab, Path, Supporting]


def _inventory(lab: Lab, directory: Path, services: tuple[str, ...]) -> Path:
    text = lab_inventory_text(lab, topology="colocated", services=services)
    old = 'timeout_connect = "2s"\n'
    assert old in text, "test bug: the lab inventory changed"
    text = text.replace(old, f'{old}\n[haproxy.monitor]\nport = {MONITOR_PORT}\n', 1)
    path = directory / f"hosts-{len(services)}.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def deployed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """The supporting services on ctl1-ctl3, then `deploy-lb` co-located balancing them."""
    if OPENSTACK_UNAVAILABLE:
        pytest.skip(OPENSTACK_UNAVAILABLE[0])
    for host in LBS:  # lb1-lb3 of another module could hold the same VIP
        lab.hosts[host].reset()
    started = time.monotonic()
    supporting = provision_supporting(lab, CTLS)
    state = tmp_path_factory.mktemp("colocated-support")
    inventory = _inventory(lab, state, ("galera", "rabbitmq"))
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    print(f"supporting services {supporting.timings}, with deploy-lb "
          f"{time.monotonic() - started:.0f} s")
    yield lab, inventory, supporting


def _listeners(lab: Lab, host: str) -> dict[int, set[str]]:
    """The addresses each port listens on, from `ss -ltn`."""
    found: dict[int, set[str]] = {}
    for line in lab.hosts[host].exec(["ss", "-Hltn"]).stdout.splitlines():
        address, _, port = line.split()[3].rpartition(":")
        found.setdefault(int(port), set()).add(address)
    return found


def _sql_node(lab: Lab) -> str:
    """The Galera node a new SQL connection through the VIP reaches."""
    return lab.hosts[CLIENT].exec(
        ["mysql", f"--defaults-extra-file={SQL_CLIENT_CNF}", "-h", LAB_VIP, "-N", "-B", "-e",
         "SELECT @@wsrep_node_name"], timeout=60).stdout.strip()


def _admin(path: str, password: str | None = STATS_PASSWORD) -> tuple[int, str]:
    """Status and body of a GET of the monitor listener's `path` through the VIP."""
    request = urllib.request.Request(f"http://{LAB_VIP}:{MONITOR_PORT}{path}")
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as answer:
        return answer.code, ""


def _galera_states() -> dict[str, str]:
    """Server -> status of the galera backend, from the VIP holder's stats page (CSV)."""
    _, body = _admin("/admin;csv")
    rows = list(csv.DictReader(io.StringIO(body.lstrip("# "))))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == GALERA_BACKEND
            and r["svname"] not in ("FRONTEND", "BACKEND")}


def test_each_service_listens_on_its_node_and_haproxy_on_the_vip(deployed: Deployed) -> None:
    lab = deployed[0]
    for host in CTLS:
        listeners = _listeners(lab, host)
        address = lab.hosts[host].address
        for port in BALANCED:
            assert listeners[port] == {address, LAB_VIP}, (host, port, listeners)
        assert listeners[MEMCACHED_PORT] == {address}, (host, listeners)
        assert listeners[9200] == {address}, (host, listeners)  # Galera's responder
        assert listeners[MONITOR_PORT] == {LAB_VIP}, (host, listeners)
        assert not {p for p in (*BALANCED, MEMCACHED_PORT)
                    if listeners[p] & set(WILDCARDS)}, (host, listeners)


def test_the_clusters_have_three_nodes(deployed: Deployed) -> None:
    lab = deployed[0]
    assert running_nodes(lab.hosts["ctl2"]) == [f"rabbit@{h}" for h in CTLS]
    for host in CTLS:
        assert health_status(lab.hosts[host]) == 200, host
        size = lab.hosts[host].exec(["mysql", "-N", "-B", "-e",
                                     "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'"]).stdout
        assert size.split() == ["wsrep_cluster_size", "3"], host


def test_sql_through_the_vip_reaches_one_node_at_a_time(deployed: Deployed) -> None:
    lab = deployed[0]
    assert {_sql_node(lab) for _ in range(5)} == {"ctl1"}  # the first server, the others backup


def test_a_node_reported_down_loses_its_sessions_and_new_ones_go_to_the_next(
        deployed: Deployed) -> None:
    lab = deployed[0]
    client = lab.hosts[CLIENT]
    # A session that stays open on ctl1: its first result comes at once, then it sleeps.
    client.exec(
        f"rm -f {LONG_OUT} {LONG_RC}; setsid sh -c 'mysql --defaults-extra-file="
        f"{SQL_CLIENT_CNF} -h {LAB_VIP} -n -N -B -e \"SELECT @@wsrep_node_name; "
        f"SELECT SLEEP(600)\" >{LONG_OUT} 2>&1; echo $? >{LONG_RC}' "
        "</dev/null >/dev/null 2>&1 &")
    wait_for(lambda: "ctl1" in client.exec(["cat", LONG_OUT], check=False).stdout or None,
             "the long session's first result")
    ctl1 = lab.hosts["ctl1"]
    try:
        set_desync(ctl1, True)
        assert health_status(ctl1) == 503
        # haproxy marks ctl1 down after its failed checks and shuts its sessions down
        rc = wait_for(lambda: client.exec(["cat", LONG_RC], check=False).stdout.strip() or None,
                      "the session on the node marked down to be cut", seconds=60)
        out = client.exec(["cat", LONG_OUT]).stdout
        assert rc != "0" and "Lost connection" in out, (rc, out)
        assert {_sql_node(lab) for _ in range(3)} == {"ctl2"}  # the first backup
    finally:
        set_desync(ctl1, False)
    wait_for(lambda: _galera_states().get("ctl1") == "UP", "haproxy to see ctl1 up again")
    # stick on dst: the VIP's entry names ctl2 now, and SQL stays there (no flip back)
    assert {_sql_node(lab) for _ in range(3)} == {"ctl2"}


def test_rabbitmq_answers_through_the_vip(deployed: Deployed) -> None:
    """An AMQP 0-9-1 client's greeting through the VIP gets RabbitMQ's Connection.Start."""
    with socket.create_connection((LAB_VIP, 5672), timeout=10) as amqp:
        amqp.sendall(b"AMQP\x00\x00\x09\x01")
        frame = b""
        while len(frame) < 7 or len(frame) < 8 + int.from_bytes(frame[3:7], "big"):
            chunk = amqp.recv(4096)
            assert chunk, frame
            frame += chunk
    assert frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"  # method frame, Connection.Start
    assert b"RabbitMQ" in frame and b"rabbit@ctl1" in frame  # product, cluster_name


def test_monitor_answers_status_and_guards_admin(deployed: Deployed) -> None:
    assert _admin("/status", password=None)[0] == 200
    assert _admin("/admin", password=None)[0] == 401
    assert _admin("/admin", password="not-the-password")[0] == 401
    status, page = _admin("/admin")
    assert status == 200 and GALERA_BACKEND in page


def test_guide2_whole_haproxy_cfg_passes_haproxy_c_and_ceilometer_is_refused(
        deployed: Deployed, tmp_path: Path) -> None:
    lab = deployed[0]
    rendered = hadeploy("render", "haproxy", "--hosts", str(_inventory(lab, tmp_path, GUIDE2)))
    assert rendered.returncode == 0, rendered.stderr
    proxies = balanced_proxies(load_inventory(_inventory(lab, tmp_path, GUIDE2)))
    assert rendered.stdout.count("\nfrontend ") == len(proxies) > len(GUIDE2)
    assert "\nlisten monitor\n" in rendered.stdout
    for host in CTLS:
        check = lab.hosts[host].exec(
            "cat >/tmp/guide2.cfg && haproxy -c -f /tmp/guide2.cfg", input=rendered.stdout,
            check=False)
        assert check.returncode == 0, (host, check.stdout + check.stderr)
    refused = hadeploy("render", "haproxy", "--hosts",
                       str(_inventory(lab, tmp_path, (*GUIDE2, "ceilometer"))))
    assert refused.returncode == 2
    assert "ceilometer cannot be balanced with release modern" in refused.stderr


def test_rollback_leaves_the_clusters_on_their_node_addresses(deployed: Deployed) -> None:
    """haproxy and keepalived go (the run installed them); the clusters stay as they were."""
    lab, inventory, _ = deployed
    back = hadeploy("rollback", "--phase", "lb", "--hosts", str(inventory), "--yes", timeout=900)
    assert back.returncode == 0, back.stdout[-5000:] + back.stderr[-3000:]
    for host in CTLS:
        listeners = _listeners(lab, host)
        for port in BALANCED:
            assert listeners[port] == {lab.hosts[host].address}, (host, port, listeners)
        assert MONITOR_PORT not in listeners
        assert not installed(lab, host, "haproxy") and not installed(lab, host, "keepalived")
    assert running_nodes(lab.hosts["ctl1"]) == [f"rabbit@{h}" for h in CTLS]
