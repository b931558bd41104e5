"""Render /etc/default/haproxy: the options Debian's haproxy init script and unit read, so that
a reload hands the listening sockets to the new haproxy instead of binding them anew.

Debian's sysv script sources the file as shell and runs `haproxy ... -sf OLDPID -D $EXTRAOPTS`
on `reload`: `-x <stats socket>` there makes the new process take the old one's listeners.
`-x` must not reach a start (no old process answers, and haproxy then refuses to start), so
the file sets it for `reload` only, from the action the script was called with. Under systemd
the unit runs haproxy in master-worker mode (`-Ws`) and its master hands the sockets over by
itself; the file then sets nothing, leaving the unit's own EXTRAOPTS (its master socket).
"""

from __future__ import annotations

from hadeploy.inventory.model import Inventory
from hadeploy.quoting import q

HAPROXY_DEFAULTS = "/etc/default/haproxy"


def render_haproxy_defaults(inv: Inventory, systemd: bool) -> str:
    """/etc/default/haproxy for a Debian balancer, run by systemd or by sysv init scripts."""
    lines = [
        f"# Managed by hadeploy for deployment {inv.name}: edits here are replaced by the",
        "# next `deploy-lb`. Change the inventory instead.",
    ]
    socket = inv.haproxy.stats_socket
    if systemd:
        lines += [
            "# Read by haproxy.service, which runs haproxy in master-worker mode (-Ws):",
            "# `systemctl reload haproxy` makes the master start a new worker that takes the",
            "# listening sockets over. Nothing to set: EXTRAOPTS here would replace the unit's.",
        ]
    elif socket:
        lines += [
            "# Sourced by /etc/init.d/haproxy with its action in $1. On reload the new haproxy",
            "# takes the running one's listening sockets through the stats socket (exposed by",
            "# `expose-fd listeners` in haproxy.cfg), so no connection is refused; a start has",
            "# no old process to ask, and haproxy refuses to start when -x finds none.",
            'case "$1" in',
            f"    reload|force-reload) EXTRAOPTS={q('-x ' + socket)} ;;",
            "esac",
        ]
    else:
        lines += [
            "# haproxy.stats_socket is disabled in the inventory: with no socket to hand the",
            "# listeners over, a reload binds them anew (connections may be refused meanwhile).",
        ]
    return "\n".join(lines) + "\n"
