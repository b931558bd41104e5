"""Render the sysctl drop-in that lets haproxy bind the VIP on nodes that do not hold it."""

from __future__ import annotations

NONLOCAL_BIND_KEY = "net.ipv4.ip_nonlocal_bind"
SYSCTL_DROPIN = "/etc/sysctl.d/60-hadeploy-haproxy.conf"


def render_sysctl_conf() -> str:
    """The drop-in file's text (el7+ and Debian; el6 edits /etc/sysctl.conf instead)."""
    return (
        "# Managed by hadeploy: haproxy binds the VIP before keepalived assigns it to this node.\n"
        f"{NONLOCAL_BIND_KEY} = 1\n"
    )
