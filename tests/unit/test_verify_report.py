"""`invoke verify` without hosts: haproxy's `show stat` parsed, the report judged and drawn.

The report is built from canned host answers; `Deployment.verify()` runs against a transport
that never connects and a frontend probe that is refused, so nothing leaves this machine.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hadeploy.app import Deployment
from hadeploy.errors import InventoryError, TransportError
from hadeploy.inventory import Inventory
from hadeploy.transport.base import Result, Transport
from hadeploy.verify import (
    BalancerState,
    FrontendState,
    Report,
    ServerState,
    judge,
    parse_show_stat,
)
from hadeploy.verify_console import print_report
from tests.unit.examples import COLOCATED

VIP = "10.15.85.31"
SHOW_STAT = (
    "# pxname,svname,qcur,status,check_status,check_desc\n"
    "keystone-vip,FRONTEND,,OPEN,,\n"
    "keystone-api,ctl1,0,UP,L7OK,Layer7 check passed\n"
    "keystone-api,ctl2,0,DOWN,L4CON,Layer4 connection problem\n"
    "keystone-api,BACKEND,0,UP,,\n"
    "\n"
)


def balancer(name: str, holds_vip: bool = False, haproxy: str = "running",
             keepalived: str = "running", servers: list[ServerState] | None = None,
             ) -> BalancerState:
    return BalancerState(name, f"198.18.0.{len(name)}", reachable=True, holds_vip=holds_vip,
                         keepalived=keepalived, haproxy=haproxy, stats_via="perl",
                         servers=servers or [])


def frontend(name: str = "keystone", connected: bool = True, note: str = "") -> FrontendState:
    return FrontendState(name, 5000, "http", connected=connected,
                         seconds=0.004 if connected else None,
                         http_status=300 if connected else None, note=note)


def judged(balancers: list[BalancerState], frontends: list[FrontendState]) -> Report:
    report = Report(VIP, balancers, frontends)
    report.problems = judge(report)
    return report


def shown(report: Report) -> str:
    out = io.StringIO()
    print_report(Console(file=out, width=200, no_color=True, highlight=False), report)
    return out.getvalue()


# -- show stat --------------------------------------------------------------------------------


def test_show_stat_gives_servers_and_backends_but_not_frontends() -> None:
    rows = parse_show_stat("via perl is not part of it\n" + SHOW_STAT)
    assert [(r.backend, r.server, r.status) for r in rows] == [
        ("keystone-api", "ctl1", "UP"), ("keystone-api", "ctl2", "DOWN"),
        ("keystone-api", "BACKEND", "UP")]
    assert rows[0].check == "L7OK Layer7 check passed"
    assert rows[2].check == ""


@pytest.mark.parametrize("answer", ["", "Unknown command.\n", "connect: Permission denied\n"])
def test_an_answer_without_the_csv_header_is_an_error_quoting_it(answer: str) -> None:
    with pytest.raises(ValueError, match=answer.strip() or "empty answer"):
        parse_show_stat(answer)


# -- judging ----------------------------------------------------------------------------------


def test_one_holder_everything_running_is_healthy_even_with_a_down_server() -> None:
    down = [ServerState("keystone-api", "ctl2", "DOWN", "L4CON")]
    report = judged([balancer("lb1", holds_vip=True, servers=down), balancer("lb2")],
                    [frontend()])
    assert report.problems == [] and report.healthy
    assert report.holders == ["lb1"]


def test_no_holder_and_split_brain() -> None:
    assert judged([balancer("lb1"), balancer("lb2")], []).problems == [
        f"no balancer holds the VIP {VIP}"]
    assert judged([balancer("lb1", True), balancer("lb2", True)], []).problems == [
        f"2 balancers hold the VIP {VIP} at once (lb1, lb2): split brain"]


def test_each_unhealthy_part_is_one_problem_naming_where() -> None:
    lost = BalancerState("lb3", "198.18.0.13", error="connect timed out")
    report = judged(
        [balancer("lb1", True), balancer("lb2", haproxy="stopped", keepalived="?"), lost],
        [frontend(), frontend("glance", connected=False, note="Connection refused")])
    assert report.problems == [
        "lb2: haproxy is not running",
        "lb2: keepalived is not running",
        "lb3: not reachable: connect timed out",
        f"frontend glance ({VIP}:5000) does not accept connections: Connection refused",
    ]
    assert not report.healthy


def test_json_report_keeps_its_shape() -> None:
    report = judged([balancer("lb1", True, servers=parse_show_stat(SHOW_STAT))], [frontend()])
    data = json.loads(json.dumps(report.to_json(), sort_keys=True))
    assert sorted(data) == ["balancers", "frontends", "healthy", "holders", "problems", "vip"]
    assert (data["vip"], data["healthy"], data["holders"]) == (VIP, True, ["lb1"])
    assert sorted(data["balancers"][0]) == [
        "address", "error", "haproxy", "holds_vip", "keepalived", "name", "reachable",
        "servers", "stats_note", "stats_via"]
    assert data["balancers"][0]["servers"][1] == {
        "backend": "keystone-api", "server": "ctl2", "status": "DOWN",
        "check": "L4CON Layer4 connection problem"}
    assert sorted(data["frontends"][0]) == [
        "connected", "http_status", "mode", "name", "note", "port", "seconds"]


# -- rendering --------------------------------------------------------------------------------


def test_a_healthy_report_shows_holder_backends_and_frontends() -> None:
    rows = parse_show_stat(SHOW_STAT)
    text = shown(judged([balancer("lb1", True, servers=rows), balancer("lb2", servers=rows)],
                        [frontend()]))
    assert f"VIP {VIP} is held by lb1" in text
    assert "holds it" in text and "backup" in text and "via perl" in text
    assert "haproxy's view of the backends (show stat)" in text
    ctl2 = next(line for line in text.splitlines() if " ctl2 " in line)
    assert ctl2.count("DOWN") == 2 and "L4CON" in ctl2
    assert "ok 4 ms" in text and "300" in text
    assert text.rstrip().splitlines()[-1].startswith("healthy: one VIP holder")
    assert "UNHEALTHY" not in text


def test_an_unhealthy_report_lists_every_problem_and_unread_backends() -> None:
    lost = BalancerState("lb3", "198.18.0.13", error="host key [changed]")
    unread = balancer("lb2", haproxy="stopped")
    unread.stats_via, unread.stats_note = None, "no stats socket at /var/lib/haproxy/stats"
    text = shown(judged([unread, lost], [frontend(connected=False, note="timed out")]))
    assert "is held by nobody" in text
    assert "unreachable: host key [changed]" in text  # shown as written, not as markup
    assert "not read: no stats socket at /var/lib/haproxy/stats" in text
    assert "refused" in text
    lines = text.rstrip().splitlines()
    start = lines.index("UNHEALTHY")
    assert lines[start + 1:] == [
        f"  - no balancer holds the VIP {VIP}",
        "  - lb2: haproxy is not running",
        "  - lb3: not reachable: host key [changed]",
        f"  - frontend keystone ({VIP}:5000) does not accept connections: timed out",
    ]
    assert "haproxy's view" not in text  # no balancer's backends could be read


# -- Deployment.verify ------------------------------------------------------------------------


class Unreachable:
    """A transport to hosts that are all down, saying so with the secret in the message."""

    probe_ahead = False

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.closed = False

    def stats(self) -> Mapping[str, Any]:
        return {}

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        raise TransportError(host, f"connection refused (password {self.secret})")

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        raise AssertionError("verify only runs scripts")

    def keep(self, host: str, script: str) -> None:
        raise AssertionError("verify only runs scripts")

    def close(self) -> None:
        self.closed = True


def colocated(tmp_path: Path, known_hosts: Path) -> str:
    path = tmp_path / "colocated.toml"
    text = (COLOCATED).read_text()
    path.write_text(text.replace("[ssh]\n", f"[ssh]\nknown_hosts = \"{known_hosts}\"\n", 1))
    assert str(known_hosts) in path.read_text()
    return str(path)


def test_verify_reports_unreachable_hosts_with_secrets_masked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Stats-Secret-4711"
    monkeypatch.setenv("HADEPLOY_STATS_PASSWORD", secret)
    known = tmp_path / "known_hosts"
    known.write_text("")

    def refused(*args: Any, **kwargs: Any) -> socket.socket:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    transports: list[Unreachable] = []

    def factory(inv: Inventory) -> Transport:
        transports.append(Unreachable(secret))
        return transports[-1]

    report = Deployment(colocated(tmp_path, known), transport_factory=factory).verify()
    assert [t.closed for t in transports] == [True]
    assert not report.healthy and report.holders == []
    assert all(not b.reachable for b in report.balancers)
    assert report.balancers[0].error == "connection refused (password ********)"
    assert all(not f.connected and f.note == "Connection refused" for f in report.frontends)
    assert secret not in json.dumps(report.to_json()) + shown(report)


def test_verify_refuses_a_missing_known_hosts_before_connecting(tmp_path: Path) -> None:
    def factory(inv: Inventory) -> Transport:
        raise AssertionError("a connection was attempted")

    deployment = Deployment(colocated(tmp_path, tmp_path / "absent"), transport_factory=factory)
    with pytest.raises(InventoryError, match=r"ssh\.known_hosts: .*absent does not exist"):
        deployment.verify()
