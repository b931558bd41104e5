"""Phase `lb`: highly available haproxy + keepalived, in the order of the guides.

  lb.preflight      read-only: platform as declared, VRRP interface present, VIP free on a
                    first deploy, (colocated) no API holding the VIP's ports on 0.0.0.0
                    (on the original: none but the balanced APIs the next steps bind)
  lb.bind.SVC       (colocated) the original's API bound to its api_bind address, so that
  lb.api-restart    haproxy can take the VIP's ports there; restarted; rollback restores the
  lb.ports-free     files after haproxy is gone and restarts the APIs on every address again
  lb.packages       install haproxy, keepalived and socat (for haproxy's stats socket)
  lb.sysctl         net.ipv4.ip_nonlocal_bind=1 now and persistently
  lb.tls            ([tls]) the public VIP's certificate and key, root-only
  lb.haproxy-cfg    one haproxy.cfg for all nodes, validated with `haproxy -c`
  lb.haproxy-options  (Debian) /etc/default/haproxy: a reload takes the running haproxy's
                    listening sockets over
  lb.keepalived     health script and per-node keepalived.conf, validated with `keepalived -t`
  lb.services       enable + start, backups first and the VIP holder last: on Debian a new
                    haproxy.cfg reloads haproxy (no connection refused), new options restart
                    it; elsewhere a config change restarts; a new keepalived.conf reloads
                    keepalived (the VIP stays unless the new priorities move it)
  lb.verify         read-only: haproxy listens on every frontend port of the VIP
"""

from __future__ import annotations

from collections.abc import Mapping

from hadeploy.catalog import Family, load_catalog
from hadeploy.facts.network import (
    Listening,
    holds_vip,
    interface_present,
    listening_sockets,
    vip_use,
)
from hadeploy.facts.system import detected_platform
from hadeploy.inventory.model import Inventory, Node
from hadeploy.inventory.tls import BUNDLE_SECRET, TLS_BUNDLE
from hadeploy.ops import (
    AnyOp,
    FileContent,
    FileEdit,
    HostContext,
    PackagesInstalled,
    Requirement,
    ServiceRunning,
    SysctlValue,
)
from hadeploy.ops.tls import VALIDATE_BUNDLE, SecretFile
from hadeploy.ops.vrrp import KeepalivedRunning
from hadeploy.render import (
    HAPROXY_CHECK_PATH,
    NONLOCAL_BIND_KEY,
    balanced_proxies,
    render_haproxy_cfg,
    render_haproxy_check_script,
    render_keepalived_conf,
    render_sysctl_conf,
    set_ini_value,
)
from hadeploy.render.haproxy_defaults import HAPROXY_DEFAULTS, render_haproxy_defaults
from hadeploy.render.sysctl import SYSCTL_DROPIN
from hadeploy.render.vip_binds import public_ports
from hadeploy.runbook.binds import OriginalBinds, operator_binds, original_bind_steps
from hadeploy.steps import Runbook, Step

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
HAPROXY_PIDFILES = ("/run/haproxy.pid", "/var/run/haproxy.pid")
KEEPALIVED_PIDFILES = ("/run/keepalived.pid", "/var/run/keepalived.pid")
# keepalived 2.2.7's config test can be killed (rc 143) when enable_script_security is
# set; then the file is tested again without that one line, and the retry is reported.
KEEPALIVED_VALIDATE = (
    "keepalived -t -l -f {tmp} >&2; rc=$?; "
    "if [ $rc -eq 143 ]; then echo 'keepalived -t was killed (keepalived 2.2.7 bug with "
    "enable_script_security); testing again without that line' >&2; "
    "sed '/enable_script_security/d' {tmp} > {tmp}.nosec; keepalived -t -l -f {tmp}.nosec >&2; "
    "rc=$?; rm -f {tmp}.nosec; fi; [ $rc -eq 0 ]"
)


def _each(nodes: tuple[Node, ...], *ops: AnyOp) -> dict[str, tuple[AnyOp, ...]]:
    return {n.name: tuple(ops) for n in nodes}


def _platform_matches(inv: Inventory) -> Requirement[str]:
    def judge(ctx: HostContext, detected: str) -> str | None:
        if not detected:
            return "cannot tell the platform from /etc/os-release"
        if inv.platform not in ("auto", detected):
            return (f"the host runs {detected} but deployment.platform is {inv.platform}; fix "
                    "the inventory or set platform = \"auto\"")
        return None

    return Requirement("platform", detected_platform(), judge, "platform as declared")


def _interface(iface: str, key: str, op_id: str) -> Requirement[bool]:
    def judge(ctx: HostContext, present: bool) -> str | None:
        if present:
            return None
        return (f"interface {iface} ({key}) does not exist on {ctx.node.name}; "
                f"set {key} to the interface that carries the VIP's network")

    return Requirement(op_id, interface_present(iface), judge,
                       f"interface {iface} exists")


