"""haproxy's health checks look at the application, not only at the TCP port.

ctl1 and ctl2 run stand-in APIs that answer Keystone's and Glance's checks (GET /v3 and
GET /healthcheck, 200); ctl3 accepts connections on both ports but its "Keystone" answers
every request with 503 and its "Glance" never answers at all: the ports are open, the APIs
are broken. A TCP check (what hadeploy still renders for grizzly, and rendered for every
release before) calls ctl3 up and clients get its errors through the VIP; the modern rendering
asks each API, and haproxy's stats socket reports ctl3 down with the layer-7 reason.

A daemon can also die under a request that a check let through. ctl3's APIs then answer
haproxy's checks but close every client's connection without an answer: a GET through the
VIP is retried on a healthy server (Debian's rendering: `retry-on ... empty-response`),
while a POST, which the dying daemon may have carried out, is not replayed.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from lab import Lab
from lab.inventory import LAB_VIP, lab_inventory_text
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import CTLS, LBS, fresh, hadeploy, start_backends, wait_for

pytestmark = pytest.mark.lab

BALANCERS = ("lb1", "lb2")
HEALTHY = ("ctl1", "ctl2")
BROKEN = "ctl3"
KEYSTONE, GLANCE = 5000, 9292
# Runs on ctl3: Keystone's port answers every request with 503; Glance's port accepts
# connections and never answers (a wedged API: the kernel still completes the handshake).
BROKEN_APIS = """\
import http.server, socket, sys, threading

address = sys.argv[1]


class Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def hold(port):
    server = socket.create_server((address, port), backlog=256)
    held = []
    while True:
        held.append(server.accept()[0])


threading.Thread(target=hold, args=(9292,), daemon=True).start()
http.server.ThreadingHTTPServer((address, 5000), Failing).serve_forever()
"""


# Runs on ctl3: both ports answer haproxy's checks (HTTP/1.0 requests) with 200 and close a
# client's connection (haproxy forwards those as HTTP/1.1) without answering, as a daemon
# that dies under a request does.
DYING_APIS = """\
import http.server, sys, threading

address = sys.argv[1]


class Dying(http.server.BaseHTTPRequestHandler):
    def answer_or_drop(self):
        if self.request_version == "HTTP/1.0":
            self.send_response(200)
            self.end_headers()
        else:
            self.close_connection = True

    do_GET = do_POST = answer_or_drop

    def log_message(self, *args):
        pass


def serve(port):
    http.server.ThreadingHTTPServer((address, port), Dying).serve_forever()


threading.Thread(target=serve, args=(9292,), daemon=True).start()
serve(5000)
"""


def _start_broken_apis(lab: Lab, program: str = BROKEN_APIS) -> None:
    host = lab.hosts[BROKEN]
    host.exec(["sh", "-c", "cat > /srv/broken_apis.py"], input=program)
    host.exec(f"setsid python3 /srv/broken_apis.py {host.address} </dev/null >/dev/null 2>&1 &")

    def ports_open() -> bool:
        for port in (KEYSTONE, GLANCE):
            try:
                socket.create_connection((host.address, port), 2).close()
            except OSError:
                return False
        return True

    wait_for(ports_open, f"{BROKEN}'s broken APIs to accept connections")


def _status(url: str, data: bytes | None = None) -> int | None:
    """The HTTP status a client gets (a POST when `data` is given), or None when nothing
    answers in time."""
    try:
        with urllib.request.urlopen(url, data, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _checks(inventory: Path) -> dict[tuple[int, str], tuple[str, str]]:
    """(port, server) -> (status, check) as lb1's haproxy reports them (`show stat` through
    `hadeploy verify`), for Keystone's and Glance's backends."""
    inv = load_inventory(inventory)
    backends = {inv.haproxy.backend_name.replace("{proxy}", name): port
                for name, port in (("keystone-public", KEYSTONE), ("glance", GLANCE))}
    run = hadeploy("verify", "--hosts", str(inventory), "--json", timeout=120)
    assert run.stdout.strip(), run.stderr
    (lb1,) = [b for b in json.loads(run.stdout)["balancers"] if b["name"] == "lb1"]
    # "* " marks a check that is running as the stats are read: its last result follows
    return {(backends[row["backend"]], row["server"]): (row["status"],
                                                        row["check"].removeprefix("* "))
            for row in lb1["servers"] if row["backend"] in backends and row["server"] in CTLS}


def _settled(inventory: Path, broken_up: bool) -> dict[tuple[int, str], tuple[str, str]]:
    """haproxy's view once the healthy servers are UP and the broken one UP or DOWN."""
    def seen() -> dict[tuple[int, str], tuple[str, str]] | None:
        checks = _checks(inventory)
        want = {(p, s): s in HEALTHY or broken_up for p in STAND_IN_PORTS for s in CTLS}
        got = {k: v[0].startswith("UP") for k, v in checks.items()}
        # DOWN only once haproxy has finished its checks (not "DOWN 1/2" while going down)
        final = all(v[0] in ("UP", "DOWN") for v in checks.values())
        return checks if got == want and final else None
    return wait_for(seen, f"haproxy to see {BROKEN} {'UP' if broken_up else 'DOWN'}",
                    seconds=90)


