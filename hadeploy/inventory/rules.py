"""Rules that span several keys: the lessons an operator would otherwise learn the hard way."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network

from hadeploy.catalog import load_catalog
from hadeploy.inventory.model import Inventory, Node
from hadeploy.inventory.schema import PLAIN_NAME
from hadeploy.inventory.tls import public_vip_rules

RENAMED = {("quantum", "modern"): "neutron", ("neutron", "grizzly"): "quantum"}


def check_rules(inv: Inventory) -> list[str]:
    """Every cross-key problem of `inv`, each naming the key and the fix."""
    problems: list[str] = []
    problems += _topology(inv)
    problems += _unique_nodes(inv)
    problems += _original(inv)
    problems += _retired(inv)
    problems += _priorities(inv)
    problems += _vip(inv)
    problems += public_vip_rules(inv)
    problems += _services(inv)
    problems += _haproxy_names(inv)
    problems += _ssh(inv)
    problems += _rc_files(inv)
    problems += _shared_storage(inv)
    return problems


def _label(node: Node) -> str:
    return f"{'lb' if node.role == 'lb' else 'controller'} {node.name}"


def _topology(inv: Inventory) -> list[str]:
    problems: list[str] = []
    if inv.topology == "dedicated":
        if len(inv.lbs) < 2:
            problems.append(
                f"lb: {len(inv.lbs)} load-balancer node(s); the dedicated topology needs at "
                "least 2 [[lb]] tables (keepalived needs a node to fail over to), or set "
                "deployment.topology = \"colocated\""
            )
        for c in inv.controllers:
            if c.priority is not None:
                problems.append(
                    f"controller {c.name}.priority: only load balancers have a VRRP priority in "
                    "the dedicated topology; remove it or set topology = \"colocated\""
                )
    else:
        if inv.lbs:
            problems.append(
                "lb: the colocated topology runs haproxy on the controllers; remove the "
                "[[lb]] tables and give each [[controller]] a priority"
            )
        for c in inv.controllers:
            if c.api_bind is None or c.api_bind == IPv4Address("0.0.0.0"):
                problems.append(
                    f"controller {c.name}.api_bind: the colocated topology needs each API bound "
                    f"to the node's own address (haproxy holds the VIP's ports on the same "
                    f"host, so both would want 0.0.0.0:port); set api_bind = \"{c.address}\""
                )
            elif c.api_bind == inv.vip.address:
                problems.append(
                    f"controller {c.name}.api_bind: {c.api_bind} is the VIP, which haproxy "
                    f"holds; set api_bind = \"{c.address}\""
                )
    if len(inv.controllers) < 2:
        problems.append(
            f"controller: {len(inv.controllers)} controller(s); list the original and at least "
            "one new controller as [[controller]] tables"
        )
    return problems


def _unique_nodes(inv: Inventory) -> list[str]:
    problems: list[str] = []
    nodes = [*inv.lbs, *inv.controllers, *inv.retired]
    for name, count in Counter(n.name for n in nodes).items():
        if count > 1:
            problems.append(
                f"name: {name!r} is used by {count} nodes ([[lb]]/[[controller]]); give each "
                "node a unique name"
            )
    by_address: dict[IPv4Address, list[str]] = {}
    for n in nodes:
        by_address.setdefault(n.address, []).append(_label(n))
    for address, labels in by_address.items():
        if len(labels) > 1:
            problems.append(
                f"address: {address} is used by {len(labels)} nodes ({', '.join(labels)}); give "
                "each node its own address"
            )
    return problems


def _retired(inv: Inventory) -> list[str]:
    """Only a new controller of the dedicated topology can leave through `retire`."""
    problems = [
        f"lb {n.name}.retire: only a controller can be retired; to remove a load balancer, "
        "delete its [[lb]] table and run deploy-lb again (keepalived then leaves it out)"
        for n in inv.lbs if n.retire]
    for node in inv.retired:
        if node.original:
            problems.append(
                f"controller {node.name}.retire: the original cannot be retired: the others "
                "copy its configuration and its Keystone catalog is the one moved to the VIP; "
                "remove retire = true")
        elif inv.topology == "colocated":
            problems.append(
                f"controller {node.name}.retire: in the colocated topology every controller "
                "is also a balancer holding the VIP; hadeploy retires controllers of the "
                "dedicated topology only. Remove retire = true")
    return problems


def _original(inv: Inventory) -> list[str]:
    originals = [c.name for c in (*inv.controllers, *inv.retired) if c.original]
    if len(originals) == 1:
        return []
    if not originals:
        return ["controller: no controller has original = true; mark the controller packstack "
                "deployed (whose configuration is copied to the others) with original = true"]
    return [f"controller: {len(originals)} controllers have original = true "
            f"({', '.join(originals)}); exactly one may be the original"]


def _priorities(inv: Inventory) -> list[str]:
    problems: list[str] = []
    balancers = inv.balancers
    kind = "lb" if inv.topology == "dedicated" else "controller"
    missing = [n.name for n in balancers if n.priority is None]
    for name in missing:
        problems.append(
            f"{kind} {name}.priority: missing; every keepalived node needs a unique priority "
            "in 1..254"
        )
    priorities = [n.priority for n in balancers if n.priority is not None]
    for value, count in Counter(priorities).items():
        if count > 1:
            keys = [f"{kind} {n.name}.priority" for n in balancers if n.priority == value]
            problems.append(
                f"{', '.join(keys)}: {value} is used {count} times; keepalived priorities must "
                "be unique (e.g. 101, 102, 103)"
            )
    if len(priorities) >= 2:
        spread = max(priorities) - min(priorities)
        weight = inv.keepalived.script_weight
        if weight <= spread:
            problems.append(
                f"keepalived.script_weight: {weight} is not greater than the priority spread "
                f"{max(priorities)} - {min(priorities)} = {spread}, so a node whose haproxy dies "
                f"would keep the VIP (failover would silently not happen); set script_weight "
                f"to at least {spread + 1} or bring the priorities closer together"
            )
    return problems


def _vip(inv: Inventory) -> list[str]:
    problems: list[str] = []
    vip = inv.vip.address
    for node in inv.nodes:
        if node.address == vip:
            problems.append(
                f"vip.address: {vip} is the address of {_label(node)}; the VIP must be a free "
                f"address in {inv.vip.network}"
            )
    for node in inv.balancers:
        subnet = IPv4Network(f"{node.address}/{inv.vip.prefix}", strict=False)
        if vip not in subnet:
            problems.append(
                f"vip.address: {vip} is outside {_label(node)}'s subnet {subnet}; keepalived can "
                f"only hold a VIP on the nodes' own network: pick an address in {subnet} or fix "
                "vip.prefix"
            )
    network = inv.vip.network
    if inv.vip.prefix < 31 and vip in (network.network_address, network.broadcast_address):
        problems.append(
            f"vip.address: {vip} is the network or broadcast address of {network}; pick a host "
            "address"
        )
    return problems


def _services(inv: Inventory) -> list[str]:
    problems: list[str] = []
    catalog = load_catalog()
    if not inv.services:
        problems.append("services.balance: empty; list the services to put behind the VIP")
    for name, count in Counter(inv.services).items():
        if count > 1:
            problems.append(f"services.balance: {name} is listed {count} times; list it once")
    proxies: set[str] = set()
    for name in dict.fromkeys(inv.services):
        if (name, inv.release) in RENAMED:
            problems.append(
                f"services.balance: {name} does not exist in release {inv.release}; it is "
                f"called {RENAMED[(name, inv.release)]} there"
            )
            continue
        if name not in catalog.services:
            problems.append(
                f"services.balance: unknown service {name!r}; known services are "
                f"{', '.join(catalog.names())}"
            )
            continue
        service = catalog[name]
        if inv.release not in service.releases:
            reason = service.unavailable or (
                f"it exists in release {' and '.join(service.releases)} only; remove "
                f"\"{name}\" from the list")
            problems.append(
                f"services.balance: {name} cannot be balanced with release {inv.release}: "
                f"{reason}")
            continue
        proxies.update(p.name for p in service.proxies_for(inv.release))
    for override in inv.haproxy.overrides:
        if override.proxy not in proxies or override.proxy in inv.omit_proxies:
            problems.append(
                f"haproxy.overrides.{override.proxy}: not a proxy haproxy serves here; the "
                f"balanced proxies are {', '.join(sorted(set(proxies) - set(inv.omit_proxies)))}")
    for omitted in inv.omit_proxies:
        if omitted not in proxies:
            problems.append(
                f"services.omit_proxies: {omitted!r} is not a proxy of the balanced services; "
                f"they have {', '.join(sorted(proxies)) or 'none'}"
            )
    monitor = inv.haproxy.monitor
    if monitor is not None and monitor.metrics and monitor.metrics_uri in (monitor.uri,
                                                                           monitor.stats_uri):
        problems.append(
            f"haproxy.monitor.metrics_uri: {monitor.metrics_uri} is also the monitor's uri or "
            "stats_uri; give the metrics their own path, e.g. /metrics")
    if monitor is not None:
        for name in dict.fromkeys(inv.services):
            if name not in catalog.services:
                continue
            for proxy in catalog[name].proxies_for(inv.release):
                if proxy.port == monitor.port and proxy.name not in inv.omit_proxies:
                    problems.append(
                        f"haproxy.monitor.port: {monitor.port} is also the port of proxy "
                        f"{proxy.name}; pick another monitor port"
                    )
    return problems


def _haproxy_names(inv: Inventory) -> list[str]:
    problems: list[str] = []
    for key in ("frontend_name", "backend_name"):
        template = getattr(inv.haproxy, key)
        sample = template.replace("{proxy}", "keystone-admin")
        if "{proxy}" not in template or not PLAIN_NAME.fullmatch(sample):
            problems.append(
                f"haproxy.{key}: {template!r} must contain {{proxy}} and otherwise only plain "
                "characters, e.g. \"{proxy}-vip\" or \"vip-{proxy}\""
            )
    if inv.haproxy.frontend_name == inv.haproxy.backend_name:
        problems.append(
            "haproxy.backend_name: equals frontend_name; haproxy needs distinct names, e.g. "
            "frontend_name = \"{proxy}-vip\" and backend_name = \"{proxy}-api\""
        )
    return problems


def _ssh(inv: Inventory) -> list[str]:
    if inv.ssh.user != "root" and not inv.ssh.sudo:
        return [f"ssh.sudo: user {inv.ssh.user!r} is not root, so hadeploy needs sudo to install "
                "packages and write /etc; set sudo = true or user = \"root\""]
    return []


def _rc_files(inv: Inventory) -> list[str]:
    names = {n.name for n in inv.nodes}
    return [
        f"openstack.rc_files: host {rc.host!r} is not a node of this inventory; use one of "
        f"{', '.join(sorted(names))}"
        for rc in inv.openstack.rc_files
        if rc.host not in names
    ]


def _shared_storage(inv: Inventory) -> list[str]:
    catalog = load_catalog()
    node_local = [s for s in catalog.names() if catalog[s].node_local_for(inv.release)]
    problems = []
    known = f"the services whose state can be node-local are {', '.join(node_local) or 'none'}"
    for name in dict.fromkeys(inv.shared_storage):
        if name not in catalog.services:
            problems.append(f"services.shared_storage: unknown service {name!r}; {known}")
        elif name not in node_local:
            problems.append(f"services.shared_storage: {name} keeps no node-local state that "
                            f"hadeploy checks, so there is nothing to confirm; {known}")
        elif name not in inv.services:
            problems.append(
                f"services.shared_storage: {name} is not in services.balance, so there is "
                "nothing to confirm; remove it")
    return problems
