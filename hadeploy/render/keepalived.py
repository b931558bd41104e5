"""Render keepalived.conf for one load-balancer node, and haproxy's health-check script.

All nodes start as BACKUP with unique priorities, so the highest effective priority wins
the election; the check script adds `script_weight` while haproxy runs, which is why the
inventory insists that weight exceeds the priority spread.
"""

from __future__ import annotations

from collections.abc import Mapping

from hadeploy.inventory.model import Inventory, Node
from hadeploy.render.secrets import secret

HAPROXY_CHECK_PATH = "/etc/keepalived/check_haproxy.sh"
SCRIPT_NAME = "haproxy-check"
INSTANCE_NAME = "openstack-vip"

CHECK_SCRIPT = """\
#!/bin/sh
# Managed by hadeploy: keepalived's vrrp_script for haproxy. Exits 0 while haproxy runs on
# this host. Reads haproxy's pid file and /proc only, so it needs neither psmisc (killall)
# nor procps (pidof), and a stale pid that now belongs to another program does not count.
for pidfile in /run/haproxy.pid /var/run/haproxy.pid; do
    [ -r "$pidfile" ] || continue
    for pid in $(cat "$pidfile"); do
        [ -r "/proc/$pid/stat" ] || continue
        read -r _ name state _ < "/proc/$pid/stat" || continue
        [ "$name" = "(haproxy)" ] && [ "$state" != "Z" ] && exit 0
    done
done
exit 1
"""


def render_haproxy_check_script() -> str:
    """The health script keepalived runs (same on every node)."""
    return CHECK_SCRIPT


def render_keepalived_conf(
    inv: Inventory, node: Node, secrets: Mapping[str, str] | None = None
) -> str:
    """keepalived.conf for `node`, one of the inventory's balancers."""
    if node not in inv.balancers or node.priority is None:
        raise ValueError(f"{node.name} is not a load-balancer node of {inv.name}")
    k = inv.keepalived
    vip = inv.vip
    lines = [
        f"# Managed by hadeploy for deployment {inv.name} (node {node.name}): edits here are",
        "# replaced by the next `deploy-lb`. Change the inventory instead.",
        "",
        "global_defs {",
        f"    router_id {node.name}",
        "    script_user root",
        "    enable_script_security",
        "}",
        "",
        f"vrrp_script {SCRIPT_NAME} {{",
        f'    script "{HAPROXY_CHECK_PATH}"',
        f"    interval {k.script_interval}",
        f"    weight {k.script_weight}",
        f"    fall {k.script_fall}",
        f"    rise {k.script_rise}",
        "}",
        "",
        f"vrrp_instance {INSTANCE_NAME} {{",
        "    state BACKUP",
        f"    interface {vip.interface}",
        f"    virtual_router_id {vip.virtual_router_id}",
        f"    priority {node.priority}",
        f"    advert_int {vip.advert_int}",
    ]
    if k.nopreempt:
        lines.append("    nopreempt")
    if k.auth_password_env:
        lines += [
            "    authentication {",
            "        auth_type PASS",
            f"        auth_pass {secret(secrets, k.auth_password_env)}",
            "    }",
        ]
    if k.unicast:
        lines.append(f"    unicast_src_ip {node.address}")
        lines.append("    unicast_peer {")
        lines += [f"        {peer.address}" for peer in inv.balancers if peer != node]
        lines.append("    }")
    lines += [
        "    virtual_ipaddress {",
        *(f"        {address}/{prefix} dev {interface}"
          for address, prefix, interface in vip.addresses),
        "    }",
        "    track_script {",
        f"        {SCRIPT_NAME}",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