def _deploy(lab: Lab, tmp_path: Path, release: str) -> Path:
    text = lab_inventory_text(lab, lbs=BALANCERS).replace(
        'release = "modern"', f'release = "{release}"')
    inventory = tmp_path / "hosts.toml"
    inventory.write_text(text)
    inventory.chmod(0o600)
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    return inventory


def test_http_checks_take_a_wedged_api_out_where_a_tcp_check_kept_it(lab: Lab,
                                                                     tmp_path: Path) -> None:
    fresh(lab, LBS + CTLS)
    start_backends(lab, HEALTHY, STAND_IN_PORTS)
    _start_broken_apis(lab)

    # TCP checks (grizzly): the open ports pass, the broken APIs stay in the pool.
    inventory = _deploy(lab, tmp_path, "grizzly")
    assert "httpchk" not in lab.hosts["lb1"].exec(["cat", "/etc/haproxy/haproxy.cfg"]).stdout
    checks = _settled(inventory, broken_up=True)
    print("TCP checks:", checks)
    for port in STAND_IN_PORTS:
        assert checks[port, BROKEN][1].startswith("L4OK"), checks
    statuses = [_status(f"http://{LAB_VIP}:{KEYSTONE}/v3") for _ in range(6)]
    assert 503 in statuses and 200 in statuses, statuses  # clients get the broken backend

    # HTTP checks (modern): the same hosts, the broken APIs are taken out with the reason.
    _deploy(lab, tmp_path, "modern")
    cfg = lab.hosts["lb1"].exec(["cat", "/etc/haproxy/haproxy.cfg"]).stdout
    assert "option httpchk GET /v3\n    http-check expect status 200\n" in cfg
    checks = _settled(inventory, broken_up=False)
    print("HTTP checks:", checks)
    assert checks[KEYSTONE, BROKEN][1].startswith("L7STS"), checks  # answered 503
    assert checks[GLANCE, BROKEN][1].startswith("L7TOUT"), checks  # never answered
    for port in STAND_IN_PORTS:
        for server in HEALTHY:
            assert checks[port, server] == ("UP", "L7OK Layer7 check passed"), checks
    assert [_status(f"http://{LAB_VIP}:{KEYSTONE}/v3") for _ in range(6)] == [200] * 6
    assert {_status(f"http://{LAB_VIP}:{GLANCE}/healthcheck") for _ in range(6)} == {200}


def test_a_get_that_met_a_dying_daemon_is_retried_a_post_is_not(lab: Lab,
                                                                  tmp_path: Path) -> None:
    fresh(lab, LBS + CTLS)
    start_backends(lab, HEALTHY, STAND_IN_PORTS)
    _start_broken_apis(lab, DYING_APIS)
    inventory = _deploy(lab, tmp_path, "modern")
    checks = _settled(inventory, broken_up=True)  # ctl3 passes its checks: in the pool
    assert checks[KEYSTONE, BROKEN] == ("UP", "L7OK Layer7 check passed"), checks

    # Every third GET goes to ctl3, which closes it unanswered: haproxy sends it again to
    # ctl1 or ctl2, and no client sees the 502 it would have got.
    statuses = [_status(f"http://{LAB_VIP}:{KEYSTONE}/v3") for _ in range(30)]
    assert statuses == [200] * 30, statuses
    # A POST that met ctl3 is not replayed: its client gets the 502 (ctl1 and ctl2's
    # stand-ins answer a POST with 501, not implemented).
    posts = [_status(f"http://{LAB_VIP}:{KEYSTONE}/v3", b"{}") for _ in range(6)]
    assert 502 in posts and set(posts) <= {501, 502}, posts
