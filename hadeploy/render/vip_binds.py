"""A frontend's `bind` lines: the internal VIP, and the public VIP (TLS-terminated with [tls]).

Public traffic reaches only the APIs: a proxy the catalog runs in tcp mode (Galera,
RabbitMQ) stays on the internal VIP. With TLS the public bind speaks HTTPS only, and every
request carries `X-Forwarded-Proto` (set, never passed through from the client), from which
the APIs build their links when their proxy-header parsing is on. A proxy on HTTP's port 80
(the dashboard) is served on HTTPS's 443 there; with `tls.redirect_http`, plain HTTP on the
public VIP's port 80 gets a redirect to the same URL over https (the internal VIP's port 80
stays plain HTTP).
"""

from __future__ import annotations

from hadeploy.catalog import Proxy
from hadeploy.inventory.model import Inventory
from hadeploy.inventory.tls import TLS_BUNDLE


def public_proxy(inv: Inventory, proxy: Proxy) -> bool:
    """Whether `proxy` is served on the public VIP too (an API, not a database or queue)."""
    return inv.vip.public_address is not None and proxy.mode != "tcp"


HTTP_PORT = 80
HTTPS_PORT = 443


def public_ports(inv: Inventory, proxy: Proxy) -> tuple[int, ...]:
    """The ports `proxy` takes on the public VIP (none: it is not public): its own, or with
    TLS 443 for a proxy on port 80, and 80 too where plain HTTP is redirected."""
    if not public_proxy(inv, proxy):
        return ()
    if inv.tls is None or proxy.port != HTTP_PORT:
        return (proxy.port,)
    return (HTTPS_PORT, HTTP_PORT) if inv.tls.redirect_http else (HTTPS_PORT,)


def frontend_binds(inv: Inventory, proxy: Proxy) -> list[str]:
    """The `bind` (and, with TLS, `X-Forwarded-Proto` and redirect) lines of `proxy`'s
    frontend."""
    lines = [f"bind {inv.vip.address}:{proxy.port}"]
    ports = public_ports(inv, proxy)
    if not ports:
        return lines
    public = inv.vip.public
    if inv.tls is None:
        return [*lines, f"bind {public}:{ports[0]}"]
    lines.append(f"bind {public}:{ports[0]} ssl crt {TLS_BUNDLE}")
    if HTTP_PORT in ports[1:]:
        lines += [f"bind {public}:{HTTP_PORT}",
                  f"http-request redirect scheme https code 301 if !{{ ssl_fc }} "
                  f"{{ dst {public} }}"]
    return [
        *lines,
        "http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
    ]
