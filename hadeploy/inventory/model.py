"""The validated inventory as frozen values: what the operator decided, nothing more.

An `Inventory` is only ever built by `hadeploy.inventory.load_inventory`, after every rule has
passed, so code that receives one may trust it (unique names, one original controller, a VIP
inside the nodes' subnet, priorities that make failover happen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from hadeploy.catalog import Family, Release

Platform = Literal["el6", "el7", "el8", "el9", "debian", "auto"]
Topology = Literal["dedicated", "colocated"]
HostKeyPolicy = Literal["strict", "accept-new"]


@dataclass(frozen=True)
class SshSettings:
    """How hadeploy reaches every node."""

    user: str = "root"
    port: int = 22
    identity: str | None = None
    sudo: bool = False
    sudo_password_env: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: HostKeyPolicy = "strict"
    gateway: str | None = None
    config: str | None = None
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Vip:
    """The virtual IP keepalived moves between the load-balancer nodes."""

    address: IPv4Address
    prefix: int
    interface: str
    virtual_router_id: int
    advert_int: int = 1
    # A second VIP for the public endpoints (TLS-terminated when [tls] is set); `address`
    # then serves the internal and admin endpoints and the services' own traffic.
    public_address: IPv4Address | None = None
    public_interface: str | None = None
    public_prefix: int | None = None

    @property
    def network(self) -> IPv4Network:
        """The subnet the VIP lives in."""
        return IPv4Network(f"{self.address}/{self.prefix}", strict=False)

    @property
    def public(self) -> IPv4Address:
        """The address public endpoints use: the public VIP, else the one VIP."""
        return self.public_address or self.address

    @property
    def addresses(self) -> tuple[tuple[IPv4Address, int, str], ...]:
        """Every VIP keepalived holds, with its prefix and interface (internal first)."""
        found = [(self.address, self.prefix, self.interface)]
        if self.public_address is not None:
            found.append((self.public_address, self.public_prefix or self.prefix,
                          self.public_interface or self.interface))
        return tuple(found)


@dataclass(frozen=True)
class Tls:
    """TLS termination on the public VIP: PEM files on the workstation, checked before use."""

    certificate: str
    key: str
    name: str | None = None  # the name clients use for the public VIP (default: its address)
    # Plain HTTP on the public VIP's port 80 answers a redirect to https (the dashboard,
    # which TLS moves to 443); without it, nothing listens there.
    redirect_http: bool = False


@dataclass(frozen=True)
class KeepalivedSettings:
    """VRRP behaviour shared by every load-balancer node."""

    script_weight: int = 10
    script_interval: int = 2
    script_fall: int = 2
    script_rise: int = 2
    nopreempt: bool = False
    unicast: bool = False
    auth_password_env: str | None = None


@dataclass(frozen=True)
class Monitor:
    """haproxy's monitor and statistics listener (guide 2's `listen monitor`)."""

    port: int = 9300
    uri: str = "/status"
    stats_uri: str = "/admin"
    stats_user: str = "admin"
    stats_password_env: str = "HADEPLOY_STATS_PASSWORD"  # noqa: S105 (a variable's name)
    stats_realm: str = "Haproxy Statistics"
    stats_refresh: str = "5s"
    # haproxy's built-in Prometheus exporter on the monitor listener (off unless asked)
    metrics: bool = False
    metrics_uri: str = "/metrics"


@dataclass(frozen=True)
class ProxyOverride:
    """An operator's extra lines for one proxy: frontend and backend option lines, and
    options appended to every server line (kolla's backend_http_extra, openstack-ansible's
    haproxy_<service>_service_overrides)."""

    proxy: str
    frontend: tuple[str, ...] = ()
    backend: tuple[str, ...] = ()
    server: tuple[str, ...] = ()


@dataclass(frozen=True)
class HaproxySettings:
    """haproxy globals and defaults, and how proxies are named."""

    mode: Literal["http", "tcp"] = "http"
    maxconn: int = 10000
    timeout_connect: str = "10s"
    timeout_client: str = "10s"
    timeout_server: str = "10s"
    check_inter: str = "10s"
    check_fastinter: str = "500ms"  # between the checks of a server changing state
    check_downinter: str = "1s"  # between the checks of a server that is DOWN
    balance: str = "roundrobin"
    stats_socket: str | None = "/var/lib/haproxy/stats"
    frontend_name: str = "{proxy}-vip"
    backend_name: str = "{proxy}-api"
    catalog_options: bool = True
    monitor: Monitor | None = None
    overrides: tuple[ProxyOverride, ...] = ()

    def override(self, proxy: str) -> ProxyOverride:
        """The operator's extra lines for `proxy` (none: an empty override)."""
        return next((o for o in self.overrides if o.proxy == proxy), ProxyOverride(proxy))


