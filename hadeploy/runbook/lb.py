"""Phase `lb`: highly available haproxy + keepalived, in the order of the guides.

  lb.preflight      read-only: platform as declared, VRRP interface present, VIP free on a
                    first deploy, (colocated) no API holding the VIP's ports on 0.0.0.0
  lb.packages       install haproxy and keepalived
  lb.sysctl         net.ipv4.ip_nonlocal_bind=1 now and persistently
  lb.haproxy-cfg    one haproxy.cfg for all nodes, validated with `haproxy -c`
  lb.keepalived     health script and per-node keepalived.conf, validated with `keepalived -t`
  lb.services       enable + start; after a config change restart the backups first and the
                    VIP holder last
  lb.verify         read-only: haproxy listens on every frontend port of the VIP
"""

from __future__ import annotations

from hadeploy.catalog import load_catalog
from hadeploy.inventory.model import Inventory, Node
from hadeploy.ops import (
    FileContent,
    FileEdit,
    HostContext,
    Operation,
    PackagesInstalled,
    Probe,
    Requirement,
    ServiceRunning,
    SysctlValue,
)
from hadeploy.platforms import DETECT_PROBE, parse_detect
from hadeploy.quoting import q
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
from hadeploy.render.sysctl import SYSCTL_DROPIN
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


def _each(nodes: tuple[Node, ...], *ops: Operation) -> dict[str, tuple[Operation, ...]]:
    return {n.name: tuple(ops) for n in nodes}


def _platform_matches(inv: Inventory) -> Requirement:
    def judge(ctx: HostContext, seen: Probe) -> str | None:
        detected, _ = parse_detect(seen.stdout)
        if not detected:
            return "cannot tell the platform from /etc/os-release"
        if inv.platform not in ("auto", detected):
            return (f"the host runs {detected} but deployment.platform is {inv.platform}; fix "
                    "the inventory or set platform = \"auto\"")
        return None

    return Requirement("platform", DETECT_PROBE, judge, "platform as declared")


def _interface(inv: Inventory) -> Requirement:
    iface = inv.vip.interface

    def judge(ctx: HostContext, seen: Probe) -> str | None:
        if seen.stdout.strip() == "present":
            return None
        return (f"interface {iface} (vip.interface) does not exist on {ctx.node.name}; "
                "set vip.interface to the interface that carries the nodes' addresses")

    return Requirement("interface", f"ip -o link show dev {q(iface)} >/dev/null 2>&1 && "
                       "echo present || echo missing", judge, f"interface {iface} exists")


def _vip_free(inv: Inventory) -> Requirement:
    vip = str(inv.vip.address)
    script = (f"if ip -o addr show | grep -q ' {vip}/'; then echo held; "
              f"elif command -v ping >/dev/null && ping -c 1 -W 1 {q(vip)} >/dev/null 2>&1; "
              "then echo answers; else echo free; fi")

    def judge(ctx: HostContext, seen: Probe) -> str | None:
        if seen.stdout.strip() == "answers":
            return (f"the VIP {vip} already answers on the network but no load balancer holds "
                    "it; another machine uses this address: pick a free vip.address")
        return None

    return Requirement("vip-free", script, judge, f"VIP {vip} not used by another machine")


def _ports_free(inv: Inventory, node: Node) -> Requirement:
    ports = sorted({p.port for p in balanced_proxies(inv)})
    vip = str(inv.vip.address)

    def judge(ctx: HostContext, seen: Probe) -> str | None:
        problems = []
        for line in seen.stdout.splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            local = parts[3]
            address, _, port = local.rpartition(":")
            if not port.isdigit() or int(port) not in ports or "haproxy" in line:
                continue
            if address.strip("[]") in ("0.0.0.0", "*", "::", vip):
                problems.append(f"{local} ({parts[-1] if len(parts) > 5 else 'a process'})")
        if problems:
            return (f"{', '.join(problems)} holds a port haproxy needs on the VIP; bind that "
                    f"API to the node's address ({node.api_bind}) first")
        return None

    return Requirement("ports-free", "ss -Hltnp 2>/dev/null || true", judge,
                       "no API holds the VIP's ports on all addresses")


