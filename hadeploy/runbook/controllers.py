"""Phase `controllers`: scale the OpenStack APIs out behind the VIP (guide 1, second half).

First, read-only on the original:
  ctl.shared-state   state the catalog marks node-local (Glance's file store) is on a shared
                     filesystem, or confirmed in services.shared_storage; else stop here
Then once, on the new controllers:
  ctl.packages       one install of every service's packages (one apt-get, yum or dnf run:
                     the package manager's own work per run, triggers included, is paid once)
Per service, in the guide's order:
  ctl.SVC.vip-keys   on the original, point the service's config keys at the VIP
  ctl.SVC.copy       copy /etc/SVC from the original to each new controller (owners by name,
                     modes, symlinks), proven equal by a manifest comparison
  ctl.SVC.host-keys  rewrite host-specific keys (bind address, my_ip, ...) per controller
  ctl.SVC.bind       (colocated) the API's listen address outside its ini keys (a Debian uwsgi
                     /etc/default file, apache Listen lines) set to each controller's api_bind
  ctl.SVC.services   enable + start on the new controllers, restart on the original, one
                     controller at a time, each restart drained on the balancers
  ctl.SVC.verify     read-only: each API answers on each controller and through the VIP
then once:
  ctl.endpoints      the Keystone catalog's endpoints move to the VIP (public identity last)
  ctl.rc-files       OS_AUTH_URL in the operators' rc files names the VIP
  ctl.retire         (controllers marked `retire = true`) each service drained, stopped and
                     disabled at boot; packages and files stay

The runbook is built from the inventory and each host's platform family (detected
read-only before, or declared), without touching a network.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from hadeploy.catalog import Family, HostKey, Service, ShellVar, VipKey, load_catalog
from hadeploy.errors import HadeployError
from hadeploy.inventory.model import Inventory, Node
from hadeploy.ops import (
    AnyOp,
    EndpointsOnVip,
    FileEdit,
    HostContext,
    PackagesInstalled,
    TreeCopied,
    shared_state_check,
)
from hadeploy.render import get_ini_value, get_shell_var, rehost, set_ini_value, set_shell_var
from hadeploy.render.pysettings import get_py_string, set_py_string
from hadeploy.runbook.api_answers import apis_answer
from hadeploy.runbook.binds import bind_edits
from hadeploy.runbook.drains import drained_daemons, retire_steps
from hadeploy.steps import Runbook, Step


def _vip_value(key: VipKey, current: str | None, vip: str) -> str | None:
    if key.rehost:
        return rehost(current, vip) if current is not None else None
    return key.value.replace("{vip}", vip)


def vip_edit(keys: tuple[VipKey, ...], vip: str) -> FileEdit:
    """One file's VIP keys as an in-place ini edit (every other byte kept)."""
    path = keys[0].file

    def edit(ctx: HostContext, text: str) -> str:
        for key in keys:
            if key.syntax == "python":
                # only a string constant is rewritten: one computed in code stays as it is
                current = get_py_string(text, key.key)
                value = _vip_value(key, current, vip)
                if current is not None and value is not None and value != current:
                    text = set_py_string(text, key.key, value)
                continue
            current = get_ini_value(text, key.section, key.key)
            if current is None and (key.if_present or key.rehost):
                continue
            value = _vip_value(key, current, vip)
            if value is not None and value != current:
                text = set_ini_value(text, key.section, key.key, value)
        return text

    names = ", ".join(f"[{k.section}] {k.key}" if k.section else k.key for k in keys)
    return FileEdit(f"vip-keys:{path}", path, edit, f"point {path} at the VIP ({names})",
                    missing_ok=all(k.if_present for k in keys))


def host_edit(keys: tuple[HostKey, ...], inv: Inventory, node: Node) -> FileEdit:
    """One file's host-specific keys set to `node`'s own values."""
    path = keys[0].file
    original = str(inv.original.address)
    colocated = inv.topology == "colocated"

    def edit(ctx: HostContext, text: str) -> str:
        for key in keys:
            current = get_ini_value(text, key.section, key.key)
            if key.kind == "address":
                value = str(node.address) if current is not None else None
            elif node.api_bind is not None and (colocated or current is not None):
                value = str(node.api_bind)
            elif current is not None and current.strip() == original:
                value = str(node.address)
            else:
                value = None
            if value is not None and value != current:
                text = set_ini_value(text, key.section, key.key, value)
        return text

    return FileEdit(f"host-keys:{path}", path, edit,
                    f"{path}: host-specific keys for {node.name}", missing_ok=True)


def shell_vars_edit(variables: tuple[ShellVar, ...]) -> FileEdit:
    """One /etc/default file's variables set as the catalog says (the original's values)."""
    path = variables[0].file

    def edit(ctx: HostContext, text: str) -> str:
        for var in variables:
            if get_shell_var(text, var.var) != var.value:
                text = set_shell_var(text, var.var, var.value)
        return text

    names = ", ".join(f"{v.var}={v.value}" for v in variables)
    return FileEdit(f"shell-vars:{path}", path, edit, f"{path}: {names}")


