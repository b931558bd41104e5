"""`invoke verify`: the live health report, read from real hosts after a real deploy.

The first tests need no lab: they run the stats-socket probe with the workstation's own sh
against a fake haproxy socket, to show which reader it picks and that a host without any
reader says so rather than reporting nothing as if all were well.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadeploy.verify import parse_show_stat, stats_script
from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    CTLS,
    LBS,
    hadeploy,
    pidfile_pid,
    start_backends,
    vip_holders,
    wait_for,
)

pytestmark = pytest.mark.lab

SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,"
    "lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,"
    "hrsp_1xx,check_desc\n"
    "glance-api-vip,FRONTEND,,,0,0,10000,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,,\n"
    "glance-api-api,ctl1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,5,0,,1,3,1,,0,,2,0,,0,L7OK,200,"
    "1,0,Layer7 check passed\n"
    "glance-api-api,ctl2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,5,5,,1,3,2,,0,,2,0,,0,L4CON,,"
    "0,0,Layer4 connection problem\n"
    "glance-api-api,BACKEND,0,0,0,0,1000,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,5,0,,1,3,0,,0,,1,0,,0,,,"
    ",0,\n"
    "\n"
)


@pytest.fixture
def fake_stats_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket answering `show stat` like haproxy, once per connection."""
    path = tmp_path / "stats"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(10)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if conn.recv(64).startswith(b"show stat"):
                    conn.sendall(SHOW_STAT.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    server.close()


def _probe(path: Path, env_path: str) -> str:
    return subprocess.run(["/bin/sh", "-c", stats_script(str(path))], capture_output=True,
                          text=True, env={"PATH": env_path}, timeout=30).stdout


def test_stats_probe_reads_the_socket_and_parses_servers(fake_stats_socket: Path) -> None:
    out = _probe(fake_stats_socket, "/usr/sbin:/usr/bin:/sbin:/bin")
    head, _, body = out.partition("\n")
    assert head in ("via socat", "via perl", "via python3")
    rows = parse_show_stat(body)
    assert [(r.backend, r.server, r.status) for r in rows] == [
        ("glance-api-api", "ctl1", "UP"), ("glance-api-api", "ctl2", "DOWN"),
        ("glance-api-api", "BACKEND", "UP")]
    assert rows[1].check == "L4CON Layer4 connection problem"


def test_stats_probe_without_any_reader_says_so(fake_stats_socket: Path,
                                                tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    out = _probe(fake_stats_socket, str(empty))
    assert out.startswith("none: neither socat, perl nor python3"), out
    assert _probe(tmp_path / "missing", "/usr/bin:/bin").startswith("none: no stats socket")


def _verify_json(inventory: Path) -> tuple[int, dict[str, object]]:
    run = hadeploy("verify", "--hosts", str(inventory), "--json", timeout=120)
    assert run.stdout.strip(), run.stderr
    return run.returncode, json.loads(run.stdout)


def _all_servers_up(report: dict[str, object]) -> bool:
    balancers = report["balancers"]
    assert isinstance(balancers, list)
    return all(b["servers"] and all(s["status"].startswith("UP") for s in b["servers"])
               for b in balancers)


def test_verify_reports_a_healthy_deployment_then_a_dead_haproxy(lab: Lab,
                                                                  tmp_path: Path) -> None:
    for host in LBS + CTLS:
        lab.hosts[host].reset()
    start_backends(lab, CTLS, STAND_IN_PORTS)
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    wait_for(lambda: vip_holders(lab, LBS, LAB_VIP) == ["lb1"], "lb1 to hold the VIP")
    # haproxy marks servers UP after its first health checks (check inter 2s).
    code, report = wait_for(lambda: (r if _all_servers_up((r := _verify_json(inventory))[1])
                                     else None), "haproxy to see every backend UP")

    assert code == 0 and report["healthy"] is True, report
    assert report["holders"] == ["lb1"]
    balancers = {b["name"]: b for b in report["balancers"]}  # type: ignore[attr-defined]
    assert set(balancers) == set(LBS)
    for b in balancers.values():
        assert (b["keepalived"], b["haproxy"], b["reachable"]) == ("running", "running", True)
        # deploy-lb installs socat (drained restarts), so verify reads the stats with it.
        assert b["stats_via"] == "socat" and b["stats_note"] is None
        servers: dict[str, set[str]] = {}
        for row in b["servers"]:
            servers.setdefault(row["backend"], set()).add(row["server"])
        assert len(servers) == len(STAND_IN_PORTS), servers  # one backend per frontend
        assert all(names == {*CTLS, "BACKEND"} for names in servers.values()), servers
    assert [b["holds_vip"] for b in report["balancers"]] == [True, False, False]  # type: ignore[attr-defined]
    fronts = report["frontends"]
    assert isinstance(fronts, list)
    assert {f["port"] for f in fronts} == set(STAND_IN_PORTS)
    assert all(f["connected"] and f["http_status"] == 200 for f in fronts), fronts

    shown = hadeploy("verify", "--hosts", str(inventory))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    backend = report["balancers"][0]["servers"][0]["backend"]  # type: ignore[index]
    for text in (f"VIP {LAB_VIP} is held by lb1", "haproxy's view of the backends",
                 backend, "via socat", "healthy"):
        assert text in shown.stdout, shown.stdout

    pid = pidfile_pid(lab, "lb2", "/run/haproxy.pid")
    assert pid
    lab.hosts["lb2"].exec(["kill", str(pid)])
    wait_for(lambda: _verify_json(inventory)[1]["balancers"][1]["haproxy"] == "stopped",  # type: ignore[index]
             "verify to see haproxy stopped on lb2")
    code, report = _verify_json(inventory)
    assert code == 1 and report["healthy"] is False
    assert "lb2: haproxy is not running" in report["problems"]  # type: ignore[operator]
    lb2 = report["balancers"][1]  # type: ignore[index]
    assert lb2["stats_note"], lb2  # its backends could not be read, and it says so
    assert report["holders"] == ["lb1"]  # a backup's haproxy died: the VIP stays put
    shown = hadeploy("verify", "--hosts", str(inventory))
    assert shown.returncode == 1
    assert "UNHEALTHY" in shown.stdout and "lb2: haproxy is not running" in shown.stdout