def _vip_free(vip: str, key: str, op_id: str) -> Requirement[str]:
    def judge(ctx: HostContext, use: str) -> str | None:
        if use == "answers":
            return (f"the VIP {vip} already answers on the network but no load balancer holds "
                    f"it; another machine uses this address: pick a free {key}")
        return None

    return Requirement(op_id, vip_use(vip), judge,
                       f"VIP {vip} not used by another machine")


def _vip_checks(inv: Inventory, first_deploy: bool) -> list[AnyOp]:
    """Each VIP's interface exists; on a first deploy, no other machine answers on it."""
    names = (("vip.address", "vip.interface", ""),
             ("vip.public_address", "vip.public_interface", "-public"))
    checks: list[AnyOp] = []
    seen: set[str] = set()
    for (address, _, iface), (key, iface_key, suffix) in zip(inv.vip.addresses, names,
                                                             strict=False):
        if iface not in seen:
            seen.add(iface)
            checks.append(_interface(iface, iface_key, f"interface{suffix}"))
        if first_deploy:
            checks.append(_vip_free(str(address), key, f"vip-free{suffix}"))
    return checks


def _ports_free(inv: Inventory, node: Node,
                freed: frozenset[int] = frozenset()) -> Requirement[tuple[Listening, ...]]:
    """No API listens on every address (or the VIP) on a port haproxy needs, except the
    `freed` ports, which a later step moves to the node's own address."""
    ports = sorted({p.port for p in balanced_proxies(inv)} - freed)
    vip = str(inv.vip.address)

    def judge(ctx: HostContext, sockets: tuple[Listening, ...]) -> str | None:
        held = [s for s in sockets if s.port in ports and "haproxy" not in s.process
                and s.address in ("0.0.0.0", "*", "::", vip)]
        if not held:
            return None
        problems = ", ".join(f"{s.local} ({s.process or 'a process'})" for s in held)
        # a database or broker the operator binds: say where
        advice = operator_binds(inv, ctx.profile.family, {s.port for s in held if s.port})
        how = f" ({'; '.join(advice)})" if advice else ""
        return (f"{problems} holds a port haproxy needs on the VIP; bind that API to the "
                f"node's address ({node.api_bind}) first{how}")

    return Requirement("ports-free", listening_sockets(processes=True), judge,
                       "no API holds the VIP's ports on all addresses")


def _sysctl_persist(inv: Inventory) -> AnyOp:
    if inv.platform == "el6":
        return FileEdit("sysctl-persist", "/etc/sysctl.conf",
                        lambda ctx, text: _set_sysctl_line(text),
                        f"persist {NONLOCAL_BIND_KEY}=1 in /etc/sysctl.conf")
    return FileContent("sysctl-persist", SYSCTL_DROPIN, lambda ctx: render_sysctl_conf().encode())


def _set_sysctl_line(text: str) -> str:
    """/etc/sysctl.conf has no sections; edit it as the ini DEFAULT-less top part."""
    marker = "[hadeploy-top]\n"
    edited = set_ini_value(marker + text, "hadeploy-top", NONLOCAL_BIND_KEY, "1")
    return edited[len(marker):]


def _haproxy_defaults(inv: Inventory, ctx: HostContext) -> bytes | None:
    """/etc/default/haproxy for a Debian balancer; other families do not read it."""
    if ctx.profile.family != "debian":
        return None
    return render_haproxy_defaults(inv, ctx.profile.init == "systemd").encode()


def haproxy_listening(inv: Inventory) -> Requirement[tuple[Listening, ...]]:
    """lb.verify's check: haproxy listens on every frontend's port of the VIP, and of the
    public VIP those `public_ports` names."""
    vip = str(inv.vip.address)
    wanted = [(vip, p.port) for p in balanced_proxies(inv)]
    wanted += [(str(inv.vip.public), port) for p in balanced_proxies(inv)
               for port in public_ports(inv, p)]

    def judge(ctx: HostContext, sockets: tuple[Listening, ...]) -> str | None:
        listening = {(s.address, s.port) for s in sockets}
        missing: dict[str, list[str]] = {}
        for address, port in dict.fromkeys(wanted):
            if (address, port) not in listening:
                missing.setdefault(address, []).append(str(port))
        if missing:
            return "haproxy does not listen on " + "; ".join(
                f"{address} port(s) {', '.join(ports)}" for address, ports in missing.items())
        return None

    return Requirement("listening", listening_sockets(), judge,
                       f"haproxy listens on every frontend of {vip}")


def _bundle(inv: Inventory, ctx: HostContext) -> bytes:
    """The certificate, chain and key haproxy serves on the public VIP (a placeholder in an
    offline plan, which reads no local file)."""
    return ctx.secrets.get(BUNDLE_SECRET, f"(the PEM files of [tls] in {inv.path})").encode()