def _by_file(keys: tuple[VipKey, ...] | tuple[HostKey, ...] | tuple[ShellVar, ...]
             ) -> list[tuple]:  # type: ignore[type-arg]
    files: dict[str, list[VipKey | HostKey | ShellVar]] = {}
    for key in keys:
        files.setdefault(key.file, []).append(key)
    return [tuple(group) for group in files.values()]


def _service_steps(inv: Inventory, service: Service,
                   families: Mapping[str, Family]) -> list[Step]:
    original = inv.original
    new = inv.new_controllers
    prefix = f"ctl.{service.name}"
    release = inv.release
    steps: list[Step] = []

    vip = str(inv.vip.address)
    vip_keys = service.vip_keys_for(release)
    if inv.tls is not None:
        vip_keys += service.proxy_header_keys(release)
    vip_groups = _by_file(vip_keys)
    if vip_groups:
        steps.append(Step(f"{prefix}.vip-keys",
                          f"{service.title}: point the original's config at the VIP {vip}",
                          {original.name: tuple(vip_edit(g, vip) for g in vip_groups)}))

    host_groups = _by_file(service.host_keys_for(release))
    rewritten: tuple[str, ...] = ()
    if service.etc:
        # Files whose host-specific keys the next step rewrites differ from the original's
        # by design: comparing their content would make every re-run copy (and restart).
        rewritten = tuple(dict.fromkeys(
            posixpath.relpath(g[0].file, service.etc) for g in host_groups
            if g[0].file.startswith(service.etc.rstrip("/") + "/")))
    copies: dict[str, tuple[AnyOp, ...]] = {}
    for n in new:
        ops: list[AnyOp] = []
        if service.etc:
            ops.append(TreeCopied("tree", original.name, service.etc, rewritten=rewritten))
        ops += [TreeCopied(f"tree:{path}", original.name, path)
                for path in service.variant(families[n.name], release).copies]
        if ops:
            copies[n.name] = tuple(ops)
    if copies:
        trees = ", ".join(dict.fromkeys(op.path for ops in copies.values() for op in ops
                                        if isinstance(op, TreeCopied)))
        steps.append(Step(f"{prefix}.copy", f"{service.title}: copy {trees} from {original.name}",
                          copies))

    if host_groups:
        targets = inv.controllers if inv.topology == "colocated" else new
        steps.append(Step(f"{prefix}.host-keys",
                          f"{service.title}: host-specific keys on each controller",
                          {n.name: tuple(host_edit(g, inv, n) for g in host_groups)
                           for n in targets}))

    shell_vars = {n.name: tuple(shell_vars_edit(g) for g in _by_file(
        service.variant(families[n.name], release).shell_vars)) for n in new}
    if any(shell_vars.values()):
        steps.append(Step(f"{prefix}.shell-vars",
                          f"{service.title}: /etc/default settings as on {original.name}",
                          {h: ops for h, ops in shell_vars.items() if ops}))

    if inv.topology == "colocated":
        binds = {n.name: bind_edits(inv, service, families[n.name], n) for n in inv.controllers}
        if any(binds.values()):
            steps.append(Step(f"{prefix}.bind",
                              f"{service.title}: listen on each controller's own address",
                              {h: ops for h, ops in binds.items() if ops}))

    changed_new = frozenset({f"{prefix}.copy", f"{prefix}.host-keys", f"{prefix}.shell-vars",
                             f"{prefix}.bind"})
    changed_original = frozenset({f"{prefix}.vip-keys", f"{prefix}.host-keys",
                                  f"{prefix}.bind"})
    # One controller at a time, each restart drained on the balancers (runbook.drains); the
    # new ones first, so that they can take the original's traffic while it restarts. Where
    # the daemons are only started (a new controller's first deploy), nothing is served that
    # a start could interrupt: those controllers start together.
    daemons: dict[str, tuple[AnyOp, ...]] = {
        node.name: drained_daemons(inv, service, node, families[node.name],
                                   changed_original if node.original else changed_new)
        for node in (*new, original)}
    steps.append(Step(f"{prefix}.services",
                      f"{service.title}: start on the new controllers, restart on the original "
                      "(drained)", daemons, serial=True, starts_together=True))

    proxies = sorted((p for p in service.proxies_for(release) if p.name not in inv.omit_proxies),
                     key=lambda p: p.port)
    if proxies:
        steps.append(Step(f"{prefix}.verify",
                          f"{service.title}: answers on every controller and the VIP",
                          {n.name: (apis_answer(inv, n, proxies),) for n in inv.controllers},
                          read_only=True))
    return steps


