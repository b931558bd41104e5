"""Drained restarts of a service's daemons on a controller, and the `restart` phase.

`controllers` restarts an API when its configuration changed (the original's VIP keys, say);
`hadeploy restart --service NAME` restarts a service's daemons on every controller, one
controller at a time. Either way each restart of an API daemon is drained (`ops.drain`): the
server leaves every balancer's haproxy first and comes back once it answers and haproxy sees
it UP. A service's workers (catalog `workers`: conductor, scheduler, engine) restart
undrained, while its APIs' drained restarts go on: they serve no balanced port, and the other
controllers' workers take the RPC calls meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hadeploy.catalog import Family, Service, Variant, load_catalog
from hadeploy.inventory.model import Inventory, Node
from hadeploy.inventory.schema import haproxy_millis
from hadeploy.ops import AnyOp, Balancers, DrainedRestart, ServiceRunning
from hadeploy.ops.retire import ServiceRetired
from hadeploy.render.haproxy import backend_address, hard_stop_after
from hadeploy.runbook.api_answers import ALL_ANSWER, api_probe_script, api_target
from hadeploy.steps import Runbook, Step

# Health checks: a server haproxy found down needs `rise` (2) good checks to be up again,
# and haproxy may have seen `fall` (3) bad ones meanwhile; plus margin.
CHECKS_TO_UP = 5
UP_MARGIN_SECONDS = 10
ANSWER_SECONDS = 60


def _seconds(value: str) -> int:
    return math.ceil(haproxy_millis(value) / 1000)


def service_balancers(inv: Inventory, service: Service) -> Balancers | None:
    """The balancers and backends where `service`'s servers are drained (None: it has no
    proxy behind the VIP, or haproxy has no stats socket to drain through)."""
    h = inv.haproxy
    backends = tuple(h.backend_name.replace("{proxy}", p.name)
                     for p in service.proxies_for(inv.release) if p.name not in inv.omit_proxies)
    if not backends or not h.stats_socket:
        return None
    return Balancers(tuple(n.name for n in inv.balancers), h.stats_socket, backends,
                     max(5, _seconds(hard_stop_after(inv))),
                     CHECKS_TO_UP * _seconds(h.check_inter) + UP_MARGIN_SECONDS)


def answers_script(inv: Inventory, node: Node, service: Service) -> str:
    """Shell on `node`: exit 0 once each of `service`'s APIs answers on the node's own
    address as haproxy's check expects, else print what it answered and exit 1."""
    own = backend_address(inv, node)
    targets = [api_target(own, p, inv.release) for p in service.proxies_for(inv.release)
               if p.name not in inv.omit_proxies]
    return (f"out=$({api_probe_script(targets, ANSWER_SECONDS)}\n); "
            f'[ "$out" = {ALL_ANSWER} ] || {{ echo "$out" >&2; exit 1; }}')


def daemon_running(variant: Variant, daemon: str, restart_after: frozenset[str],
                   restart_only: bool, always: bool = False,
                   background: bool = False) -> ServiceRunning:
    """`daemon` of a catalog `variant` running, restarted after `restart_after` steps (or
    `always`), with what the catalog says of its init script (pid file, a restart made of
    stop and start); `background`: applied beside the step's next operations."""
    return ServiceRunning(f"service:{daemon}", daemon, (), restart_after, wait_seconds=30,
                          restart_only=restart_only,
                          sysv_pidfiles=variant.sysv_pidfiles(daemon),
                          sysv_stop_start=variant.sysv_stop_start,
                          background=background, always=always)


def drained_daemons(inv: Inventory, service: Service, node: Node, family: Family,
                    restart_after: frozenset[str], always: bool = False) -> tuple[AnyOp, ...]:
    """`service`'s daemons running on `node`: its workers, as they are, each started or
    restarted while the next daemons are (`background`: no balancer sends them traffic, and
    the other controllers' workers serve meanwhile), then its API daemons one by one, each
    restart drained on the balancers. `always` (phase `restart`): each one that runs is
    restarted though nothing changed, workers included."""
    variant = service.variant(family, inv.release)
    workers = tuple(daemon_running(variant, d, restart_after, always, always, background=True)
                    for d in variant.workers)
    apis = tuple(daemon_running(variant, d, restart_after, always, always)
                 for d in variant.api_daemons())
    lbs = service_balancers(inv, service)
    if lbs is None:
        return workers + apis
    answers = answers_script(inv, node, service)
    return workers + tuple(DrainedRestart(d.op_id, d, lbs, answers, always) for d in apis)


def retire_steps(inv: Inventory, families: Mapping[str, Family]) -> list[Step]:
    """Step `ctl.retire`: on each retired controller, the daemons of every scaled-out service
    stopped and disabled, each drained first (`ops.retire`); packages and files stay."""
    if not inv.retired:
        return []
    catalog = load_catalog()
    services = [catalog[s] for s in inv.services if not catalog[s].lb_only]
    sources = tuple(str(n.address) for n in inv.balancers)
    bound = max(5, _seconds(hard_stop_after(inv)))
    ops: dict[str, tuple[AnyOp, ...]] = {}
    for node in inv.retired:
        retired: dict[str, AnyOp] = {}
        for service in services:
            ports = tuple(sorted({p.port for p in service.proxies_for(inv.release)
                                  if p.name not in inv.omit_proxies}))
            variant = service.variant(families[node.name], inv.release)
            for daemon in variant.daemons:
                retired.setdefault(daemon, ServiceRetired(
                    f"retire:{daemon}", daemon, (), service_balancers(inv, service), ports,
                    sources, bound, variant.sysv_pidfiles(daemon)))
        ops[node.name] = tuple(retired.values())
    names = ", ".join(n.name for n in inv.retired)
    return [Step("ctl.retire", f"Retire {names}: drain, then stop and disable its services "
                 "(packages and files stay)", ops)]


def build_restart_runbook(inv: Inventory, families: Mapping[str, Family],
                          only: tuple[str, ...]) -> Runbook:
    """Phase `restart`: the running daemons of the `only` services (default: every scaled-out
    one), drained, one controller at a time (a step per service and controller)."""
    catalog = load_catalog()
    services = [catalog[s] for s in inv.services
                if not catalog[s].lb_only and (not only or s in only)]
    steps = [Step(f"restart.{s.name}.{n.name}", f"{s.title}: drained restart on {n.name}",
                  {n.name: drained_daemons(inv, s, n, families[n.name], frozenset(),
                                           always=True)})
             for s in services for n in inv.controllers]
    return Runbook("restart", tuple(steps))
