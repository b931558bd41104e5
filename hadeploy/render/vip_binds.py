"""A frontend's `bind` lines: the internal VIP, and the public VIP (TLS-terminated with [tls]).

Public traffic reaches only the APIs: a proxy the catalog runs in tcp mode (Galera,
RabbitMQ) stays on the internal VIP. With TLS the public bind speaks HTTPS only, and every
request carries `X-Forwarded-Proto` (set, never passed through from the client), from which
the APIs build their links when their proxy-header parsing is on.
"""

from __future__ import annotations

from hadeploy.catalog import Proxy
from hadeploy.inventory.model import Inventory
from hadeploy.inventory.tls import TLS_BUNDLE


def public_proxy(inv: Inventory, proxy: Proxy) -> bool:
    """Whether `proxy` is served on the public VIP too (an API, not a database or queue)."""
    return inv.vip.public_address is not None and proxy.mode != "tcp"


def frontend_binds(inv: Inventory, proxy: Proxy) -> list[str]:
    """The `bind` (and, with TLS, `X-Forwarded-Proto`) lines of `proxy`'s frontend."""
    lines = [f"bind {inv.vip.address}:{proxy.port}"]
    if not public_proxy(inv, proxy):
        return lines
    public = f"bind {inv.vip.public}:{proxy.port}"
    if inv.tls is None:
        return [*lines, public]
    return [
        *lines,
        f"{public} ssl crt {TLS_BUNDLE}",
        "http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
    ]
