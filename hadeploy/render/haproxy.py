"""Render haproxy.cfg: one frontend and backend per proxy of every balanced service.

Identical on every load-balancer node, so it takes no node argument (only the platform:
Debian's haproxy gets what a hitless reload needs). Backends list every
controller; in the colocated topology they point at each API's own bind address because
haproxy itself holds the VIP's ports on the same hosts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hadeploy.catalog import Proxy, load_catalog
from hadeploy.inventory.model import Inventory, Node
from hadeploy.inventory.schema import haproxy_millis
from hadeploy.render.secrets import secret
from hadeploy.render.vip_binds import frontend_binds

INDENT = "    "
# Characters haproxy's config parser reads literally outside quotes (no space, '#', quote,
# backslash or '$'); any other word is single-quoted, where nothing is interpreted.
HAPROXY_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./*!?^~-]+")


def haproxy_word(value: str) -> str:
    """`value` as one haproxy config word that haproxy reads back unchanged."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a haproxy config value cannot contain control characters or newlines")
    if HAPROXY_PLAIN.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def balanced_proxies(inv: Inventory) -> list[Proxy]:
    """The proxies the VIP serves, in the order of `services.balance` then the catalog."""
    catalog = load_catalog()
    return [
        proxy
        for name in inv.services
        for proxy in catalog[name].proxies_for(inv.release)
        if proxy.name not in inv.omit_proxies
    ]


def backend_address(inv: Inventory, node: Node) -> str:
    """Where haproxy reaches a controller's APIs."""
    if inv.topology == "colocated" and node.api_bind is not None:
        return str(node.api_bind)
    return str(node.address)


def _section(header: str, lines: list[str]) -> list[str]:
    return [header, *(INDENT + line for line in lines), ""]


def reloads_hitless(platform: str) -> bool:
    """Whether haproxy on `platform` is reloaded by handing its listening sockets over (Debian's
    haproxy 2.6); `auto` renders as Debian, EL hosts keep their restarts (and haproxy 1.5 on
    EL6/EL7 knows neither `expose-fd` nor `hard-stop-after`)."""
    return platform in ("debian", "auto")


def hard_stop_after(inv: Inventory) -> str:
    """How long an old haproxy process may finish its sessions after a reload: the longer of
    the client and server timeouts, after which an idle or slow session would end anyway."""
    h = inv.haproxy
    return max(h.timeout_client, h.timeout_server, key=haproxy_millis)


def _global(inv: Inventory, hitless: bool) -> list[str]:
    lines = ["daemon"]
    if inv.haproxy.stats_socket:
        # expose-fd: a reloading haproxy takes the listening sockets from the running one
        # through this (owner-only) socket instead of binding anew, so no connection is refused.
        expose = " expose-fd listeners" if hitless else ""
        lines.append(f"stats socket {inv.haproxy.stats_socket} mode 600 level admin{expose}")
    if hitless:
        lines.append(f"hard-stop-after {hard_stop_after(inv)}")
    return _section("global", lines)


def _defaults(inv: Inventory, hitless: bool) -> list[str]:
    h = inv.haproxy
    lines = [
        f"mode {h.mode}",
        f"maxconn {h.maxconn}",
        f"timeout connect {h.timeout_connect}",
        f"timeout client {h.timeout_client}",
        f"timeout server {h.timeout_server}",
    ]
    # A connection a server refuses (an API not started yet on a controller just added, or
    # one that died between two checks) is tried again on another server, not failed:
    # haproxy considers a new server UP until its first check fails. Debian's haproxy 2.6
    # redispatches on every retry; haproxy 1.5 (EL6/EL7) knows only the last-retry form.
    lines += ["retries 3", "option redispatch 1" if hitless else "option redispatch"]
    # A server coming back (a new controller started, the original restarted) is checked
    # every `downinter` until it answers, then every `fastinter` until `rise` checks passed:
    # UP within about 1.5 s of answering, not 2 x `inter` (20 s at the default 10 s), and a
    # dying one DOWN as soon; a steady server is still checked every `inter`.
    lines.append(f"default-server fastinter {h.check_fastinter} downinter {h.check_downinter}")
    if hitless and h.mode == "http":
        # After a reload the old process answers a kept-alive client's next request (with
        # `Connection: close`) instead of closing its idle connection under it.
        lines.append("option idle-close-on-response")
    return _section("defaults", lines)


