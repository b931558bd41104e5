"""The deployments the tests of phase `controllers` run on: each release's services, guide 1's
and guide 2's controllers and addresses, inventories derived from the two examples in either
topology, and the per-host context the runbook's operations are asked with."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from hadeploy.catalog import Family
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.ops import HostContext
from hadeploy.platforms import Profile
from tests.unit.examples import COLOCATED, DATA, HOSTS_EXAMPLE, edit

FIXTURES = DATA / "controllers"
RELEASES = ("grizzly", "modern")
TOPOLOGIES = ("dedicated", "colocated")

RELEASE_SERVICES = {
    "grizzly": ("keystone", "quantum", "glance", "nova", "cinder", "swift", "novnc", "horizon",
                "heat", "ceilometer"),
    "modern": ("keystone", "neutron", "glance", "nova", "placement", "cinder", "swift", "novnc",
               "horizon", "heat"),
}
LB_ONLY = ("galera", "rabbitmq")

# grizzly deployments are guide 1's (10.15.85.x, VIP .31), modern ones guide 2's
# (192.168.1.x, VIP .220); each is turned into the other topology where needed.
ADDRESSES = {
    "grizzly": ("10.15.85.31", ("10.15.85.141", "10.15.85.142", "10.15.85.143")),
    "modern": ("192.168.1.220", ("192.168.1.221", "192.168.1.222", "192.168.1.223")),
}
CONTROLLERS = {"grizzly": ("mesa-virt-01", "mesa-virt-02", "mesa-virt-03"),
               "modern": ("rhos6-node1", "rhos6-node2", "rhos6-node3")}
LB_BLOCK = re.compile(r"^\[\[lb\]\]\n(?:(?!\[).*\n)*", re.MULTILINE)

# The `inventories` fixture (tests/unit/conftest.py): inventories(release, platform, topology).
Inventories = Callable[[str, str, str], Inventory]


def _to_colocated(text: str) -> str:
    """hosts.example.toml with haproxy on the controllers (api_bind = own address)."""
    text = LB_BLOCK.sub("", edit(text, ('topology = "dedicated"', 'topology = "colocated"')))
    for index, address in enumerate(ADDRESSES["grizzly"][1]):
        text = edit(text, (f'address = "{address}"\n',
                           f'address = "{address}"\napi_bind = "{address}"\n'
                           f"priority = {103 - index}\n"))
    return text


def _to_dedicated(text: str) -> str:
    """Guide 2's inventory (tests/data/guide2-rhos6.toml) with three dedicated load
    balancers and no api_bind."""
    text = edit(text, ('topology = "colocated"', 'topology = "dedicated"'))
    text = re.sub(r"^(api_bind|priority) = .*\n", "", text, flags=re.MULTILINE)
    lbs = "".join(f'[[lb]]\nname = "rhos6-lb{i}"\naddress = "192.168.1.21{i}"\n'
                  f"priority = {104 - i}\n\n" for i in (1, 2, 3))
    return edit(text, ("[[controller]]", lbs + "[[controller]]"))


def inventory_text(release: str, platform: str, topology: str,
                   services: tuple[str, ...] | None = None) -> str:
    """An example inventory rewritten for `release`, `platform`, `topology` and services."""
    if release == "grizzly":
        text = HOSTS_EXAMPLE.read_text()
        text = _to_colocated(text) if topology == "colocated" else text
    else:
        text = COLOCATED.read_text()
        text = _to_dedicated(text) if topology == "dedicated" else text
    text = re.sub(r'^release = "\w+"', f'release = "{release}"', text, count=1,
                  flags=re.MULTILINE)
    text = re.sub(r'^platform = "\w+"', f'platform = "{platform}"', text, count=1,
                  flags=re.MULTILINE)
    names = services if services is not None else (*RELEASE_SERVICES[release], *LB_ONLY)
    balance = "balance = [" + ", ".join(f'"{s}"' for s in names) + "]"
    text, count = re.subn(r"^balance = \[.*?\]", balance, text, count=1,
                          flags=re.MULTILINE | re.DOTALL)
    assert count == 1
    return text


@functools.cache
def derived_inventory(release: str, platform: str, topology: str, directory: str) -> Inventory:
    """The inventory of `inventory_text(release, platform, topology)`, written to `directory`
    and loaded once per directory (loading is what the many parametrized tests would repeat)."""
    path = Path(directory) / f"{release}-{platform}-{topology}.toml"
    path.write_text(inventory_text(release, platform, topology))
    return load_inventory(path)


def families(inv: Inventory) -> dict[str, Family]:
    """The package family of every node (all nodes share the inventory's platform)."""
    family: Family = "debian" if inv.platform == "debian" else "el"
    return {n.name: family for n in inv.nodes}


def ctx_for(inv: Inventory, host: str, profile: Profile, step: str = "ctl.step",
            changed: frozenset[str] = frozenset()) -> HostContext:
    """The context an operation of `step` on `host` is asked with (a fixed run id)."""
    return HostContext(inv.node(host), profile, "20260101-000000-000-t-deploy", step,
                       {}, changed, True)
