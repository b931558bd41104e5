"""`invoke verify`: gather and judge a live, read-only health report of the balancers and VIP.

From every balancer, in one SSH round trip each (in parallel):
  - whether it holds the VIP (`ip -o addr`);
  - whether keepalived and haproxy run, from their pid files and /proc, as the deploy
    checks them (init scripts lie, and Debian's keepalived has no `status`);
  - haproxy's own view of every backend server: `show stat` on its stats socket.

Reading a unix socket needs a client on the host. haproxy cannot query itself, and socat
is rarely installed, so the probe takes the first of: socat; perl (perl-base is Essential
on Debian and Ubuntu, so every such host has it, and its core Socket module speaks to unix
sockets in a few milliseconds); python3 (on OpenStack controllers, hence on co-located
balancers, but not guaranteed on a bare LB node, and the only one of the three on a minimal
EL 8/9). When none is there, or the socket is missing, the report says that the backends
were not read, and why, instead of showing nothing as if all were well.

From the workstation: a TCP connection to every frontend on the VIP and, for frontends in
http mode, the status line of `GET /`.

Healthy means: exactly one balancer holds the VIP, every balancer is reachable and runs
haproxy and keepalived, and every frontend accepts a connection. Backend servers that
haproxy marks DOWN are shown but do not make the load balancers unhealthy.
Nothing here changes anything, on the hosts or in the journal. `Deployment.verify()` returns
the `Report`; hadeploy.verify_console draws it.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from hadeploy import framing
from hadeploy.errors import HadeployError, host_reason
from hadeploy.facts import Fact, Probe
from hadeploy.facts.network import vip_held
from hadeploy.facts.system import daemon_state
from hadeploy.inventory.model import Inventory, Node
from hadeploy.quoting import q
from hadeploy.render import balanced_proxies
from hadeploy.runbook.lb import HAPROXY_PIDFILES, KEEPALIVED_PIDFILES
from hadeploy.transport.base import Transport

SECTIONS = "hadeploy-verify"
CONNECT_TIMEOUT = 2.0
HTTP_TIMEOUT = 3.0

_PYTHON_READER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n"
    "s.settimeout(5)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'show stat\\n')\n"
    "sys.stdout.write(b''.join(iter(lambda:s.recv(65536),b'')).decode('utf-8','replace'))\n"
)
_PERL_READER = (
    "alarm 5; socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die \"socket: $!\\n\"; "
    "connect($s, pack_sockaddr_un($ARGV[0])) or die \"connect: $!\\n\"; "
    "syswrite($s, \"show stat\\n\"); print while <$s>;"
)


def stats_script(socket_path: str | None) -> str:
    """Shell: print `via TOOL` then haproxy's `show stat` CSV, or `none: WHY`."""
    if not socket_path:
        return "echo 'none: haproxy.stats_socket is not set in the inventory'"
    sock = q(socket_path)
    return (
        f"if [ ! -S {sock} ]; then echo {q(f'none: no stats socket at {socket_path}')}; "
        "elif command -v socat >/dev/null 2>&1; then echo 'via socat'; "
        f"echo 'show stat' | socat -t 5 - UNIX-CONNECT:{sock} 2>&1; "
        "elif command -v perl >/dev/null 2>&1; then echo 'via perl'; "
        f"perl -MSocket -e {q(_PERL_READER)} {sock} 2>&1; "
        "elif command -v python3 >/dev/null 2>&1; then echo 'via python3'; "
        f"python3 -c {q(_PYTHON_READER)} {sock} 2>&1; "
        "else echo 'none: neither socat, perl nor python3 on the host to read the stats "
        "socket'; fi"
    )


def balancer_facts(inv: Inventory) -> tuple[Fact[bool], Fact[str], Fact[str]]:
    """The facts the deploy reads too: VIP held?, keepalived and haproxy running?"""
    return (vip_held(str(inv.vip.address)),
            daemon_state("keepalived", KEEPALIVED_PIDFILES, "sysv"),
            daemon_state("haproxy", HAPROXY_PIDFILES, "sysv"))


def balancer_script(inv: Inventory) -> str:
    """One read-only script: VIP held?, keepalived and haproxy running?, `show stat`."""
    vip, keepalived, haproxy = balancer_facts(inv)
    return framing.sections_script(SECTIONS, [
        ("vip", vip.command or "true"),
        ("keepalived", keepalived.command or "true"),
        ("haproxy", haproxy.command or "true"),
        ("stats", stats_script(inv.haproxy.stats_socket)),
    ])


@dataclass
class ServerState:
    """One row of haproxy's `show stat`: a backend server, or a backend as a whole."""

    backend: str
    server: str
    status: str
    check: str = ""


