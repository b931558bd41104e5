"""The network as a host sees it: whether it holds the VIP, its interfaces, and the TCP
sockets it listens on. The load balancers' runbook and `verify` read the same facts."""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.facts import Fact, Probe, stripped
from hadeploy.quoting import q


def holds_vip(vip: str) -> str:
    """Shell condition: true on the host that has `vip` on one of its interfaces."""
    return f"ip -o addr show | grep -q {q(f' {vip}/')}"


def _held(probe: Probe) -> bool:
    return probe.stdout.strip() == "held"


def vip_held(vip: str) -> Fact[bool]:
    """Whether this host holds `vip` now."""
    return Fact(f"if {holds_vip(vip)}; then echo held; else echo free; fi", _held)


def vip_use(vip: str) -> Fact[str]:
    """`held` (by this host), `answers` (another machine answers ping for it) or `free`."""
    return Fact(f"if {holds_vip(vip)}; then echo held; "
                f"elif command -v ping >/dev/null && ping -c 1 -W 1 {q(vip)} >/dev/null 2>&1; "
                "then echo answers; else echo free; fi", stripped)


def _present(probe: Probe) -> bool:
    return probe.stdout.strip() == "present"


def interface_present(iface: str) -> Fact[bool]:
    """Whether the network interface `iface` exists."""
    return Fact(f"ip -o link show dev {q(iface)} >/dev/null 2>&1 && "
                "echo present || echo missing", _present)


@dataclass(frozen=True)
class Listening:
    """One listening TCP socket, as a line of `ss -Hltn[p]` shows it."""

    local: str  # address:port as ss prints it
    address: str  # without IPv6 brackets
    port: int | None
    process: str = ""  # ss -p's users:(("name",pid=…)) column, when shown


def _listening(probe: Probe) -> tuple[Listening, ...]:
    """The sockets of `ss -Hltn[p]` output (lines it cannot read are left out)."""
    sockets = []
    for line in probe.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        address, _, port = local.rpartition(":")
        sockets.append(Listening(local, address.strip("[]"),
                                 int(port) if port.isdigit() else None,
                                 parts[-1] if len(parts) > 5 else ""))
    return tuple(sockets)


def listening_sockets(processes: bool = False) -> Fact[tuple[Listening, ...]]:
    """The TCP sockets listening on this host (with the owning process when `processes`)."""
    if processes:
        return Fact("ss -Hltnp 2>/dev/null || true", _listening)
    return Fact("ss -Hltn 2>/dev/null", _listening)