@dataclass(frozen=True)
class Node:
    """A host hadeploy manages: a load balancer or a controller."""

    name: str
    address: IPv4Address
    ssh_host: str | None = None
    priority: int | None = None
    api_bind: IPv4Address | None = None
    original: bool = False
    role: Literal["lb", "controller"] = "controller"
    # A controller leaving the control plane: out of haproxy, its services stopped.
    retire: bool = False

    @property
    def connect_to(self) -> str:
        """What SSH connects to: `ssh_host` (may be an ssh_config alias) or the address."""
        return self.ssh_host or str(self.address)


@dataclass(frozen=True)
class RcFile:
    """A client rc file whose OS_AUTH_URL must name the VIP."""

    host: str
    path: str


@dataclass(frozen=True)
class OpenStackSettings:
    """Where the Keystone admin credentials live and what else to repoint."""

    admin_credentials: str = "/root/keystonerc_admin"
    region: str = "RegionOne"
    rc_files: tuple[RcFile, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """Everything hadeploy needs to know about one deployment, validated."""

    path: str
    fingerprint: str
    name: str
    release: Release
    platform: Platform
    topology: Topology
    ssh: SshSettings
    vip: Vip
    keepalived: KeepalivedSettings
    haproxy: HaproxySettings
    lbs: tuple[Node, ...]
    controllers: tuple[Node, ...]
    services: tuple[str, ...]
    # Controllers marked `retire = true`: in no backend, their services stopped by
    # deploy-controllers (packages and files stay). Not in `controllers`.
    retired: tuple[Node, ...] = ()
    omit_proxies: tuple[str, ...] = ()
    # Services whose state the catalog marks node-local and the operator confirms is shared.
    shared_storage: tuple[str, ...] = ()
    openstack: OpenStackSettings = field(default_factory=OpenStackSettings)
    tls: Tls | None = None

    @property
    def public_host(self) -> str:
        """The host public endpoint URLs name: the certificate's name, else the public VIP."""
        if self.tls is not None and self.tls.name:
            return self.tls.name
        return str(self.vip.public)

    @property
    def balancers(self) -> tuple[Node, ...]:
        """The nodes that run haproxy and keepalived (controllers when co-located)."""
        return self.controllers if self.topology == "colocated" else self.lbs

    @property
    def original(self) -> Node:
        """The controller packstack deployed first, whose config is copied to the others."""
        return next(c for c in self.controllers if c.original)

    @property
    def new_controllers(self) -> tuple[Node, ...]:
        """Controllers that receive copies of the original's configuration."""
        return tuple(c for c in self.controllers if not c.original)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every distinct node, load balancers first."""
        seen: dict[str, Node] = {}
        for node in (*self.balancers, *self.controllers, *self.retired):
            seen.setdefault(node.name, node)
        return tuple(seen.values())

    def node(self, name: str) -> Node:
        """The node called `name`."""
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def family(self) -> Family | None:
        """Platform family, or None while the platform is still `auto`."""
        if self.platform == "auto":
            return None
        return "debian" if self.platform == "debian" else "el"

    def secret_env_names(self) -> tuple[str, ...]:
        """Environment variables that hold this deployment's secrets."""
        names = [self.ssh.sudo_password_env, self.keepalived.auth_password_env]
        if self.haproxy.monitor is not None:
            names.append(self.haproxy.monitor.stats_password_env)
        return tuple(n for n in names if n)

    def secret_values(self) -> tuple[str, ...]:
        """The secret values currently set in the environment (for masking output)."""
        return tuple(v for n in self.secret_env_names() if (v := os.environ.get(n)))