def _monitor(inv: Inventory, secrets: Mapping[str, str] | None) -> list[str]:
    monitor = inv.haproxy.monitor
    if monitor is None:
        return []
    password = haproxy_word(secret(secrets, monitor.stats_password_env))
    realm = monitor.stats_realm.replace(" ", "\\ ")
    return _section("listen monitor", [
        f"bind {inv.vip.address}:{monitor.port}",
        "mode http",
        f"monitor-uri {monitor.uri}",
        *([f"http-request use-service prometheus-exporter if {{ path {monitor.metrics_uri} }}"]
          if monitor.metrics else []),
        "stats enable",
        f"stats uri {monitor.stats_uri}",
        f"stats realm {realm}",
        f"stats auth {monitor.stats_user}:{password}",
        f"stats refresh {monitor.stats_refresh}",
    ])


def _l7_retries(effective_mode: str, hitless: bool) -> list[str]:
    """A GET or HEAD whose server closed the connection without answering (a daemon that
    died or restarted under it) is sent again to another server rather than failed with a
    502; any other method only when its connection failed, as it may have been carried out."""
    if not hitless or effective_mode != "http":
        return []
    return ["retry-on conn-failure empty-response junk-response",
            "http-request disable-l7-retry if !METH_GET"]


def _proxy(inv: Inventory, proxy: Proxy, hitless: bool) -> list[str]:
    h = inv.haproxy
    tuned = h.catalog_options
    frontend = h.frontend_name.replace("{proxy}", proxy.name)
    backend = h.backend_name.replace("{proxy}", proxy.name)
    # The mode is not tuning: MySQL or AMQP proxied in http mode would not work at all.
    mode = proxy.mode if proxy.mode and proxy.mode != h.mode else ""
    front = frontend_binds(inv, proxy)
    front += [f"mode {mode}"] if mode else []
    front += list(proxy.frontend) if tuned else []
    extra = h.override(proxy.name)
    front += extra.frontend
    front.append(f"default_backend {backend}")

    balance = h.balance if proxy.balance is None or not tuned else proxy.balance
    back = [f"mode {mode}"] if mode else []
    back += [f"balance {balance}"] if balance else []
    if tuned and proxy.cookie:
        back.append("cookie SERVERID insert indirect nocache")
    # Not tuning either: an API that still accepts connections but no longer answers (or
    # answers errors) passes a TCP check, so where the catalog knows what the application
    # answers, haproxy asks it, in tcp-mode backends too.
    check = proxy.http_check_for(inv.release)
    if check is not None:
        back += [f"option httpchk GET {check.path}", f"http-check expect status {check.status}"]
    back += _l7_retries(proxy.mode or h.mode, hitless)
    back += list(proxy.backend) if tuned else []
    back += extra.backend
    for index, node in enumerate(inv.controllers):
        server = f"server {node.name} {backend_address(inv, node)}:{proxy.port} check inter"
        server += f" {h.check_inter}"
        if tuned and proxy.check_port:
            server += f" port {proxy.check_port}"
        if tuned and proxy.cookie:
            server += f" cookie {node.name}"
        if tuned and proxy.server:
            server += " " + " ".join(proxy.server)
        if tuned and proxy.standby and index > 0:
            server += " backup"
        if extra.server:
            server += " " + " ".join(extra.server)
        back.append(server)
    return _section(f"frontend {frontend}", front) + _section(f"backend {backend}", back)


def render_haproxy_cfg(inv: Inventory, secrets: Mapping[str, str] | None = None,
                       platform: str | None = None) -> str:
    """haproxy.cfg for every load-balancer node of `platform` (default: the inventory's);
    secrets are masked when not given."""
    lines = [
        f"# Managed by hadeploy for deployment {inv.name}: edits here are replaced by the",
        "# next `deploy-lb`. Change the inventory instead.",
        "",
    ]
    hitless = reloads_hitless(platform or inv.platform)
    lines += _global(inv, hitless) + _defaults(inv, hitless) + _monitor(inv, secrets)
    for proxy in balanced_proxies(inv):
        lines += _proxy(inv, proxy, hitless)
    return "\n".join(lines).rstrip("\n") + "\n"