def parse_show_stat(text: str) -> list[ServerState]:
    """Servers and backends from `show stat` CSV (frontends are left out)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# pxname,")), None)
    if start is None:
        raise ValueError(text.strip()[-300:] or "empty answer from the stats socket")
    body = "\n".join([lines[start][2:], *lines[start + 1:]])
    rows = []
    for row in csv.DictReader(io.StringIO(body)):
        server = row.get("svname", "")
        if not server or server == "FRONTEND":
            continue
        check = " ".join(x for x in (row.get("check_status", ""), row.get("check_desc", ""))
                         if x)
        rows.append(ServerState(row.get("pxname", ""), server, row.get("status", ""), check))
    return rows


@dataclass
class BalancerState:
    """What one balancer told us about itself."""

    name: str
    address: str
    reachable: bool = False
    error: str | None = None
    holds_vip: bool = False
    keepalived: str = "?"
    haproxy: str = "?"
    stats_via: str | None = None
    stats_note: str | None = None
    servers: list[ServerState] = field(default_factory=list)


@dataclass
class FrontendState:
    """One frontend, tried through the VIP from the workstation."""

    name: str
    port: int
    mode: str
    connected: bool = False
    seconds: float | None = None
    http_status: int | None = None
    note: str = ""


@dataclass
class Report:
    """The whole health report; `problems` empty means healthy."""

    vip: str
    balancers: list[BalancerState]
    frontends: list[FrontendState]
    problems: list[str] = field(default_factory=list)

    @property
    def holders(self) -> list[str]:
        """Balancers that hold the VIP."""
        return [b.name for b in self.balancers if b.holds_vip]

    @property
    def healthy(self) -> bool:
        """Exactly one holder, haproxy and keepalived everywhere, every frontend connects."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {"vip": self.vip, "healthy": self.healthy, "holders": self.holders,
                "problems": self.problems,
                "balancers": [asdict(b) for b in self.balancers],
                "frontends": [asdict(f) for f in self.frontends]}


def read_balancer(transport: Transport, inv: Inventory, node: Node) -> BalancerState:
    """One round trip to `node`; an unreachable node is reported, not raised."""
    state = BalancerState(node.name, str(node.address))
    try:
        result = transport.run(node.name, balancer_script(inv), timeout=20)
    except HadeployError as exc:
        state.error = host_reason(exc, node.name)
        return state
    sections = framing.split_sections(SECTIONS, result.stdout)
    if "stats" not in sections:
        state.error = (f"the health probe failed (exit {result.exited}): "
                       f"{result.stderr.strip()[-300:]}")
        return state
    state.reachable = True
    vip, keepalived, haproxy = balancer_facts(inv)
    state.holds_vip = vip.parse(Probe(sections.get("vip", "")))
    state.keepalived = keepalived.parse(Probe(sections.get("keepalived", ""))) or "?"
    state.haproxy = haproxy.parse(Probe(sections.get("haproxy", ""))) or "?"
    head, _, body = sections["stats"].partition("\n")
    if head.startswith("via "):
        state.stats_via = head[4:].strip()
        try:
            state.servers = parse_show_stat(body)
        except ValueError as exc:
            state.stats_note = f"stats socket read with {state.stats_via} failed: {exc}"
    else:
        state.stats_note = head.removeprefix("none: ").strip() or "stats socket not read"
    return state


def try_frontend(vip: str, name: str, port: int, mode: str) -> FrontendState:
    """TCP connect to VIP:port; for http mode, the status of `GET /`."""
    state = FrontendState(name, port, mode)
    started = time.monotonic()
    try:
        with socket.create_connection((vip, port), timeout=CONNECT_TIMEOUT) as sock:
            state.connected = True
            state.seconds = round(time.monotonic() - started, 3)
            if mode != "http":
                state.note = "tcp mode: connection only"
                return state
            sock.settimeout(HTTP_TIMEOUT)
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {vip}\r\nUser-Agent: hadeploy-verify\r\n"
                         "\r\n".encode())
            head = sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
            parts = head.split()
            if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
                state.http_status = int(parts[1])
                state.note = head
            else:
                state.note = "connected; no HTTP answer"
    except TimeoutError:
        state.note = ("no HTTP answer within "
                      f"{HTTP_TIMEOUT:g} s" if state.connected else "connect timed out")
    except OSError as exc:
        state.note = exc.strerror or str(exc)
    return state


def gather(inv: Inventory, transport: Transport) -> Report:
    """Ask every balancer and try every frontend, all at once; judge the result."""
    vip = str(inv.vip.address)
    proxies = balanced_proxies(inv)
    balancers = inv.balancers
    jobs: list[Callable[[], Any]] = [
        partial(read_balancer, transport, inv, node) for node in balancers]
    jobs += [partial(try_frontend, vip, p.name, p.port, p.mode or inv.haproxy.mode)
             for p in proxies]
    with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
        results = [f.result() for f in [pool.submit(job) for job in jobs]]
    report = Report(vip, results[:len(balancers)], results[len(balancers):])
    report.problems = judge(report)
    return report


def judge(report: Report) -> list[str]:
    """Why the load balancers are not healthy (empty when they are)."""
    problems = []
    holders = report.holders
    if not holders:
        problems.append(f"no balancer holds the VIP {report.vip}")
    elif len(holders) > 1:
        problems.append(f"{len(holders)} balancers hold the VIP {report.vip} at once "
                        f"({', '.join(holders)}): split brain")
    for b in report.balancers:
        if not b.reachable:
            problems.append(f"{b.name}: not reachable: {b.error}")
            continue
        for daemon in ("haproxy", "keepalived"):
            if getattr(b, daemon) != "running":
                problems.append(f"{b.name}: {daemon} is not running")
    for f in report.frontends:
        if not f.connected:
            problems.append(f"frontend {f.name} ({report.vip}:{f.port}) does not accept "
                            f"connections: {f.note}")
    return problems