def _elected(inv: Inventory) -> str:
    """The balancer the inventory's priorities make the VIP's holder ("" with nopreempt,
    where the VIP stays on whichever node holds it)."""
    if inv.keepalived.nopreempt:
        return ""
    return max(inv.balancers, key=lambda n: n.priority or 0).name


def build_lb_runbook(inv: Inventory, first_deploy: bool = True,
                     families: Mapping[str, Family] | None = None) -> Runbook:
    """The `lb` phase for `inv` (the same steps for a plan, a run and a resume); co-located,
    `families` (each controller's platform family) says how the original's APIs bind."""
    load_catalog()
    nodes = inv.balancers
    vip = str(inv.vip.address)

    binds = OriginalBinds()
    if inv.topology == "colocated" and families is not None:
        binds = original_bind_steps(inv, families, _ports_free(inv, inv.original))
    preflight: dict[str, tuple[AnyOp, ...]] = {}
    for node in nodes:
        checks: list[AnyOp] = [_platform_matches(inv), *_vip_checks(inv, first_deploy)]
        if inv.topology == "colocated":
            checks.append(_ports_free(inv, node, binds.ports if node.original else frozenset()))
        preflight[node.name] = tuple(checks)

    haproxy_cfg = FileContent(
        "haproxy.cfg", HAPROXY_CFG,
        lambda ctx: render_haproxy_cfg(inv, ctx.secrets, ctx.profile.name).encode(),
        mode="0640", validation="haproxy -c -q -f {tmp} >&2",
    )
    tls_bundle = SecretFile(
        "tls-bundle", TLS_BUNDLE, lambda ctx: _bundle(inv, ctx), mode="0600",
        validation=VALIDATE_BUNDLE,
    )
    haproxy_options = FileContent(
        "haproxy-options", HAPROXY_DEFAULTS, lambda ctx: _haproxy_defaults(inv, ctx),
        validation="sh -n {tmp} >&2",
    )
    check_script = FileContent("check-script", HAPROXY_CHECK_PATH,
                               lambda ctx: render_haproxy_check_script().encode(), mode="0755")
    keepalived_conf = FileContent(
        "keepalived.conf", KEEPALIVED_CONF,
        lambda ctx: render_keepalived_conf(inv, ctx.node, ctx.secrets).encode(),
        mode="0640", validation=KEEPALIVED_VALIDATE,
    )
    services = (
        ServiceRunning("haproxy", "haproxy", HAPROXY_PIDFILES,
                       restart_after=frozenset({"lb.haproxy-options"}),
                       reload_after=frozenset({"lb.haproxy-cfg", "lb.tls"}),
                       reload_on=frozenset({"debian"})),
        # keepalived re-reads its configuration on SIGHUP (every init system's reload): the
        # VRRP instance keeps its state, so the VIP moves only if the new priorities say so.
        KeepalivedRunning("keepalived", ServiceRunning(
            "keepalived", "keepalived", KEEPALIVED_PIDFILES,
            reload_after=frozenset({"lb.keepalived"}), reload_on=frozenset({"debian", "el"}),
            reload_in_place=True), vip, _elected(inv)),
    )
    steps = (
        Step("lb.preflight", "Preflight: platform, interface, VIP and ports", preflight,
             read_only=True),
        *binds.steps,
        # socat: drained API restarts talk to haproxy's stats socket with it (ops.drain)
        Step("lb.packages", "Install haproxy, keepalived and socat",
             _each(nodes, PackagesInstalled("packages", ("haproxy", "keepalived", "socat")))),
        Step("lb.sysctl", f"Allow binding the VIP: {NONLOCAL_BIND_KEY}=1 now and at boot",
             _each(nodes, SysctlValue("sysctl", NONLOCAL_BIND_KEY, "1"), _sysctl_persist(inv))),
        *([Step("lb.tls", f"Push the public VIP's certificate and key to {TLS_BUNDLE} "
                "(root-only)", _each(nodes, tls_bundle))] if inv.tls is not None else []),
        Step("lb.haproxy-cfg", f"Push {HAPROXY_CFG} (validated with haproxy -c)",
             _each(nodes, haproxy_cfg)),
        Step("lb.haproxy-options", f"Push {HAPROXY_DEFAULTS} (Debian: hitless reloads)",
             _each(nodes, haproxy_options)),
        Step("lb.keepalived", f"Push {KEEPALIVED_CONF} and the haproxy health script",
             {n.name: (check_script, keepalived_conf) for n in nodes}),
        Step("lb.services", "Enable and start haproxy and keepalived (VIP holder last)",
             _each(nodes, *services), serial=True,
             last_probe=f"{holds_vip(vip)} && echo last || true"),
        Step("lb.verify", f"Verify haproxy serves every frontend on {vip}",
             _each(nodes, haproxy_listening(inv)), read_only=True),
    )
    return Runbook("lb", steps)
