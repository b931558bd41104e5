"""The lab's network: one bridge in its own namespace, a veth from each host and one from the
workstation (the root namespace) into it.

Everything lives in 198.18.N.0/24 (reserved for benchmarking, RFC 2544; N is the lab slot,
0 unless HADEPLOY_LAB_SLOT says otherwise): the workstation is 198.18.N.1, hosts are .11,
.12, ... There is no default route anywhere, IPv6 is off on every
lab interface, so no packet can leave the machine. Multicast snooping is off on the bridge,
so VRRP adverts (224.0.0.18) reach every host, as on a plain switch.

The bridge's namespace is held by the lab's *core* process (`sleep infinity` in a new network
and mount namespace); its mount namespace is also where the shared base layer is staged
(see `overlay.py`). Killing the core deletes the bridge and the workstation's veth with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError
from lab.procs import ProcRef, run, spawn

SLOT_VARIABLE = "HADEPLOY_LAB_SLOT"
SLOTS = 10


def lab_slot() -> int:
    """Which of the machine's lab slots this process uses (HADEPLOY_LAB_SLOT, 0 by default).

    Slot N owns 198.18.N.0/24, the workstation interface `hadeployN` and its own lab lock, so
    developers can run several labs side by side; CI and the demo use slot 0.
    """
    raw = os.environ.get(SLOT_VARIABLE, "0")
    if not raw.isdigit() or int(raw) >= SLOTS:
        raise LabError(f"{SLOT_VARIABLE}={raw!r}: expected a number from 0 to {SLOTS - 1}")
    return int(raw)


SLOT = lab_slot()
SUBNET = f"198.18.{SLOT}"
PREFIX_LEN = 24
NETWORK = f"{SUBNET}.0/{PREFIX_LEN}"
WORKSTATION_ADDRESS = f"{SUBNET}.1"
FIRST_HOST_OCTET = 11
LAST_HOST_OCTET = 254
WORKSTATION_IF = f"hadeploy{SLOT}"  # in the root namespace
BRIDGE = "br0"  # in the core namespace
HOST_IF = "eth0"  # inside every host, so keepalived configs can say `interface eth0`


def host_address(index: int) -> str:
    """Address of the index-th host (0-based): 198.18.0.11, .12, ..."""
    octet = FIRST_HOST_OCTET + index
    if octet > LAST_HOST_OCTET:
        most = LAST_HOST_OCTET - FIRST_HOST_OCTET + 1
        raise LabError(f"at most {most} hosts fit in {SUBNET}.0/24")
    return f"{SUBNET}.{octet}"


def _port_name(address: str) -> str:
    """Name of a host's veth end on the bridge: p11 for 198.18.0.11."""
    return "p" + address.rsplit(".", 1)[1]


def host_mac(address: str) -> str:
    """A fixed, locally administered MAC per address (02:00:c6:12:00:0b for .11).

    A rebooted or reset host gets a new veth; with the same MAC, the workstation's and the
    other hosts' ARP caches stay right and connections work again at once.
    """
    octets = [int(part) for part in address.split(".")]
    return "02:00:" + ":".join(f"{octet:02x}" for octet in octets)


def start_core(state_dir: Path) -> ProcRef:
    """Start the process that holds the bridge's network namespace and the staging mounts."""
    return spawn(
        ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
        state_dir / "core.log",
        program="sleep",
        marker=str(state_dir),
    )


def _in_core(core: ProcRef, argv: Sequence[str], what: str, stdin: str | None = None) -> None:
    run(["nsenter", "-t", str(core.pid), "-n", "--", *argv], what=what, input=stdin)


def setup_bridge(core: ProcRef) -> None:
    """Create the bridge inside the core namespace: no STP delay, no multicast snooping."""
    _in_core(
        core,
        ["sh", "-c", "echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 && "
         "echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6"],
        "disable IPv6 in the bridge namespace",
    )
    _in_core(
        core,
        ["ip", "-batch", "-"],
        "create the lab bridge",
        stdin=(
            f"link add {BRIDGE} type bridge stp_state 0 mcast_snooping 0 forward_delay 0\n"
            f"link set {BRIDGE} up\n"
        ),
    )


def workstation_attached() -> bool:
    """True if the workstation's lab interface exists (a lab is up on this machine)."""
    return Path(f"/sys/class/net/{WORKSTATION_IF}").exists()


def attach_workstation(core: ProcRef) -> None:
    """Give the root namespace 198.18.0.1/24 on a veth into the bridge (no route beyond it)."""
    if workstation_attached():
        raise LabError(
            f"interface {WORKSTATION_IF} already exists: another lab is up on this machine; "
            "take it down first (python -m lab down --state-dir DIR)"
        )
    run(
        ["ip", "link", "add", WORKSTATION_IF, "type", "veth",
         "peer", "name", "ws", "netns", str(core.pid)],
        what="create the workstation's lab interface",
    )
    Path(f"/proc/sys/net/ipv6/conf/{WORKSTATION_IF}/disable_ipv6").write_text("1\n")
    run(
        ["ip", "-batch", "-"],
        what="configure the workstation's lab interface",
        input=(
            f"addr add {WORKSTATION_ADDRESS}/{PREFIX_LEN} dev {WORKSTATION_IF}\n"
            f"link set {WORKSTATION_IF} up\n"
        ),
    )
    _in_core(core, ["ip", "link", "set", "ws", "master", BRIDGE, "up"], "plug the workstation in")


def detach_workstation() -> None:
    """Delete the workstation's veth if it is still there (normally it goes with the core)."""
    if workstation_attached():
        run(["ip", "link", "del", WORKSTATION_IF], what="delete the workstation's lab interface",
            check=False)


def plug_hosts(core: ProcRef, hosts: Sequence[tuple[ProcRef, str]]) -> None:
    """Create `eth0` in each host (given its init and address) and plug its peer into the bridge.

    The address itself is configured by the host's boot script, inside the host.
    """
    if not hosts:
        return
    # A rebooted host's old port may outlive its namespace for a moment (the kernel dismantles
    # namespaces asynchronously): delete it first, ignoring "does not exist".
    run(
        ["nsenter", "-t", str(core.pid), "-n", "--", "ip", "-force", "-batch", "-"],
        what="remove old bridge ports",
        check=False,
        input="".join(f"link del {_port_name(address)}\n" for _, address in hosts),
    )
    run(
        ["ip", "-batch", "-"],
        what="create the hosts' veths",
        input="".join(
            f"link add {_port_name(address)} netns {core.pid} type veth "
            f"peer name {HOST_IF} address {host_mac(address)} netns {init.pid}\n"
            for init, address in hosts
        ),
    )
    _in_core(
        core,
        ["ip", "-batch", "-"],
        "plug the hosts into the bridge",
        stdin="".join(
            f"link set {_port_name(address)} master {BRIDGE} up\n" for _, address in hosts
        ),
    )
