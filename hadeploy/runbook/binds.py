"""Bind each API to its controller's own address (co-located topology, guide 2): haproxy holds
the VIP's ports on every controller, so an API listening on every address could not coexist.

The catalog says how per variant: ini keys of the service's own config (`HostKey` kind
"bind"), a Debian uwsgi init script's /etc/default file, apache `Listen` lines (`Bind`).
The lb phase binds the original's APIs before haproxy starts (`original_bind_steps`); the
controllers phase binds every controller's (`bind_edits`), a no-op where already bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hadeploy.catalog import Bind, Family, Service, Variant, load_catalog
from hadeploy.inventory.model import Inventory, Node
from hadeploy.ops import AnyOp, FileEdit, HostContext
from hadeploy.render import get_ini_value, set_ini_value
from hadeploy.render.binds import bind_setting, render_bind
from hadeploy.runbook.drains import daemon_running
from hadeploy.steps import Step

RESTART_STEP = "lb.api-restart"
_LISTENER = {"uwsgi-default": "uwsgi", "apache-listen": "apache",
             "mysql-bind-address": "MariaDB", "rabbitmq-env": "RabbitMQ"}


def _bind_address(node: Node) -> str:
    if node.api_bind is None:
        raise ValueError(f"{node.name} has no api_bind address to bind its APIs to")
    return str(node.api_bind)


def bind_edit(bind: Bind, node: Node) -> FileEdit:
    """One bind file of a variant set to `node`'s api_bind address."""
    address = _bind_address(node)
    created = bind.kind == "uwsgi-default"  # the init script reads it if it exists
    return FileEdit(
        f"bind:{bind.file}", bind.file, lambda ctx, text: render_bind(bind, text, address),
        f"{bind.file}: {_LISTENER[bind.kind]} listens on {address}:{bind.port}",
        create=created, missing_ok=not created)


def bind_edits(inv: Inventory, service: Service, family: Family,
               node: Node) -> tuple[FileEdit, ...]:
    """The bind files (outside the service's ini keys) of `service` on `node`."""
    variant = service.variant(family, inv.release)
    return tuple(bind_edit(b, node) for b in variant.binds_for(inv.release))


def _ini_bind_edit(service: Service, inv: Inventory, node: Node, path: str) -> FileEdit:
    keys = [k for k in service.host_keys_for(inv.release) if k.kind == "bind" and k.file == path]
    address = _bind_address(node)

    def edit(ctx: HostContext, text: str) -> str:
        for key in keys:
            if get_ini_value(text, key.section, key.key) != address:
                text = set_ini_value(text, key.section, key.key, address)
        return text

    names = ", ".join(f"[{k.section}] {k.key}" for k in keys)
    return FileEdit(f"bind:{path}", path, edit, f"{path}: {names} = {address}", missing_ok=True)


def original_bind_ops(inv: Inventory, service: Service, family: Family) -> tuple[FileEdit, ...]:
    """Every edit that binds `service`'s APIs on the original to its api_bind address."""
    node = inv.original
    files = dict.fromkeys(k.file for k in service.host_keys_for(inv.release) if k.kind == "bind")
    ini = tuple(_ini_bind_edit(service, inv, node, path) for path in files)
    return ini + bind_edits(inv, service, family, node)


def _bound_services(inv: Inventory, family: Family) -> list[Service]:
    catalog = load_catalog()
    return [catalog[s] for s in inv.services
            if not catalog[s].lb_only and not catalog[s].variant(family, inv.release).binds_all]


@dataclass(frozen=True)
class OriginalBinds:
    """The lb phase's steps that bind the original's APIs, and the balanced ports they free
    (which the preflight therefore allows on every address, on the original only)."""

    steps: tuple[Step, ...] = ()
    ports: frozenset[int] = frozenset()


def original_bind_steps(inv: Inventory, families: Mapping[str, Family],
                        ports_free: AnyOp) -> OriginalBinds:
    """Co-located lb phase, before haproxy takes the VIP's ports: the original's APIs move
    to its api_bind address (one step per service, then a restart of the running daemons
    whose service changed), then `ports_free` checks nothing is left on every address."""
    node = inv.original
    family = families[node.name]
    steps: list[Step] = []
    ports: set[int] = set()
    # a daemon serving several services (httpd: keystone and horizon on EL) restarts once
    restart_after: dict[str, set[str]] = {}
    variants: dict[str, Variant] = {}
    for service in _bound_services(inv, family):
        edits = original_bind_ops(inv, service, family)
        if not edits:
            continue
        step_id = f"lb.bind.{service.name}"
        ports |= {p.port for p in service.proxies_for(inv.release)
                  if p.name not in inv.omit_proxies}
        steps.append(Step(step_id, f"{service.title}: bind the original's API to "
                          f"{node.api_bind}", {node.name: edits}))
        variant = service.variant(family, inv.release)
        for daemon in variant.api_daemons():  # the workers listen on no balanced port
            restart_after.setdefault(daemon, set()).add(step_id)
            variants[daemon] = variant
    if not steps:
        return OriginalBinds()
    restarts = tuple(daemon_running(variants[d], d, frozenset(ids), restart_only=True)
                     for d, ids in restart_after.items())
    steps.append(Step(RESTART_STEP, "Restart the original's APIs on their own address",
                      {node.name: restarts}))
    steps.append(Step("lb.ports-free", "No API holds the VIP's ports on every address",
                      {node.name: (ports_free,)}, read_only=True))
    return OriginalBinds(tuple(steps), frozenset(ports))


def operator_binds(inv: Inventory, family: Family, ports: set[int]) -> list[str]:
    """Where the operator binds the balanced databases and brokers (services the catalog
    marks lb_only) that hold one of `ports` on every address: hadeploy restarts none of them
    (a Galera or RabbitMQ cluster member is restarted one node at a time, by its operator)."""
    catalog = load_catalog()
    advice = []
    for name in inv.services:
        service = catalog[name]
        if not service.lb_only:
            continue
        for variant in service.variants:
            if variant.family == family and variant.release in ("any", inv.release):
                advice += [f"{service.title}: {bind_setting(b)}, then restart "
                           f"{' '.join(variant.daemons)} node by node"
                           for b in variant.binds_for(inv.release) if b.port in ports]
    return advice