def packages_step(inv: Inventory, services: list[Service],
                  families: Mapping[str, Family]) -> Step:
    """Step `ctl.packages`: every service's packages on each new controller in one install,
    with service starts blocked (an unconfigured API would crash-loop) and each service's
    /etc tree recorded as created where it was absent (rollback deletes it after the purge)."""
    creates = tuple(dict.fromkeys(s.etc for s in services if s.etc))
    ops: dict[str, tuple[AnyOp, ...]] = {}
    for node in inv.new_controllers:
        packages = tuple(dict.fromkeys(p for s in services
                                       for p in s.variant(families[node.name],
                                                          inv.release).packages))
        ops[node.name] = (PackagesInstalled("packages", packages, block_service_starts=True,
                                            creates=creates),)
    names = ", ".join(s.name for s in services)
    return Step("ctl.packages", f"Install the packages of {names} on the new controllers", ops)


def _rc_edit(path: str, vip: str) -> FileEdit:
    def edit(ctx: HostContext, text: str) -> str:
        current = get_shell_var(text, "OS_AUTH_URL")
        if current is None:
            raise ValueError(f"{path} has no OS_AUTH_URL to repoint")
        new = rehost(current, vip)
        return text if new == current else set_shell_var(text, "OS_AUTH_URL", new)

    return FileEdit(f"rc:{path}", path, edit, f"OS_AUTH_URL in {path} names the VIP {vip}")


def _refuse_wildcard_binds(inv: Inventory, services: list[Service],
                           families: Mapping[str, Family]) -> None:
    """Co-located, haproxy holds the VIP's ports on every controller, so an API that binds
    every address could not start there. Say so before anything changes, per service."""
    problems = []
    for service in services:
        for family in sorted({families[c.name] for c in inv.controllers}):
            reason = service.variant(family, inv.release).binds_all
            if reason:
                problems.append(f"  - {service.name} on {family}: {reason}")
    if problems:
        raise HadeployError(
            "the colocated topology needs every API bound to its controller's own address "
            "(haproxy holds the same ports on the VIP), and hadeploy cannot set that for:\n"
            + "\n".join(problems) + "\nBind these APIs to each node's address yourself and "
            "balance them from dedicated load balancers (topology = \"dedicated\"), or leave "
            "these services out of services.balance.")


def build_controllers_runbook(inv: Inventory, families: Mapping[str, Family],
                              only: tuple[str, ...] = ()) -> Runbook:
    """The `controllers` phase for `inv`; `only` limits it to some services."""
    catalog = load_catalog()
    services = [catalog[s] for s in inv.services
                if not catalog[s].lb_only and (not only or s in only)]
    if inv.topology == "colocated":
        _refuse_wildcard_binds(inv, services, families)
    steps: list[Step] = []
    # First, and read-only: a refusal here comes before anything changes on any host.
    unconfirmed = [s for s in services
                   if s.node_local_for(inv.release) and s.name not in inv.shared_storage]
    if unconfirmed:
        steps.append(Step(
            "ctl.shared-state", "Preflight: node-local state of "
            f"{', '.join(s.name for s in unconfirmed)} on storage every controller shares",
            {inv.original.name: tuple(shared_state_check(s.name, entry) for s in unconfirmed
                                      for entry in s.node_local_for(inv.release))},
            read_only=True))
    if inv.new_controllers and services:
        steps.append(packages_step(inv, services, families))
    for service in services:
        steps += _service_steps(inv, service, families)
    original = inv.original
    vip = str(inv.vip.address)
    # Only URLs on ports the VIP serves move: an endpoint of a service that is not balanced
    # (guide 1 leaves swift's alone) would point at a port nothing answers on.
    ports = tuple(sorted({p.port for s in inv.services for p in catalog[s].proxies_for(inv.release)
                          if p.name not in inv.omit_proxies}))
    title = f"Keystone endpoints: move every URL to the VIP {vip}"
    if inv.vip.public_address:
        scheme = "https://" if inv.tls else ""
        title += f", public ones to {scheme}{inv.public_host}"
    steps.append(Step("ctl.endpoints", title,
                      {original.name: (EndpointsOnVip(
                          "endpoints", inv.openstack.admin_credentials, inv.release, vip,
                          (str(original.address), original.name), ports,
                          public_host=inv.public_host if inv.vip.public_address else "",
                          public_tls=inv.tls is not None,
                          vips=(str(inv.vip.public),)),)}))
    rc_ops: dict[str, list[AnyOp]] = {}
    for rc in inv.openstack.rc_files:
        rc_ops.setdefault(rc.host, []).append(_rc_edit(rc.path, vip))
    if rc_ops:
        steps.append(Step("ctl.rc-files", f"Client rc files: OS_AUTH_URL on the VIP {vip}",
                          {h: tuple(ops) for h, ops in rc_ops.items()}))
    # Last: the controllers that stay serve every API (and answer through the VIP) first.
    steps += retire_steps(inv, families)
    return Runbook("controllers", tuple(steps))