def _sysctl_persist(inv: Inventory) -> Operation:
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


def _listening(inv: Inventory) -> Requirement:
    vip = str(inv.vip.address)
    ports = sorted({p.port for p in balanced_proxies(inv)})

    def judge(ctx: HostContext, seen: Probe) -> str | None:
        listening = set()
        for line in seen.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[3].startswith(f"{vip}:"):
                listening.add(int(parts[3].rsplit(":", 1)[1]))
        missing = [str(p) for p in ports if p not in listening]
        if missing:
            return f"haproxy does not listen on {vip} port(s) {', '.join(missing)}"
        return None

    return Requirement("listening", "ss -Hltn 2>/dev/null", judge,
                       f"haproxy listens on every frontend of {vip}")


def build_lb_runbook(inv: Inventory, first_deploy: bool = True) -> Runbook:
    """The `lb` phase for `inv` (the same steps for a plan, a run and a resume)."""
    load_catalog()
    nodes = inv.balancers
    vip = str(inv.vip.address)

    preflight: dict[str, tuple[Operation, ...]] = {}
    for node in nodes:
        checks: list[Operation] = [_platform_matches(inv), _interface(inv)]
        if first_deploy:
            checks.append(_vip_free(inv))
        if inv.topology == "colocated":
            checks.append(_ports_free(inv, node))
        preflight[node.name] = tuple(checks)

    haproxy_cfg = FileContent(
        "haproxy.cfg", HAPROXY_CFG,
        lambda ctx: render_haproxy_cfg(inv, ctx.secrets).encode(),
        mode="0640", validation="haproxy -c -q -f {tmp} >&2",
    )
    check_script = FileContent("check-script", HAPROXY_CHECK_PATH,
                               lambda ctx: render_haproxy_check_script().encode(), mode="0755")
    keepalived_conf = FileContent(
        "keepalived.conf", KEEPALIVED_CONF,
        lambda ctx: render_keepalived_conf(inv, ctx.node, ctx.secrets).encode(),
        mode="0640", validation=KEEPALIVED_VALIDATE,
    )
    services = (
        ServiceRunning("haproxy", "haproxy", HAPROXY_PIDFILES, frozenset({"lb.haproxy-cfg"})),
        ServiceRunning("keepalived", "keepalived", KEEPALIVED_PIDFILES,
                       frozenset({"lb.keepalived"})),
    )
    steps = (
        Step("lb.preflight", "Preflight: platform, interface, VIP and ports", preflight,
             read_only=True),
        Step("lb.packages", "Install haproxy and keepalived",
             _each(nodes, PackagesInstalled("packages", ("haproxy", "keepalived")))),
        Step("lb.sysctl", f"Allow binding the VIP: {NONLOCAL_BIND_KEY}=1 now and at boot",
             _each(nodes, SysctlValue("sysctl", NONLOCAL_BIND_KEY, "1"), _sysctl_persist(inv))),
        Step("lb.haproxy-cfg", f"Push {HAPROXY_CFG} (validated with haproxy -c)",
             _each(nodes, haproxy_cfg)),
        Step("lb.keepalived", f"Push {KEEPALIVED_CONF} and the haproxy health script",
             {n.name: (check_script, keepalived_conf) for n in nodes}),
        Step("lb.services", "Enable and start haproxy and keepalived (VIP holder last)",
             _each(nodes, *services), serial=True,
             last_probe=f"ip -o addr show | grep -q ' {vip}/' && echo last || true"),
        Step("lb.verify", f"Verify haproxy serves every frontend on {vip}",
             _each(nodes, _listening(inv)), read_only=True),
    )
    return Runbook("lb", steps)
