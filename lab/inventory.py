"""Write a hadeploy inventory for a running lab (dedicated or colocated topology)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hadeploy.catalog import load_catalog
from lab import Lab
from lab.network import SUBNET

LAB_VIP = f"{SUBNET}.100"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lab_inventory_text(
    lab: Lab,
    topology: str = "dedicated",
    lbs: Sequence[str] = ("lb1", "lb2", "lb3"),
    controllers: Sequence[str] = ("ctl1", "ctl2", "ctl3"),
    services: Sequence[str] = ("keystone", "glance"),
    omit_proxies: Sequence[str] = (),
    shared_storage: Sequence[str] | None = None,
    rc_files: Sequence[tuple[str, str]] = (),
    vip: str = LAB_VIP,
    user: str = "hadeploy",
    name: str = "lab",
    retired: Sequence[str] = (),
) -> str:
    """TOML text of an inventory whose nodes are lab hosts, reached as `user` with sudo.

    `shared_storage` None: the lab confirms, knowingly, every balanced service whose state the
    catalog marks node-local (Glance's images on the original's own disk): its tests and demo
    never need an image on a controller other than the one that stored it, and without the
    confirmation deploy-controllers would refuse to start. Pass () to see the refusal.
    `retired`: controllers written with `retire = true` (leaving the control plane).
    """
    if shared_storage is None:
        catalog = load_catalog()
        shared_storage = [s for s in services if s in catalog.services
                          and catalog[s].node_local_for("modern")]
    lines = [
        "# Written by hadeploy's lab for its demo and tests: lab hosts only "
        f"({SUBNET}.0/24).",
        "[deployment]",
        f"name = {_q(name)}",
        'release = "modern"',
        'platform = "debian"',
        f"topology = {_q(topology)}",
        "",
        "[ssh]",
        f"user = {_q(user)}",
        f"sudo = {'true' if user != 'root' else 'false'}",
        f"identity = {_q(str(lab.identity_file))}",
        f"known_hosts = {_q(str(lab.known_hosts))}",
        "connect_timeout = 5.0",
        "",
        "[vip]",
        f"address = {_q(vip)}",
        "prefix = 24",
        'interface = "eth0"',
        "virtual_router_id = 51",
        "advert_int = 1",
        "",
        "[keepalived]",
        "script_weight = 10",
        "script_interval = 1",
        "",
        "[haproxy]",
        'mode = "http"',
        'check_inter = "2s"',
        'timeout_connect = "2s"',
        "",
        "[services]",
        "balance = [" + ", ".join(_q(s) for s in services) + "]",
        "omit_proxies = [" + ", ".join(_q(p) for p in omit_proxies) + "]",
        "shared_storage = [" + ", ".join(_q(s) for s in shared_storage) + "]",
        "",
    ]
    priority = 103
    if topology == "dedicated":
        for host in lbs:
            lines += ["[[lb]]", f"name = {_q(host)}",
                      f"address = {_q(lab.hosts[host].address)}", f"priority = {priority}", ""]
            priority -= 1
    for index, host in enumerate(controllers):
        address = lab.hosts[host].address
        lines += ["[[controller]]", f"name = {_q(host)}", f"address = {_q(address)}"]
        if index == 0:
            lines.append("original = true")
        if host in retired:
            lines.append("retire = true")
        if topology == "colocated":
            lines += [f"api_bind = {_q(address)}", f"priority = {priority}"]
            priority -= 1
        lines.append("")
    if rc_files:
        entries = ", ".join(f"{{ host = {_q(h)}, path = {_q(p)} }}" for h, p in rc_files)
        lines += ["[openstack]", f"rc_files = [{entries}]", ""]
    return "\n".join(lines)


def write_lab_inventory(lab: Lab, path: Path, **options: object) -> Path:
    """Write `lab_inventory_text(lab, **options)` to `path` (mode 0600) and return it."""
    path.write_text(lab_inventory_text(lab, **options), encoding="utf-8")  # type: ignore[arg-type]
    path.chmod(0o600)
    return path
